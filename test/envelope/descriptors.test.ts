import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { DecryptionError } from '../../src/crypto/index.ts';
import {
  MalformedEnvelopeError,
  TruncatedEnvelopeError,
  decryptDescriptor,
  decryptStream,
  encryptDescriptor,
  encryptStream,
} from '../../src/envelope/index.ts';
import type { LocalKeyring } from '../../src/keyring/index.ts';
import { collect, freshKeyring, fromBuffer, tempDir } from './support.ts';

const dir = tempDir('warden-descriptors-');
const CHUNK_EXPONENT = 14; // 16 KiB chunks: many chunks from small inputs
const CHUNK = 2 ** CHUNK_EXPONENT;
const SEALED = CHUNK + 16;
let files = 0;

function fileWith(bytes: Uint8Array): string {
  const file = path.join(dir, `in-${files++}`);
  writeFileSync(file, bytes);
  return file;
}

/** Runs `fn(inputFd, outputFd)` over a file holding `input` and a fresh output file; returns the output. */
async function throughDescriptors(
  input: Uint8Array,
  fn: (inFd: number, outFd: number) => Promise<unknown>,
): Promise<Buffer> {
  const source = openSync(fileWith(input), 'r');
  const target = path.join(dir, `out-${files++}`);
  const sink = openSync(target, 'w');
  try {
    await fn(source, sink);
  } finally {
    closeSync(source);
    closeSync(sink);
  }
  return readFileSync(target);
}

async function sealed(keyring: LocalKeyring, data: Uint8Array, declareLength = false): Promise<Buffer> {
  return throughDescriptors(data, (i, o) =>
    encryptDescriptor(i, o, {
      recipients: [keyring],
      context: { purpose: 'test' },
      chunkExponent: CHUNK_EXPONENT,
      ...(declareLength ? { plaintextLength: data.length } : {}),
    }),
  );
}

function opened(keyring: LocalKeyring, envelope: Uint8Array): Promise<Buffer> {
  return throughDescriptors(envelope, (i, o) =>
    decryptDescriptor(i, o, { keys: [keyring], expectedContext: { purpose: 'test' } }),
  );
}

