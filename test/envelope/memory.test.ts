import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { releaseBuffer } from '../../src/envelope/memory.ts';

describe('releaseBuffer', () => {
  it('frees a cipher output it owns whole: the buffer is detached and reads as empty', () => {
    const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
    const out = cipher.update(randomBytes(1 << 20));
    cipher.final();
    const backing = out.buffer;
    assert.equal(out.length, 1 << 20);
    releaseBuffer(out);
    assert.equal(backing.detached, true);
    assert.equal(out.length, 0);
    releaseBuffer(out);
  });

  it('leaves views into shared memory alone', () => {
    const pooled = Buffer.from('pooled small buffer');
    releaseBuffer(pooled);
    assert.equal(pooled.toString(), 'pooled small buffer');
    const whole = Buffer.alloc(64, 7);
    const view = whole.subarray(8, 16);
    releaseBuffer(view);
    assert.equal(whole.buffer.detached, false);
    assert.deepEqual(view, Buffer.alloc(8, 7));
    const shared = Buffer.from(new SharedArrayBuffer(16));
    releaseBuffer(shared);
    assert.equal(shared.length, 16);
  });
});
