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
export function remoteEnvelopeKeys(
  client: KmsClient,
  keyName = '',
  translate?: (err: KmsClientError) => Error,
): KmsSlots {
  const isDecryptionFailure = (err: unknown) =>
    err instanceof KmsClientError && err.code === 'decryption_failed';
  const api = remoteDataKeyApi(client);
  return new KmsSlots(
    translate === undefined ? api : translated(api, isDecryptionFailure, translate),
    keyName,
    isDecryptionFailure,
  );
}

/**
 * `api` with every other KMS refusal (unknown key, bad token, policy, sealed) passed through `translate`, e.g. into
 * the CLI's exit codes. A failed decryption is left as it is: the envelope reports it as its own DecryptionError
 * and tries its other key slots.
 */
function translated(
  api: KmsDataKeyApi,
  isDecryptionFailure: (err: unknown) => boolean,
  translate: (err: KmsClientError) => Error,
): KmsDataKeyApi {
  const wrap =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await call(...args);
      } catch (err) {
        if (err instanceof KmsClientError && !isDecryptionFailure(err)) throw translate(err);
        throw err;
      }
    };
  return {
    generateDataKey: wrap((keyName: string, context: Uint8Array) => api.generateDataKey(keyName, context)),
    encrypt: wrap((keyName: string, plaintext: Uint8Array, context: Uint8Array) =>
      api.encrypt(keyName, plaintext, context),
    ),
    decryptDataKey: wrap((ciphertext: string, context: Uint8Array) =>
      api.decryptDataKey(ciphertext, context),
    ),
    rewrap: wrap((ciphertext: string, context: Uint8Array) => api.rewrap(ciphertext, context)),
  };
}
