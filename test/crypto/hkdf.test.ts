import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { open, seal } from '../../src/crypto/aes-gcm.ts';
import { InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import { hkdf, hkdfDeriveKey, hkdfExpand, hkdfExtract } from '../../src/crypto/hkdf.ts';
import { AeadKey, HkdfInputKey, MacKey, keyObjectOf } from '../../src/crypto/keys.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

describe('HKDF-SHA256, Wycheproof hkdf_sha256_test.json', () => {
  const file = loadWycheproof('hkdf_sha256_test.json');

  it('derives every valid output, through hkdf and through extract + expand, and refuses every invalid size', () => {
    const seen = { valid: 0, invalid: 0, acceptable: 0 };
    for (const group of file.testGroups) {
      for (const t of group.tests) {
        const label = `tcId ${t.tcId}`;
        const ikm = HkdfInputKey.fromBytes(hex(t.ikm));
        const [salt, info] = [hex(t.salt), hex(t.info)];
        const length = t.size as number;
        if (t.result === 'valid') {
          const okm = hex(t.okm);
          assert.deepEqual(hkdf(ikm, { salt, info, length }), okm, label);
          assert.deepEqual(hkdf(ikm, { hash: 'sha256', salt, info, length }), okm, label);
          assert.deepEqual(hkdfExpand(hkdfExtract(ikm, { salt }), { info, length }), okm, label);
        } else {
          assert.equal(t.result, 'invalid', label);
          assert.throws(() => hkdf(ikm, { salt, info, length }), InvalidInputError, label);
          assert.throws(
            () => hkdfExpand(hkdfExtract(ikm, { salt }), { info, length }),
            InvalidInputError,
            label,
          );
        }
        seen[t.result]++;
      }
    }
    assert.deepEqual(seen, { valid: 83, invalid: 3, acceptable: 0 });
    assert.equal(seen.valid + seen.invalid, file.numberOfTests);
  });

  it('computes the PRK of RFC 5869 A.1 (the file gives only OKM)', () => {
    const prk = hkdfExtract(HkdfInputKey.fromBytes(Buffer.alloc(22, 0x0b)), {
      salt: Buffer.from('000102030405060708090a0b0c', 'hex'),
    });
    assert.equal(
      keyObjectOf(prk).export().toString('hex'),
      '077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5',
    );
  });
});

describe('HKDF-SHA512', () => {
  it('agrees between the node:crypto path and the extract + expand path', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 100 }),
        fc.uint8Array({ maxLength: 100 }),
        fc.uint8Array({ maxLength: 100 }),
        fc.integer({ min: 1, max: 255 * 64 }),
        (ikmBytes, salt, info, length) => {
          const ikm = HkdfInputKey.fromBytes(ikmBytes);
          const direct = hkdf(ikm, { hash: 'sha512', salt, info, length });
          const twoStep = hkdfExpand(hkdfExtract(ikm, { hash: 'sha512', salt }), {
            hash: 'sha512',
            info,
            length,
          });
          assert.equal(direct.byteLength, length);
          assert.deepEqual(twoStep, direct);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('differs from SHA-256 output', () => {
    const ikm = HkdfInputKey.generate();
    const params = { info: Buffer.from('x'), length: 32 };
    assert.notDeepEqual(hkdf(ikm, { ...params, hash: 'sha512' }), hkdf(ikm, params));
  });
});

describe('HKDF limits and typing', () => {
  const ikm = HkdfInputKey.generate();
  const info = Buffer.alloc(0);

  it('enforces 1 <= length <= 255 * HashLen', () => {
    assert.equal(hkdf(ikm, { info, length: 255 * 32 }).byteLength, 8160);
    assert.equal(hkdf(ikm, { hash: 'sha512', info, length: 255 * 64 }).byteLength, 16320);
    const prk512 = HkdfInputKey.fromBytes(Buffer.alloc(64, 1));
    assert.equal(hkdfExpand(prk512, { hash: 'sha512', info, length: 255 * 64 }).byteLength, 16320);
    for (const [hash, length] of [
      ['sha256', 255 * 32 + 1],
      ['sha512', 255 * 64 + 1],
      ['sha256', 0],
      ['sha256', -1],
      ['sha256', 1.5],
    ] as const) {
      assert.throws(() => hkdf(ikm, { hash, info, length }), InvalidInputError);
      assert.throws(() => hkdfExpand(prk512, { hash, info, length }), InvalidInputError);
    }
  });

  it('caps info at 1024 bytes on both paths, and refuses hashes other than SHA-256/512', () => {
    const long = Buffer.alloc(1025);
    assert.equal(hkdf(ikm, { info: long.subarray(1), length: 32 }).byteLength, 32);
    assert.throws(() => hkdf(ikm, { info: long, length: 32 }), InvalidInputError);
    assert.throws(() => hkdfExpand(ikm, { info: long, length: 32 }), InvalidInputError);
    const sha1 = 'sha1' as 'sha256';
    assert.throws(() => hkdf(ikm, { hash: sha1, info, length: 32 }), InvalidInputError);
    assert.throws(() => hkdfExtract(ikm, { hash: sha1 }), InvalidInputError);
  });

  it('needs a PRK of at least HashLen bytes for expand-only', () => {
    const short = HkdfInputKey.fromBytes(Buffer.alloc(32, 7));
    assert.equal(hkdfExpand(short, { info, length: 32 }).byteLength, 32);
    assert.throws(() => hkdfExpand(short, { hash: 'sha512', info, length: 32 }), InvalidKeyError);
  });

  it('returns the PRK as an opaque HkdfInputKey', () => {
    const prk = hkdfExtract(ikm, {});
    assert.ok(prk instanceof HkdfInputKey);
    assert.equal(prk.byteLength, 32);
    assert.equal(hkdfExtract(ikm, { hash: 'sha512' }).byteLength, 64);
  });

  it('derives typed keys that match the raw derivation', () => {
    const params = { salt: Buffer.from('salt'), info: Buffer.from('warden test aead') };
    const derived = hkdfDeriveKey(ikm, params, AeadKey);
    const reference = AeadKey.fromBytes(hkdf(ikm, { ...params, length: 32 }));
    assert.deepEqual(open(reference, seal(derived, Buffer.from('m'))), Buffer.from('m'));
    assert.equal(hkdfDeriveKey(ikm, params, MacKey).purpose, 'hmac-sha256');
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only an HkdfInputKey', () => {
    // @ts-expect-error an AeadKey is not HKDF input keying material
    assert.throws(() => hkdf(AeadKey.generate(), { info, length: 32 }), InvalidKeyError);
    // @ts-expect-error a MacKey is not a PRK
    assert.throws(() => hkdfExpand(MacKey.generate(), { info, length: 32 }), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});
