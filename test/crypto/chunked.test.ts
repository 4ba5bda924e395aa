import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createSecretKey, randomBytes } from 'node:crypto';
import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import {
  C2SP_CHUNK_SIZE,
  ChunkLayout,
  PREFIX_BYTES,
  TAG_BYTES,
  openChunked,
  sealChunk,
  sealChunked,
} from '../../src/crypto/chunked.ts';
import { DecryptionError, InvalidKeyError } from '../../src/crypto/errors.ts';
import { hex, loadWycheproof } from '../support/vectors.ts';

const file = loadWycheproof('c2sp_chunked_encryption_aes_256_gcm_test.json');
const cases = file.testGroups.flatMap((g) => g.tests);

describe('C2SP chunked encryption, Wycheproof Cobblestone-256 vectors', () => {
  it('covers every vector in the file', () => {
    assert.equal(cases.length, file.numberOfTests);
    assert.ok(cases.some((t) => t.result === 'valid') && cases.some((t) => t.result === 'invalid'));
    assert.ok(!cases.some((t) => t.result === 'acceptable'), 'the file has no acceptable cases to decide on');
  });

  for (const t of cases) {
    it(`tcId ${t.tcId} (${t.result}) ${t.comment} [${t.flags.join(',')}]`, () => {
      const key = hex(t.key);
      const ct = inflateSync(hex(t.ct));
      const ctx = hex(t.ctx);
      if (t.result === 'valid') {
        const msg = openChunked(key, ctx, ct);
        assert.equal(msg.length, t.msgLength);
        assert.equal(createHash('sha512').update(msg).digest('hex'), t.msgSha512);
        // Raw mode is deterministic: re-encrypting with the vector's key schedule reproduces the chunks.
        const keys = {
          aeadKey: createSecretKey(hex(t.aeadKey)),
          baseNonce: hex(t.baseNonce),
          commitment: ct.subarray(24, PREFIX_BYTES),
        };
        const layout = new ChunkLayout(C2SP_CHUNK_SIZE);
        const chunks: Buffer[] = [];
        for (let k = 0; k < layout.chunkCount(msg.length); k++) {
          chunks.push(...sealChunk(keys, k, msg.subarray(k * C2SP_CHUNK_SIZE, (k + 1) * C2SP_CHUNK_SIZE)));
        }
        assert.deepEqual(Buffer.concat(chunks), ct.subarray(PREFIX_BYTES));
        // Round trip through encryption with a fresh salt.
        assert.deepEqual(openChunked(key, ctx, sealChunked(key, ctx, msg)), msg);
      } else if (t.flags.includes('InvalidKeySize')) {
        assert.throws(() => openChunked(key, ctx, ct), InvalidKeyError);
      } else {
        assert.throws(() => openChunked(key, ctx, ct), DecryptionError);
      }
    });
  }
});

describe('ChunkLayout', () => {
  it('maps lengths both ways and rejects lengths no message produces', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4096 }),
        fc.integer({ min: 0, max: 100_000 }),
        (chunkSize, length) => {
          const layout = new ChunkLayout(chunkSize);
          const ctLength = layout.ciphertextLength(length);
          assert.equal(layout.plaintextLength(ctLength), length);
          // A ciphertext ending exactly on a full encrypted chunk is a truncation.
          assert.equal(
            layout.plaintextLength(PREFIX_BYTES + layout.chunkCount(length) * layout.encryptedChunkSize),
            undefined,
          );
        },
      ),
    );
    const layout = new ChunkLayout(16);
    for (let extra = 0; extra < TAG_BYTES; extra++) {
      assert.equal(layout.plaintextLength(PREFIX_BYTES + extra), undefined);
    }
  });

  it('round-trips random messages at random chunk sizes, and any flipped bit fails', () => {
    const key = randomBytes(32);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(),
        (chunkSize, msg, where) => {
          const ct = sealChunked(key, Buffer.from('ctx'), msg, chunkSize);
          assert.deepEqual(openChunked(key, Buffer.from('ctx'), ct, chunkSize), Buffer.from(msg));
          const bit = where % (ct.length * 8);
          ct[bit >> 3]! ^= 1 << (bit & 7);
          assert.throws(() => openChunked(key, Buffer.from('ctx'), ct, chunkSize), DecryptionError);
        },
      ),
      { numRuns: 200 },
    );
  });
});
