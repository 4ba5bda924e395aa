import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from '../../src/crypto/errors.ts';
import { MAX_RANDOM_BYTES, publicNonce, randomBytes } from '../../src/crypto/random.ts';

describe('randomBytes', () => {
  it('returns the requested number of bytes, from 1 to 1 MiB', () => {
    assert.equal(randomBytes(1).byteLength, 1);
    assert.equal(randomBytes(32).byteLength, 32);
    assert.equal(randomBytes(MAX_RANDOM_BYTES).byteLength, 1024 * 1024);
  });

  it('refuses zero, negative, fractional, non-finite and oversized lengths', () => {
    for (const n of [0, -1, 1.5, Number.NaN, Infinity, MAX_RANDOM_BYTES + 1, 2 ** 53]) {
      assert.throws(() => randomBytes(n), InvalidInputError, String(n));
    }
  });

  it('does not repeat itself', () => {
    const seen = new Set(Array.from({ length: 1000 }, () => randomBytes(16).toString('hex')));
    assert.equal(seen.size, 1000);
  });
});

describe('publicNonce', () => {
  it('cuts distinct nonces of the asked length from its pool, across refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const nonce = publicNonce(12);
      assert.equal(nonce.length, 12);
      seen.add(nonce.toString('hex'));
    }
    assert.equal(seen.size, 5000);
    const first = publicNonce(12);
    const copy = Buffer.from(first);
    for (let i = 0; i < 1000; i++) publicNonce(12);
    assert.deepEqual(first, copy, 'a nonce handed out is never overwritten by a later refill');
    assert.throws(() => publicNonce(0));
    assert.throws(() => publicNonce(65));
  });
});
