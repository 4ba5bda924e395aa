import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { open, seal } from '../../src/crypto/aes-gcm.ts';
import { DecryptionError, InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import {
  aesKeyUnwrap,
  aesKeyUnwrapPadded,
  aesKeyWrap,
  aesKeyWrapPadded,
  unwrapKey,
  wrapKey,
} from '../../src/crypto/keywrap.ts';
import { AeadKey, MacKey, WrappingKey, keyObjectOf } from '../../src/crypto/keys.ts';
import { hex, loadWycheproof, type WycheproofFile } from '../support/vectors.ts';

interface Counts {
  valid: number;
  invalid: number;
  acceptable: number;
  refusedKeySize: number;
}

/**
 * Runs a key-wrap file through the AES-256-only API. Valid: wrap reproduces ct and unwrap returns msg. Invalid:
 * unwrap throws DecryptionError, and wrapping msg is refused or yields something else. Acceptable (RFC 3394
 * wrapping of an 8-byte key, which RFC 3394 itself does not define): refused both ways. Other key sizes: the
 * WrappingKey import refuses them.
 */
function runFile(
  file: WycheproofFile,
  wrap: (kek: WrappingKey, data: Uint8Array) => Buffer,
  unwrap: (kek: WrappingKey, wrapped: Uint8Array) => Buffer,
): Counts {
  const counts: Counts = { valid: 0, invalid: 0, acceptable: 0, refusedKeySize: 0 };
  for (const group of file.testGroups) {
    for (const t of group.tests) {
      const label = `tcId ${t.tcId} ${t.comment}`;
      if (group.keySize !== 256) {
        assert.throws(() => WrappingKey.fromBytes(hex(t.key)), InvalidKeyError, label);
        counts.refusedKeySize++;
        continue;
      }
      const kek = WrappingKey.fromBytes(hex(t.key));
      const [msg, ct] = [hex(t.msg), hex(t.ct)];
      if (t.result === 'valid') {
        assert.deepEqual(wrap(kek, msg), ct, label);
        assert.deepEqual(unwrap(kek, ct), msg, label);
      } else if (t.result === 'invalid') {
        assert.throws(() => unwrap(kek, ct), DecryptionError, label);
        let wrapped: Buffer | undefined;
        try {
          wrapped = wrap(kek, msg);
        } catch (e) {
          assert.ok(e instanceof InvalidInputError, label);
        }
        if (wrapped !== undefined) assert.notDeepEqual(wrapped, ct, label);
      } else {
        assert.throws(() => wrap(kek, msg), InvalidInputError, label);
        assert.throws(() => unwrap(kek, ct), DecryptionError, label);
      }
      counts[t.result]++;
    }
  }
  return counts;
}

describe('AES-256 key wrap (RFC 3394), Wycheproof aes_wrap_test.json', () => {
  it('wraps and unwraps every valid case, rejects every invalid and acceptable one', () => {
    const file = loadWycheproof('aes_wrap_test.json');
    const counts = runFile(file, aesKeyWrap, aesKeyUnwrap);
    assert.deepEqual(counts, { valid: 13, invalid: 54, acceptable: 1, refusedKeySize: 97 });
    assert.equal(
      counts.valid + counts.invalid + counts.acceptable + counts.refusedKeySize,
      file.numberOfTests,
    );
  });
});

describe('AES-256 key wrap with padding (RFC 5649), Wycheproof aes_kwp_test.json', () => {
  it('wraps and unwraps every valid case, rejects every invalid one', () => {
    const file = loadWycheproof('aes_kwp_test.json');
    const counts = runFile(file, aesKeyWrapPadded, aesKeyUnwrapPadded);
    assert.deepEqual(counts, { valid: 25, invalid: 69, acceptable: 0, refusedKeySize: 160 });
    assert.equal(counts.valid + counts.invalid + counts.refusedKeySize, file.numberOfTests);
  });
});

describe('key wrap API', () => {
  const kek = WrappingKey.generate();

  it('enforces input lengths', () => {
    for (const n of [0, 8, 15, 17, 20, 23]) {
      assert.throws(() => aesKeyWrap(kek, Buffer.alloc(n)), InvalidInputError, `KW wrap ${n}`);
    }
    for (const n of [0, 8, 16, 23, 25]) {
      assert.throws(() => aesKeyUnwrap(kek, Buffer.alloc(n)), DecryptionError, `KW unwrap ${n}`);
    }
    assert.throws(() => aesKeyWrapPadded(kek, Buffer.alloc(0)), InvalidInputError);
    for (const n of [0, 8, 15, 17]) {
      assert.throws(() => aesKeyUnwrapPadded(kek, Buffer.alloc(n)), DecryptionError, `KWP unwrap ${n}`);
    }
    for (const n of [1, 7, 8, 9, 33, 1000]) {
      const data = Buffer.alloc(n, n);
      assert.deepEqual(aesKeyUnwrapPadded(kek, aesKeyWrapPadded(kek, data)), data);
    }
  });

  it('refuses to unwrap under another key or after any change', () => {
    const wrapped = aesKeyWrap(kek, Buffer.alloc(32, 1));
    assert.throws(() => aesKeyUnwrap(WrappingKey.generate(), wrapped), DecryptionError);
    for (let i = 0; i < wrapped.byteLength; i++) {
      const tampered = Buffer.from(wrapped);
      tampered[i] = (tampered[i] ?? 0) ^ 0x80;
      assert.throws(() => aesKeyUnwrap(kek, tampered), DecryptionError, `byte ${i}`);
    }
    // KW and KWP use different initial values: one's output never unwraps as the other.
    assert.throws(() => aesKeyUnwrapPadded(kek, wrapped), DecryptionError);
  });

  it('wraps typed keys without exposing their bytes, and restores them with the stated purpose', () => {
    const dataKey = AeadKey.generate();
    const restored = unwrapKey(kek, wrapKey(kek, dataKey), AeadKey);
    assert.ok(restored instanceof AeadKey);
    assert.deepEqual(open(restored, seal(dataKey, Buffer.from('m'))), Buffer.from('m'));
    // A 17-byte MAC key only fits RFC 5649, which is why wrapKey uses it.
    const macKey = MacKey.fromBytes(Buffer.alloc(17, 3));
    assert.deepEqual(keyObjectOf(unwrapKey(kek, wrapKey(kek, macKey), MacKey)).export(), Buffer.alloc(17, 3));
    // The stated purpose's length rules still apply.
    assert.throws(() => unwrapKey(kek, wrapKey(kek, macKey), AeadKey), InvalidKeyError);
    assert.throws(() => unwrapKey(WrappingKey.generate(), wrapKey(kek, dataKey), AeadKey), DecryptionError);
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only a WrappingKey as the key-encryption key', () => {
    // @ts-expect-error an AeadKey is not a key-encryption key
    assert.throws(() => aesKeyWrap(AeadKey.generate(), Buffer.alloc(16)), InvalidKeyError);
    // @ts-expect-error an AeadKey is not a key-encryption key
    assert.throws(() => aesKeyUnwrap(AeadKey.generate(), Buffer.alloc(3)), InvalidKeyError);
    // @ts-expect-error a MacKey is not a key-encryption key
    assert.throws(() => wrapKey(MacKey.generate(), AeadKey.generate()), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});
