import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidKeyError } from '../../src/crypto/errors.ts';
import { HMAC_SHA256_TAG_BYTES, mac, verifyMac } from '../../src/crypto/hmac.ts';
import { AeadKey, MacKey } from '../../src/crypto/keys.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

describe('HMAC-SHA256, Wycheproof hmac_sha256_test.json', () => {
  const file = loadWycheproof('hmac_sha256_test.json');

  it('verifies every valid full tag, rejects every invalid tag, and refuses truncated tags', () => {
    const full = { valid: 0, invalid: 0, acceptable: 0 };
    const truncated = { valid: 0, invalid: 0, acceptable: 0 };
    for (const group of file.testGroups) {
      const tagBytes = (group.tagSize as number) / 8;
      for (const t of group.tests) {
        const label = `tcId ${t.tcId}`;
        const key = MacKey.fromBytes(hex(t.key));
        const [msg, tag] = [hex(t.msg), hex(t.tag)];
        const computed = mac(key, msg);
        assert.equal(computed.byteLength, HMAC_SHA256_TAG_BYTES);
        // The computation itself is checked for every valid case, truncated or not.
        assert.equal(computed.subarray(0, tagBytes).equals(tag), t.result === 'valid', label);
        if (tagBytes === HMAC_SHA256_TAG_BYTES) {
          assert.equal(verifyMac(key, msg, tag), t.result === 'valid', label);
          full[t.result]++;
        } else {
          // The API takes full 32-byte tags only, so even a correct 16-byte prefix does not verify.
          assert.equal(verifyMac(key, msg, tag), false, label);
          truncated[t.result]++;
        }
      }
    }
    assert.deepEqual(full, { valid: 33, invalid: 54, acceptable: 0 });
    assert.deepEqual(truncated, { valid: 33, invalid: 54, acceptable: 0 });
    assert.equal(full.valid + full.invalid + truncated.valid + truncated.invalid, file.numberOfTests);
  });
});

describe('mac / verifyMac', () => {
  const key = MacKey.generate();
  const data = Buffer.from('message');

  it('rejects every flipped bit, other lengths and other data', () => {
    const tag = mac(key, data);
    assert.equal(verifyMac(key, data, tag), true);
    for (let bit = 0; bit < tag.byteLength * 8; bit++) {
      const bad = Buffer.from(tag);
      bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      assert.equal(verifyMac(key, data, bad), false);
    }
    for (const n of [0, 1, 16, 31]) assert.equal(verifyMac(key, data, tag.subarray(0, n)), false);
    assert.equal(verifyMac(key, data, Buffer.concat([tag, Buffer.of(0)])), false);
    assert.equal(verifyMac(key, Buffer.from('messagE'), tag), false);
    assert.equal(verifyMac(MacKey.generate(), data, tag), false);
  });

  /* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- wrong keys are passed on purpose: the type error and the runtime refusal are what is tested */
  it('accepts only a MacKey', () => {
    // @ts-expect-error an AeadKey is not a MAC key
    assert.throws(() => mac(AeadKey.generate(), data), InvalidKeyError);
    // @ts-expect-error an AeadKey is not a MAC key
    assert.throws(() => verifyMac(AeadKey.generate(), data, Buffer.alloc(32)), InvalidKeyError);
  });
  /* eslint-enable @typescript-eslint/no-unsafe-class-instance-assignment */
});
