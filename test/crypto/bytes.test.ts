import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constantTimeEqual } from '../../src/crypto/bytes.ts';

describe('constantTimeEqual', () => {
  it('compares equal and unequal buffers, and buffers of different lengths', () => {
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc')), true);
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd')), false);
    assert.equal(constantTimeEqual(Buffer.from('abc'), Buffer.from('ab')), false);
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  });
});
