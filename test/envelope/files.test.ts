import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { DecryptionError } from '../../src/crypto/index.ts';
import {
  EnvelopeFile,
  TruncatedEnvelopeError,
  collectBytes,
  decryptFile,
  decryptFileParallel,
  decryptFileToHandle,
  encryptFile,
  encryptFileParallel,
  encryptStream,
} from '../../src/envelope/index.ts';
import { freshKeyring, tempDir } from './support.ts';

const keyring = await freshKeyring();
const dir = tempDir();
const CHUNK_EXP = 14;
const C = 2 ** CHUNK_EXP;
let counter = 0;
const file = (data: Uint8Array) => {
  const p = path.join(dir, `f${counter++}`);
  writeFileSync(p, data);
  return p;
};

describe('envelope files', () => {
  it('round-trips sequential and parallel modes in every combination', async () => {
    for (const n of [0, 1, C - 1, C, C + 1, 5 * C + 3]) {
      const data = randomBytes(n);
      const input = file(data);
      const seq = `${input}.seq.wenc`;
      const par = `${input}.par.wenc`;
      await encryptFile(input, seq, { recipients: [keyring], chunkExponent: CHUNK_EXP });
      await encryptFileParallel(input, par, { recipients: [keyring], chunkExponent: CHUNK_EXP, threads: 2 });
      for (const ct of [seq, par]) {
        await decryptFile(ct, `${ct}.a`, { keys: [keyring] });
        await decryptFileParallel(ct, `${ct}.b`, { keys: [keyring], threads: 3 });
        assert.deepEqual(readFileSync(`${ct}.a`), data, `sequential n=${n}`);
        assert.deepEqual(readFileSync(`${ct}.b`), data, `parallel n=${n}`);
      }
    }
  });

  it('reads any plaintext range, authenticated, without decrypting the rest', async () => {
    const data = randomBytes(7 * C + 123);
    const declared = `${file(data)}.wenc`;
    await encryptFile(path.join(dir, `f${counter - 1}`), declared, {
      recipients: [keyring],
      chunkExponent: CHUNK_EXP,
    });
    const streamed = path.join(dir, 'streamed.wenc');
    writeFileSync(
      streamed,
      await collectBytes(encryptStream([data], { recipients: [keyring], chunkExponent: CHUNK_EXP })),
    );
    for (const ct of [declared, streamed]) {
      await using reader = await EnvelopeFile.open(ct, { keys: [keyring] });
      assert.equal(reader.size, data.length);
      await fc.assert(
        fc.asyncProperty(fc.nat(data.length), fc.nat(data.length), async (a, b) => {
          const [start, end] = a <= b ? [a, b] : [b, a];
          assert.deepEqual(await reader.read(start, end), data.subarray(start, end));
        }),
        { numRuns: 100 },
      );
      await assert.rejects(reader.read(0, data.length + 1), RangeError);
    }
  });

  it('random access refuses truncated files on open and damaged chunks on read', async () => {
    const data = randomBytes(4 * C + 5);
    const input = file(data);
    await encryptFile(input, `${input}.wenc`, { recipients: [keyring], chunkExponent: CHUNK_EXP });
    const ct = readFileSync(`${input}.wenc`);
    writeFileSync(`${input}.cut`, ct.subarray(0, ct.length - 1));
    await assert.rejects(EnvelopeFile.open(`${input}.cut`, { keys: [keyring] }), TruncatedEnvelopeError);
    const headerLength = ct.readUInt32BE(4);
    const damaged = Buffer.from(ct);
    const inChunk2 = headerLength + 56 + 2 * (C + 16) + 10;
    damaged[inChunk2] = damaged[inChunk2]! ^ 1;
    writeFileSync(`${input}.bad`, damaged);
    await using reader = await EnvelopeFile.open(`${input}.bad`, { keys: [keyring] });
    assert.deepEqual(await reader.read(0, 2 * C), data.subarray(0, 2 * C));
    await assert.rejects(reader.read(2 * C, 2 * C + 1), DecryptionError);
    await assert.rejects(reader.read(C, 3 * C), DecryptionError);
    // A failed read gives its scratch buffer back: later reads, through it and around it, still verify.
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await reader.read(C - 7, C + 9), data.subarray(C - 7, C + 9));
      await assert.rejects(reader.read(2 * C - 1, 2 * C + 1), DecryptionError);
    }
    assert.deepEqual(await reader.read(3 * C + 2, 4 * C + 5), data.subarray(3 * C + 2));
  });

  it('random reads return buffers of their own, also when they run concurrently', async () => {
    const data = randomBytes(9 * C + 77);
    const input = file(data);
    await encryptFile(input, `${input}.wenc`, { recipients: [keyring], chunkExponent: CHUNK_EXP });
    await using reader = await EnvelopeFile.open(`${input}.wenc`, { keys: [keyring] });
    const range = fc
      .tuple(fc.nat(data.length), fc.nat(3 * C))
      .map(([start, length]) => [start, Math.min(data.length, start + length)] as const);
    await fc.assert(
      fc.asyncProperty(fc.array(range, { minLength: 1, maxLength: 8 }), async (ranges) => {
        // Started together: at most one holds the scratch buffer, and ranges over two chunks never use it.
        const results = await Promise.all(ranges.map(([start, end]) => reader.read(start, end)));
        // Read again one after the other: earlier results must not change under later reads.
        for (const [start, end] of ranges) await reader.read(start, end);
        ranges.forEach(([start, end], i) => {
          assert.deepEqual(results[i], data.subarray(start, end));
        });
      }),
      { numRuns: 60 },
    );
    const whole = await reader.read(2 * C, 3 * C);
    assert.deepEqual(whole, data.subarray(2 * C, 3 * C));
    assert.deepEqual(await reader.read(9 * C, 9 * C + 77), data.subarray(9 * C));
    assert.deepEqual(whole, data.subarray(2 * C, 3 * C));
    assert.deepEqual(await reader.chunk(9), data.subarray(9 * C));
    assert.deepEqual(await reader.chunk(4), data.subarray(4 * C, 5 * C));
    await assert.rejects(reader.chunk(10), RangeError);
    await assert.rejects(reader.chunk(-1), RangeError);
    await assert.rejects(reader.chunk(1.5), RangeError);
    // Closing frees the scratch buffer; a read already under way still completes with its own bytes.
    const underway = reader.read(C - 3, C + 3);
    await reader.close();
    assert.deepEqual(await underway, data.subarray(C - 3, C + 3));
  });

  it('leaves no output and no temporary file behind when decryption fails', async () => {
    // Damage in the middle and in the last chunk: the failing chunk may be one that was being read ahead.
    for (const at of [0.5, 0.999]) {
      const data = randomBytes(40 * C);
      const input = file(data);
      await encryptFile(input, `${input}.wenc`, { recipients: [keyring], chunkExponent: CHUNK_EXP });
      const ct = readFileSync(`${input}.wenc`);
      const i = Math.floor(ct.length * at);
      ct[i] = ct[i]! ^ 1;
      writeFileSync(`${input}.wenc`, ct);
      const before = readdirSync(dir).length;
      for (const decrypt of [decryptFile, decryptFileParallel]) {
        await assert.rejects(decrypt(`${input}.wenc`, `${input}.out`, { keys: [keyring] }), DecryptionError);
        assert.equal(existsSync(`${input}.out`), false);
        assert.equal(readdirSync(dir).length, before, 'a temporary file was left behind');
      }
    }
  });

  it('round-trips envelopes streamed without a declared length through the file decryptor', async () => {
    for (const n of [0, 1, C - 1, C, C + 1, 5 * C + 3]) {
      const data = randomBytes(n);
      const ct = path.join(dir, `streamed-${n}.wenc`);
      writeFileSync(
        ct,
        await collectBytes(encryptStream([data], { recipients: [keyring], chunkExponent: CHUNK_EXP })),
      );
      await decryptFile(ct, `${ct}.out`, { keys: [keyring] });
      assert.deepEqual(readFileSync(`${ct}.out`), data, `n=${n}`);
    }
  });

  it('writes to the sink only plaintext of chunks that verified, in order', async () => {
    const data = randomBytes(6 * C + 77);
    const input = file(data);
    await encryptFile(input, `${input}.wenc`, { recipients: [keyring], chunkExponent: CHUNK_EXP });
    const ct = readFileSync(`${input}.wenc`);
    const payload = ct.readUInt32BE(4) + 56;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: payload, max: ct.length - 1 }), async (at) => {
        const damaged = Buffer.from(ct);
        damaged[at] = damaged[at]! ^ 0x80;
        const bad = path.join(dir, 'damaged.wenc');
        writeFileSync(bad, damaged);
        const sinkPath = path.join(dir, 'damaged.out');
        const sink = await open(sinkPath, 'w');
        try {
          await assert.rejects(decryptFileToHandle(bad, sink, { keys: [keyring] }), DecryptionError);
        } finally {
          await sink.close();
        }
        const verifiedChunks = Math.floor((at - payload) / (C + 16));
        assert.deepEqual(readFileSync(sinkPath), data.subarray(0, verifiedChunks * C));
      }),
      { numRuns: 40 },
    );
  });

  it('without a declared length, a damaged final chunk fails before any plaintext reaches the sink', async () => {
    const data = randomBytes(3 * C + 9);
    const ct = await collectBytes(encryptStream([data], { recipients: [keyring], chunkExponent: CHUNK_EXP }));
    ct[ct.length - 1] = ct[ct.length - 1]! ^ 1;
    const bad = path.join(dir, 'bad-final.wenc');
    writeFileSync(bad, ct);
    const sinkPath = path.join(dir, 'bad-final.out');
    const sink = await open(sinkPath, 'w');
    try {
      await assert.rejects(decryptFileToHandle(bad, sink, { keys: [keyring] }), DecryptionError);
    } finally {
      await sink.close();
    }
    assert.equal(readFileSync(sinkPath).length, 0);
    // Random access does not trust such a file for its length either: it is refused on open.
    await assert.rejects(EnvelopeFile.open(bad, { keys: [keyring] }), DecryptionError);
  });
});
