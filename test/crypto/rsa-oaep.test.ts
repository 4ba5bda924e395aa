import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { EcdsaPrivateKey } from '../../src/crypto/ecdsa.ts';
import { DecryptionError, InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import { keyObjectOf } from '../../src/crypto/keys.ts';
import {
  RsaOaepPrivateKey,
  RsaOaepPublicKey,
  rsaOaepDecrypt,
  rsaOaepEncrypt,
} from '../../src/crypto/rsa-oaep.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

const FILES = [
  { name: 'rsa_oaep_3072_sha256_mgf1sha256_test.json', bits: 3072, maxPlaintext: 318 },
  { name: 'rsa_oaep_4096_sha256_mgf1sha256_test.json', bits: 4096, maxPlaintext: 446 },
] as const;

/** The vector keys, so the tests do not spend seconds generating RSA keys. */
const keys = FILES.map((spec) => {
  const file = loadWycheproof(spec.name);
  const group = file.testGroups[0]!;
  return { spec, file, key: RsaOaepPrivateKey.fromPkcs8Der(hex(group.privateKeyPkcs8)) };
});

for (const { spec, file, key } of keys) {
  describe(`RSA-OAEP-${spec.bits} SHA-256/MGF1-SHA-256, Wycheproof ${spec.name}`, () => {
    it('decrypts every valid ciphertext and throws DecryptionError for every invalid one', () => {
      const seen = { valid: 0, invalid: 0, acceptable: 0 };
      for (const group of file.testGroups) {
        assert.equal(group.keySize, spec.bits);
        const groupKey = RsaOaepPrivateKey.fromPkcs8Der(hex(group.privateKeyPkcs8));
        // The other encodings of the same key agree.
        const spki = groupKey.publicKey().toSpkiDer();
        assert.deepEqual(
          RsaOaepPrivateKey.fromPem(group.privateKeyPem as string)
            .publicKey()
            .toSpkiDer(),
          spki,
        );
        assert.deepEqual(
          RsaOaepPrivateKey.fromJwk(group.privateKeyJwk as JsonWebKey)
            .publicKey()
            .toSpkiDer(),
          spki,
        );
        for (const t of group.tests) {
          const label = `tcId ${t.tcId} ${t.comment}`;
          const [msg, ct, label_] = [hex(t.msg), hex(t.ct), hex(t.label)];
          if (t.result === 'valid') {
            assert.deepEqual(rsaOaepDecrypt(groupKey, ct, label_), msg, label);
          } else {
            assert.equal(t.result, 'invalid', label);
            assert.throws(() => rsaOaepDecrypt(groupKey, ct, label_), DecryptionError, label);
          }
          seen[t.result]++;
        }
      }
      assert.deepEqual(seen, { valid: 18, invalid: 19, acceptable: 0 });
      assert.equal(seen.valid + seen.invalid, file.numberOfTests);
    });

    it('encrypts up to k - 2hLen - 2 bytes, with and without a label', () => {
      const publicKey = key.publicKey();
      assert.equal(publicKey.modulusBits, spec.bits);
      assert.equal(publicKey.maxPlaintextBytes, spec.maxPlaintext);
      const longest = Buffer.alloc(spec.maxPlaintext, 7);
      assert.deepEqual(rsaOaepDecrypt(key, rsaOaepEncrypt(publicKey, longest)), longest);
      const label = Buffer.from('warden:dek');
      const ct = rsaOaepEncrypt(publicKey, Buffer.from('k'), label);
      assert.equal(ct.byteLength, spec.bits / 8);
      assert.deepEqual(rsaOaepDecrypt(key, ct, label), Buffer.from('k'));
      assert.throws(() => rsaOaepDecrypt(key, ct), DecryptionError);
      assert.throws(() => rsaOaepDecrypt(key, ct, Buffer.from('warden:kek')), DecryptionError);
      assert.throws(() => rsaOaepEncrypt(publicKey, Buffer.alloc(spec.maxPlaintext + 1)), InvalidInputError);
      // Randomised: the same plaintext never encrypts the same way twice.
      assert.notDeepEqual(
        rsaOaepEncrypt(publicKey, Buffer.from('k')),
        rsaOaepEncrypt(publicKey, Buffer.from('k')),
      );
    });
  });
}

describe('RSA-OAEP keys', () => {
  it('refuses other modulus sizes, other exponents and other key types', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 2048 });
    assert.throws(() => new RsaOaepPrivateKey(small.privateKey), InvalidKeyError);
    assert.throws(() => new RsaOaepPublicKey(small.publicKey), InvalidKeyError);
    assert.throws(
      () => RsaOaepPublicKey.fromPem(small.publicKey.export({ format: 'pem', type: 'spki' }) as string),
      InvalidKeyError,
    );
    // A 3072-bit key with e = 3 (same modulus as the vector key, so no key generation is needed).
    const jwk = keyObjectOf(keys[0]!.key.publicKey()).export({ format: 'jwk' });
    assert.throws(() => RsaOaepPublicKey.fromJwk({ ...jwk, e: 'Aw' }), {
      name: 'InvalidKeyError',
      message: 'RSA public exponent must be 65537',
    });
    const ec = EcdsaPrivateKey.generate('P-256');
    assert.throws(() => RsaOaepPrivateKey.fromPkcs8Der(ec.exportPkcs8Der()), InvalidKeyError);
    assert.throws(() => RsaOaepPublicKey.fromSpkiDer(ec.publicKey().toSpkiDer()), InvalidKeyError);
  });

  it('generates 3072-bit keys asynchronously', async () => {
    const key = await RsaOaepPrivateKey.generate(3072);
    assert.equal(key.modulusBits, 3072);
    assert.deepEqual(
      rsaOaepDecrypt(key, rsaOaepEncrypt(key.publicKey(), Buffer.from('x'))),
      Buffer.from('x'),
    );
    await assert.rejects(RsaOaepPrivateKey.generate(2048 as 3072), InvalidKeyError);
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only keys of the right kind', () => {
    const key = keys[0]!.key;
    // @ts-expect-error a private key is not an encryption key
    assert.throws(() => rsaOaepEncrypt(key, Buffer.from('x')), InvalidKeyError);
    // @ts-expect-error a public key cannot decrypt
    assert.throws(() => rsaOaepDecrypt(key.publicKey(), Buffer.alloc(384)), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});