/** The error class a promise rejects with, or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as Error).constructor.name;
  }
}

describe('envelopes between descriptors', () => {
  it('round-trips every length around chunk boundaries, with and without a declared length', async () => {
    const keyring = await freshKeyring();
    for (const length of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5]) {
      const data = randomBytes(length);
      for (const declare of [false, true]) {
        const envelope = await sealed(keyring, data, declare);
        assert.equal(envelope.length > length, true);
        assert.deepEqual(await opened(keyring, envelope), data, `length ${length}, declared ${declare}`);
      }
    }
  });

  it('writes the same format as the stream generators: each decrypts the other', async () => {
    const keyring = await freshKeyring();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 5 * CHUNK }), async (length) => {
        const data = randomBytes(length);
        const fromDescriptors = await sealed(keyring, data);
        const viaStream = await collect(
          decryptStream(fromBuffer(fromDescriptors, 4096), {
            keys: [keyring],
            expectedContext: { purpose: 'test' },
          }),
        );
        assert.deepEqual(viaStream, data);
        const fromStream = await collect(
          encryptStream(fromBuffer(data, 4096), {
            recipients: [keyring],
            context: { purpose: 'test' },
            chunkExponent: CHUNK_EXPONENT,
          }),
        );
        assert.deepEqual(await opened(keyring, fromStream), data);
      }),
      { numRuns: 20 },
    );
  });

  it('refuses input that does not match a declared length', async () => {
    const keyring = await freshKeyring();
    const data = randomBytes(CHUNK + 3);
    await assert.rejects(
      throughDescriptors(data, (i, o) =>
        encryptDescriptor(i, o, { recipients: [keyring], chunkExponent: CHUNK_EXPONENT, plaintextLength: 7 }),
      ),
      MalformedEnvelopeError,
    );
  });

  it('fails every truncation and every flipped byte, as the stream decryptor does', async () => {
    const keyring = await freshKeyring();
    const data = randomBytes(2 * CHUNK + 100);
    const envelope = await sealed(keyring, data);
    const expected = { purpose: 'test' };
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: envelope.length - 1 }),
        fc.boolean(),
        async (at, truncate) => {
          const damaged = Buffer.from(envelope);
          if (!truncate) damaged[at] = (damaged[at] ?? 0) ^ 0x01;
          const input = truncate ? damaged.subarray(0, at) : damaged;
          const viaDescriptors = await outcome(opened(keyring, input));
          const viaStream = await outcome(
            collect(decryptStream(fromBuffer(input, 4096), { keys: [keyring], expectedContext: expected })),
          );
          assert.notEqual(viaDescriptors, 'ok');
          assert.ok(
            [
              'DecryptionError',
              'TruncatedEnvelopeError',
              'MalformedEnvelopeError',
              'ContextMismatchError',
              // A flipped bit in a key slot's key id: no key of the keyring is the one named (public metadata).
              'KeyUnavailableError',
            ].includes(viaDescriptors),
            viaDescriptors,
          );
          // Past the header both decryptors report the same thing.
          if (at >= envelope.length - (2 * SEALED + 116)) assert.equal(viaDescriptors, viaStream);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('withholds a full-size chunk until more input shows it was not the last one', async () => {
    const keyring = await freshKeyring();
    const data = randomBytes(2 * CHUNK + 100);
    const envelope = await sealed(keyring, data);
    // Cut right after the second full chunk: its tag is valid, but the final chunk is missing.
    const cut = envelope.length - (100 + 16);
    const target = path.join(dir, `out-${files++}`);
    const source = openSync(fileWith(envelope.subarray(0, cut)), 'r');
    const sink = openSync(target, 'w');
    try {
      await assert.rejects(
        decryptDescriptor(source, sink, { keys: [keyring], expectedContext: { purpose: 'test' } }),
        TruncatedEnvelopeError,
      );
    } finally {
      closeSync(source);
      closeSync(sink);
    }
    // Only the first chunk was released.
    assert.deepEqual(readFileSync(target), data.subarray(0, CHUNK));
  });

  it('rejects bytes appended after the final chunk', async () => {
    const keyring = await freshKeyring();
    const envelope = await sealed(keyring, randomBytes(CHUNK + 9));
    await assert.rejects(opened(keyring, Buffer.concat([envelope, Buffer.from([0])])), DecryptionError);
  });

  it('reports a declared-length envelope cut short or run on as truncated, as the file paths do', async () => {
    const keyring = await freshKeyring();
    for (const length of [2 * CHUNK + 100, 2 * CHUNK]) {
      const envelope = await sealed(keyring, randomBytes(length), true);
      const payloadStart =
        envelope.length - (Math.floor(length / CHUNK) * SEALED + (length % CHUNK) + 16) - 56;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: payloadStart + 56, max: envelope.length - 1 }), async (at) => {
          assert.equal(await outcome(opened(keyring, envelope.subarray(0, at))), 'TruncatedEnvelopeError');
        }),
        { numRuns: 60 },
      );
      for (const extra of [1, SEALED + 5]) {
        const longer = Buffer.concat([envelope, randomBytes(extra)]);
        assert.equal(await outcome(opened(keyring, longer)), 'TruncatedEnvelopeError');
      }
    }
  });

  it('waits on a descriptor another program left non-blocking instead of failing with EAGAIN', async () => {
    const keyring = await freshKeyring();
    const fifo = path.join(dir, `fifo-${files++}`);
    execFileSync('mkfifo', [fifo]);
    // O_NONBLOCK on the read end: every read finds the pipe empty until the writer below catches up.
    const reader = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const writer = openSync(fifo, fsConstants.O_WRONLY);
    const data = randomBytes(3 * CHUNK + 11);
    const target = path.join(dir, `out-${files++}`);
    const sink = openSync(target, 'w');
    let offset = 0;
    const feed = setInterval(() => {
      offset += writeSync(writer, data, offset, Math.min(5000, data.length - offset));
      if (offset === data.length) {
        clearInterval(feed);
        closeSync(writer);
      }
    }, 2);
    try {
      await encryptDescriptor(reader, sink, { recipients: [keyring], chunkExponent: CHUNK_EXPONENT });
    } finally {
      closeSync(reader);
      closeSync(sink);
    }
    assert.deepEqual(
      await collect(decryptStream(fromBuffer(readFileSync(target)), { keys: [keyring] })),
      data,
    );
  });
});
