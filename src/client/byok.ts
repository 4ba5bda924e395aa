import {
  RsaOaepPublicKey,
  WrappingKey,
  aesKeyWrapPadded,
  randomBytes,
  rsaOaepEncrypt,
  wipe,
} from '../crypto/index.ts';
import { KmsClientError } from './errors.ts';

/**
 * Builds a BYOK import blob on the client, so key material crosses the network only wrapped for the KMS:
 * RSA-OAEP-SHA256(ephemeral AES-256 key) under the KMS's RSA-4096 import wrapping key (512 bytes), followed by
 * AES-KWP (RFC 5649) of the material under the ephemeral key, which is wiped afterwards. The same construction
 * Vault's transit import and AWS KMS's RSA_AES_KEY_WRAP_SHA_256 accept.
 */
export function buildImportBlob(wrappingKeyPem: string, material: Uint8Array): Buffer {
  let publicKey: RsaOaepPublicKey;
  try {
    publicKey = RsaOaepPublicKey.fromPem(wrappingKeyPem);
  } catch {
    throw new KmsClientError('invalid_response', 0, 'the import wrapping key is not an RSA-OAEP public key');
  }
  if (publicKey.modulusBits !== 4096) {
    throw new KmsClientError('invalid_response', 0, 'the import wrapping key is not RSA-4096');
  }
  const ephemeral = randomBytes(32);
  try {
    const wrappedKey = rsaOaepEncrypt(publicKey, ephemeral);
    const wrappedMaterial = aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), material);
    return Buffer.concat([wrappedKey, wrappedMaterial]);
  } finally {
    wipe(ephemeral);
  }
}
