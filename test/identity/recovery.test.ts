import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AeadKey, InvalidInputError, InvalidKeyError, MacKey } from '../../src/crypto/index.ts';
import {
  generateRecoveryCodes,
  normalizeRecoveryCode,
  RECOVERY_CODE_ALPHABET,
  verifyRecoveryCode,
} from '../../src/identity/credentials/recovery.ts';

describe('recovery codes', () => {
  const key = MacKey.generate();

  it('generates 10 distinct grouped codes from the unambiguous alphabet, with keyed hashes', () => {
    const { codes, hashes } = generateRecoveryCodes(key);
    assert.equal(codes.length, 10);
    assert.equal(hashes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes)
      assert.match(c, /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    for (const h of hashes) assert.match(h, /^[A-Za-z0-9_-]{43}$/);
    for (const [i, c] of codes.entries()) assert.ok(!hashes[i]!.includes(c.replace(/-/g, '')));
    assert.equal(RECOVERY_CODE_ALPHABET.length, 32);
    assert.doesNotMatch(RECOVERY_CODE_ALPHABET, /[ILOU]/);
  });

  it('each code works once, and only once; the others keep working', () => {
    const { codes, hashes } = generateRecoveryCodes(key, 3);
    const r1 = verifyRecoveryCode(key, codes[1]!, hashes);
    assert.ok(r1.ok);
    assert.equal(r1.remaining.length, 2);
    assert.deepEqual(verifyRecoveryCode(key, codes[1]!, r1.remaining), { ok: false });
    const r0 = verifyRecoveryCode(key, codes[0]!, r1.remaining);
    assert.ok(r0.ok);
    const r2 = verifyRecoveryCode(key, codes[2]!, r0.remaining);
    assert.ok(r2.ok);
    assert.deepEqual(r2.remaining, []);
  });

  it('accepts the forgiving typed forms: case, spaces, no hyphens, O/I/L look-alikes', () => {
    const { codes, hashes } = generateRecoveryCodes(key, 1);
    const c = codes[0]!;
    for (const typed of [c.toLowerCase(), c.replace(/-/g, ''), c.replace(/-/g, ' '), ` ${c} `]) {
      assert.ok(verifyRecoveryCode(key, typed, hashes).ok, typed);
    }
    assert.equal(normalizeRecoveryCode('oOiI-lL01-2345'), '00111101' + '2345');
  });

  it('fails for a different server key, a wrong code, and malformed input; never throws', () => {
    const { codes, hashes } = generateRecoveryCodes(key, 2);
    assert.deepEqual(verifyRecoveryCode(MacKey.generate(), codes[0]!, hashes), { ok: false });
    for (const bad of [
      '',
      'ABCD-EFGH',
      'ABCD-EFGH-JKMNP',
      'ABCD-EFGH-JKM!',
      'U'.repeat(12),
      'x'.repeat(10_000),
      7 as unknown as string,
    ]) {
      assert.deepEqual(verifyRecoveryCode(key, bad, hashes), { ok: false });
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (s) => {
        const r = verifyRecoveryCode(key, s, hashes);
        assert.equal(
          r.ok,
          codes.some((c) => normalizeRecoveryCode(c) === normalizeRecoveryCode(s)),
        );
      }),
    );
  });

  it('a single changed character fails (fast-check)', () => {
    const { codes, hashes } = generateRecoveryCodes(key, 1);
    const raw = normalizeRecoveryCode(codes[0]!)!;
    fc.assert(
      fc.property(fc.nat({ max: 11 }), fc.constantFrom(...Array.from(RECOVERY_CODE_ALPHABET)), (i, ch) => {
        fc.pre(raw[i] !== ch);
        assert.equal(verifyRecoveryCode(key, raw.slice(0, i) + ch + raw.slice(i + 1), hashes).ok, false);
      }),
    );
  });

  it('refuses bad counts and wrong key types with typed errors', () => {
    assert.throws(() => generateRecoveryCodes(key, 0), InvalidInputError);
    assert.throws(() => generateRecoveryCodes(key, 101), InvalidInputError);
    assert.throws(() => generateRecoveryCodes(AeadKey.generate() as unknown as MacKey), InvalidKeyError);
    assert.throws(
      () => verifyRecoveryCode(AeadKey.generate() as unknown as MacKey, 'x', []),
      InvalidKeyError,
    );
  });
});
