import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AES_GCM_NONCE_BYTES,
  AES_GCM_OVERHEAD_BYTES,
  aesGcmEncryptWithNonceForTesting,
  open,
  seal,
} from '../../src/crypto/aes-gcm.ts';
import { DecryptionError, InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import { AeadKey, MacKey, WrappingKey } from '../../src/crypto/keys.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

describe('AES-256-GCM, Wycheproof aes_gcm_test.json', () => {
  const file = loadWycheproof('aes_gcm_test.json');

  it('checks every 256-bit key / 96-bit IV / 128-bit tag case exactly and sees every other size refused', () => {
    const checked = { valid: 0, invalid: 0, acceptable: 0 };
    const refused = { keySize: 0, ivSize: 0 };
    for (const group of file.testGroups) {
      const { keySize, ivSize, tagSize } = group as unknown as {
        keySize: number;
        ivSize: number;
        tagSize: number;
      };
      assert.equal(tagSize, 128, 'the file only has 128-bit tags');
      for (const t of group.tests) {
        const label = `tcId ${t.tcId}`;
        const [iv, msg, aad, ct, tag] = [hex(t.iv), hex(t.msg), hex(t.aad), hex(t.ct), hex(t.tag)];
        if (keySize !== 256) {
          assert.throws(() => AeadKey.fromBytes(hex(t.key)), InvalidKeyError, label);
          refused.keySize++;
          continue;
        }
        const key = AeadKey.fromBytes(hex(t.key));
        if (ivSize !== 96) {
          // Not representable: the nonce is not caller-chosen, and the sealed format fixes it at 12 bytes.
          assert.throws(() => aesGcmEncryptWithNonceForTesting(key, iv, msg, aad), InvalidInputError, label);
          assert.throws(() => open(key, Buffer.concat([iv, ct, tag]), aad), DecryptionError, label);
          refused.ivSize++;
          continue;
        }
        const sealed = Buffer.concat([iv, ct, tag]);
        if (t.result === 'valid') {
          assert.deepEqual(
            aesGcmEncryptWithNonceForTesting(key, iv, msg, aad),
            Buffer.concat([ct, tag]),
            label,
          );
          assert.deepEqual(open(key, sealed, aad), msg, label);
        } else {
          assert.equal(t.result, 'invalid', label);
          assert.throws(() => open(key, sealed, aad), DecryptionError, label);
        }
        checked[t.result]++;
      }
    }
    assert.deepEqual(checked, { valid: 39, invalid: 27, acceptable: 0 });
    assert.deepEqual(refused, { keySize: 211, ivSize: 39 });
    assert.equal(checked.valid + checked.invalid + refused.keySize + refused.ivSize, file.numberOfTests);
  });
});

describe('seal / open', () => {
  const key = AeadKey.generate();
  const plaintext = Buffer.from('attack at dawn');
  const aad = Buffer.from('context');

  it('round-trips with and without AAD, including empty plaintext', () => {
    assert.deepEqual(open(key, seal(key, plaintext, aad), aad), plaintext);
    assert.deepEqual(open(key, seal(key, plaintext)), plaintext);
    assert.deepEqual(open(key, seal(key, Buffer.alloc(0), aad), aad), Buffer.alloc(0));
    // Empty AAD and no AAD are the same thing in GCM.
    assert.deepEqual(open(key, seal(key, plaintext), Buffer.alloc(0)), plaintext);
  });

  it('prepends a fresh 12-byte nonce and appends a 16-byte tag', () => {
    const a = seal(key, plaintext);
    const b = seal(key, plaintext);
    assert.equal(a.byteLength, plaintext.byteLength + AES_GCM_OVERHEAD_BYTES);
    assert.notDeepEqual(a.subarray(0, AES_GCM_NONCE_BYTES), b.subarray(0, AES_GCM_NONCE_BYTES));
  });

  it('throws the same DecryptionError for every modified byte, truncation, wrong AAD and wrong key', () => {
    const sealed = seal(key, plaintext, aad);
    for (let i = 0; i < sealed.byteLength; i++) {
      const tampered = Buffer.from(sealed);
      tampered[i] = (tampered[i] ?? 0) ^ 0x01;
      assert.throws(() => open(key, tampered, aad), DecryptionError, `byte ${i}`);
    }
    for (let n = 0; n < sealed.byteLength; n++) {
      assert.throws(() => open(key, sealed.subarray(0, n), aad), DecryptionError, `length ${n}`);
    }
    assert.throws(() => open(key, Buffer.concat([sealed, Buffer.of(0)]), aad), DecryptionError);
    assert.throws(() => open(key, sealed), DecryptionError);
    assert.throws(() => open(key, sealed, Buffer.from('other')), DecryptionError);
    assert.throws(() => open(AeadKey.generate(), sealed, aad), DecryptionError);
    assert.throws(
      () => open(key, sealed.subarray(0, 3)),
      (e: unknown) => e instanceof DecryptionError && e.message === 'decryption failed',
    );
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only an AeadKey, at compile time and at run time', () => {
    // @ts-expect-error a MacKey is not an AeadKey
    assert.throws(() => seal(MacKey.generate(), plaintext), InvalidKeyError);
    // @ts-expect-error a WrappingKey is not an AeadKey, though both are 32-byte AES keys
    assert.throws(() => open(WrappingKey.generate(), seal(key, plaintext)), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */

  it('only lets tests pick the nonce, and only 12-byte nonces', () => {
    for (const n of [0, 8, 11, 13, 16]) {
      assert.throws(
        () => aesGcmEncryptWithNonceForTesting(key, Buffer.alloc(n), plaintext),
        InvalidInputError,
      );
    }
  });
});
