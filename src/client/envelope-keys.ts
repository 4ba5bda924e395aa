import { KmsSlots } from '../envelope/index.ts';
import type { KmsDataKeyApi } from '../envelope/index.ts';
import type { KmsClient } from './client.ts';
import { KmsClientError } from './errors.ts';

/** The envelope's view of a remote KMS, through the SDK (the CLI's `warden encrypt --key`, `warden rewrap`). */
export function remoteDataKeyApi(client: KmsClient): KmsDataKeyApi {
  return {
    async generateDataKey(keyName, context) {
      const { plaintext, ciphertext } = await client.generateDataKey(keyName, { context, plaintext: true });
      if (plaintext === undefined)
        throw new KmsClientError('invalid_response', 0, 'the KMS returned no plaintext data key');
      return { plaintext, ciphertext };
    },
    encrypt: (keyName, plaintext, context) => client.encrypt(keyName, plaintext, context),
    decryptDataKey: (ciphertext, context) => client.decryptDataKey(ciphertext, context),
    rewrap: (ciphertext, context) => client.rewrap(ciphertext, context),
  };
}

/**
 * Envelope key slots backed by a remote KMS key: `keyName` for encryption; any KMS slot opens through the KMS
 * (which decides whether this caller may).
 */
export function remoteEnvelopeKeys(client: KmsClient, keyName = ''): KmsSlots {
  return new KmsSlots(
    remoteDataKeyApi(client),
    keyName,
    (err) => err instanceof KmsClientError && err.code === 'decryption_failed',
  );
}
