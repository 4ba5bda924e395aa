import { KmsSlots } from '../envelope/index.ts';
import type { KmsDataKeyApi } from '../envelope/index.ts';
import { KmsDecryptionError } from './errors.ts';
import type { KmsService } from './service.ts';
import type { Principal } from './types.ts';

/** The envelope's view of an in-process KMS, acting as `principal` (authorised and audited as such). */
export function inProcessDataKeyApi(kms: KmsService, principal: Principal): KmsDataKeyApi {
  return {
    async generateDataKey(keyName, context) {
      const { plaintext, ciphertext } = await kms.generateDataKey(principal, keyName, context);
      if (plaintext === undefined) throw new Error('the KMS returned no plaintext data key');
      return { plaintext, ciphertext };
    },
    encrypt: (keyName, plaintext, context) => kms.encrypt(principal, keyName, plaintext, context),
    decryptDataKey: (ciphertext, context) => kms.decryptDataKey(principal, ciphertext, context),
    rewrap: (ciphertext, context) => kms.rewrap(principal, ciphertext, context),
  };
}

/** Envelope key slots backed by a KMS key: data keys from the KMS, slots naming the key and its version. */
export function kmsEnvelopeKeys(api: KmsDataKeyApi, keyName: string): KmsSlots {
  return new KmsSlots(
    api,
    keyName,
    (err) => err instanceof KmsDecryptionError || (err as { code?: unknown }).code === 'decryption_failed',
  );
}
