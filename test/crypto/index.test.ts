import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from '../../src/crypto/index.ts';

describe('src/crypto/index.ts', () => {
  it('exports the primitives, the key types and the errors', () => {
    for (const name of [
      'randomBytes',
      'AeadKey',
      'WrappingKey',
      'MacKey',
      'HkdfInputKey',
      'seal',
      'open',
      'hkdf',
      'hkdfExtract',
      'hkdfExpand',
      'hkdfDeriveKey',
      'aesKeyWrap',
      'aesKeyUnwrap',
      'aesKeyWrapPadded',
      'aesKeyUnwrapPadded',
      'wrapKey',
      'unwrapKey',
      'mac',
      'verifyMac',
      'Ed25519PrivateKey',
      'Ed25519PublicKey',
      'ed25519Sign',
      'ed25519Verify',
      'EcdsaPrivateKey',
      'EcdsaPublicKey',
      'ecdsaSign',
      'ecdsaVerify',
      'ecdsaDerToP1363',
      'ecdsaP1363ToDer',
      'RsaOaepPrivateKey',
      'RsaOaepPublicKey',
      'rsaOaepEncrypt',
      'rsaOaepDecrypt',
      'X25519PrivateKey',
      'X25519PublicKey',
      'x25519SharedSecret',
      'WardenCryptoError',
      'InvalidInputError',
      'InvalidKeyError',
      'DecryptionError',
      'VerificationError',
      'constantTimeEqual',
      'wipe',
      'concatBytes',
    ]) {
      assert.ok(name in crypto, name);
    }
  });

  it('keeps test-only and internal functions out', () => {
    for (const name of Object.keys(crypto)) {
      assert.doesNotMatch(name, /ForTesting|Raw|keyObjectOf|requireKey|checkAsymmetric|importRaw/, name);
    }
  });
});
