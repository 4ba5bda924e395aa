import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { DecryptionError } from '../../src/crypto/index.ts';
import {
  ContextMismatchError,
  KeyUnavailableError,
  MalformedEnvelopeError,
  TruncatedEnvelopeError,
  decryptStream,
  encryptStream,
  parseHeader,
} from '../../src/envelope/index.ts';
import { collect, freshKeyring, fromBuffer } from './support.ts';

const keyring = await freshKeyring();
const other = await freshKeyring();
const MIN_CHUNK = 14;

async function seal(
  msg: Uint8Array,
  opts: { context?: Record<string, string>; declare?: boolean; piece?: number } = {},
) {
  return collect(
    encryptStream(fromBuffer(msg, opts.piece), {
      recipients: [keyring],
      context: opts.context ?? { purpose: 'test' },
      chunkExponent: MIN_CHUNK,
      plaintextLength: opts.declare === false ? undefined : msg.length,
    }),
  );
}

async function open(ct: Uint8Array, expectedContext?: Record<string, string>, piece?: number) {
  return collect(decryptStream(fromBuffer(ct, piece), { keys: [keyring], expectedContext }));
}

/** Every failure a decryptor may report for a damaged ciphertext. */
const damaged = (err: unknown) =>
  err instanceof DecryptionError ||
  err instanceof TruncatedEnvelopeError ||
  err instanceof MalformedEnvelopeError ||
  err instanceof KeyUnavailableError;

describe('envelope streaming', () => {
  it('round-trips messages around chunk boundaries, with and without a declared length', async () => {
    for (const n of [0, 1, 16383, 16384, 16385, 3 * 16384, 3 * 16384 + 7]) {
      const msg = randomBytes(n);
      for (const declare of [true, false]) {
        for (const piece of [1000, 16384, 70000]) {
          assert.deepEqual(
            await open(await seal(msg, { declare, piece }), undefined, piece),
            msg,
            `n=${n} declare=${declare}`,
          );
        }
      }
    }
  });

  it('authenticates the encryption context and reports a mismatch by key name', async () => {
    const ct = await seal(Buffer.from('hello'), { context: { dataset: 'credit-2026', purpose: 'training' } });
    assert.deepEqual(parseHeader(ct).context, { dataset: 'credit-2026', purpose: 'training' });
    assert.deepEqual(await open(ct, { purpose: 'training' }), Buffer.from('hello'));
    await assert.rejects(open(ct, { purpose: 'inference' }), ContextMismatchError);
    await assert.rejects(
      open(ct, { owner: 'x' }),
      (e: unknown) => e instanceof ContextMismatchError && e.keys.includes('owner'),
    );
  });

  it('needs a key from the keyring that encrypted it', async () => {
    const ct = await seal(Buffer.from('secret'));
    await assert.rejects(collect(decryptStream(fromBuffer(ct), { keys: [other] })), KeyUnavailableError);
  });

  it('fails on every flipped byte of a small ciphertext, and never yields a byte first', async () => {
    const msg = randomBytes(2 * 16384 + 100);
    const ct = await seal(msg);
    for (let i = 0; i < ct.length; i += i < 400 ? 1 : 997) {
      const bad = Buffer.from(ct);
      bad[i] = bad[i]! ^ 0x01;
      const yielded: Buffer[] = [];
      await assert.rejects(
        (async () => {
          for await (const p of decryptStream(fromBuffer(bad), { keys: [keyring] })) yielded.push(p);
        })(),
        damaged,
        `byte ${i}`,
      );
      // Chunks before the damage may be released (they authenticated); nothing else may be.
      const released = Buffer.concat(yielded);
      assert.deepEqual(released, msg.subarray(0, released.length));
    }
  });

  it('fails at every truncation point and on trailing data', async () => {
    const msg = randomBytes(16384 + 10);
    for (const declare of [true, false]) {
      const ct = await seal(msg, { declare });
      for (let cut = 0; cut < ct.length; cut += cut < 300 ? 1 : 211) {
        await assert.rejects(open(ct.subarray(0, cut)), damaged, `cut ${cut}`);
      }
      await assert.rejects(open(Buffer.concat([ct, Buffer.of(0)])), damaged);
      await assert.rejects(open(Buffer.concat([ct, ct.subarray(-100)])), damaged);
    }
  });

  it('reports a declared-length envelope cut short or run on as truncated, as the file paths do', async () => {
    const SEALED = 2 ** MIN_CHUNK + 16;
    for (const length of [2 * 2 ** MIN_CHUNK + 100, 2 * 2 ** MIN_CHUNK]) {
      const ct = await seal(randomBytes(length));
      const payloadStart =
        ct.length - (Math.floor(length / 2 ** MIN_CHUNK) * SEALED + (length % 2 ** MIN_CHUNK) + 16);
      // Any cut past the header and the key-commitment prefix, in any chunk.
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: payloadStart, max: ct.length - 1 }), async (at) => {
          await assert.rejects(open(ct.subarray(0, at)), TruncatedEnvelopeError, `cut at ${at}`);
        }),
        { numRuns: 60 },
      );
      for (const extra of [1, SEALED + 5]) {
        await assert.rejects(open(Buffer.concat([ct, randomBytes(extra)])), TruncatedEnvelopeError);
      }
    }
  });

  it('exhaustively: every flipped bit position and every truncation of a small ciphertext fails', async () => {
    for (const declare of [true, false]) {
      const ct = await seal(randomBytes(300), { declare });
      for (let i = 0; i < ct.length; i++) {
        for (const bit of [0x01, 0x80]) {
          const bad = Buffer.from(ct);
          bad[i] = bad[i]! ^ bit;
          await assert.rejects(open(bad), damaged, `byte ${i} bit ${bit}`);
        }
      }
      for (let cut = 0; cut < ct.length; cut++) {
        await assert.rejects(open(ct.subarray(0, cut)), damaged, `cut ${cut}`);
      }
    }
  });

  it('a huge declared plaintext length drives no allocation: the input simply ends too soon', async () => {
    const ct = await seal(Buffer.from('tiny'));
    const lengthAt = 8 + 4;
    const bad = Buffer.from(ct);
    bad.writeBigUInt64BE(2n ** 52n - 1n, lengthAt);
    await assert.rejects(open(bad), damaged);
  });

  it('rejects empty input and garbage with typed errors', async () => {
    await assert.rejects(open(Buffer.alloc(0)), TruncatedEnvelopeError);
    await assert.rejects(open(Buffer.from('not an envelope at all')), MalformedEnvelopeError);
  });

  it('fuzz: arbitrary bytes after a valid prefix never decrypt and never throw untyped errors', async () => {
    const ct = await seal(Buffer.from('fuzz me'));
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: ct.length }), fc.uint8Array({ maxLength: 200 }), async (keep, tail) => {
        const input = Buffer.concat([ct.subarray(0, keep), tail]);
        try {
          const out = await open(input);
          // Only the untouched ciphertext may decrypt.
          assert.deepEqual(input, ct);
          assert.deepEqual(out, Buffer.from('fuzz me'));
        } catch (err) {
          assert.ok(damaged(err), String(err));
        }
      }),
      { numRuns: 300 },
    );
  });
});
