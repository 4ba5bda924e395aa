import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { ChunkedDecryption, ChunkedEncryption, DecryptionError } from '../crypto/index.ts';
import { TruncatedEnvelopeError } from './errors.ts';
import { inFlight, readFully, settled, writeFully } from './io.ts';
import { COLLECT_CONTEXTS_EVERY_BYTES, GarbageStep, releaseAll } from './memory.ts';

/**
 * Seals or opens a contiguous range of chunks of one envelope, reading and writing at computed offsets, so
 * several threads work on one file at once. The parent has already written (encrypt) or verified (decrypt)
 * the header and prefix; this thread only re-derives the key schedule from them.
 */
export interface ChunkRangeJob {
  readonly mode: 'seal' | 'open';
  readonly input: string;
  readonly output: string;
  readonly dataKey: Uint8Array;
  readonly payloadContext: Uint8Array;
  readonly prefix: Uint8Array;
  readonly chunkSize: number;
  /** Offset of the payload prefix in the ciphertext file (the header length). */
  readonly headerLength: number;
  readonly plaintextLength: number;
  readonly firstChunk: number;
  readonly endChunk: number;
}

export type WorkerMessage =
  | { type: 'progress'; bytes: number }
  | { type: 'done' }
  | { type: 'failed'; kind: 'authentication' | 'truncated' | 'other'; message: string };

async function run(job: ChunkRangeJob): Promise<void> {
  const { chunkSize, headerLength, plaintextLength } = job;
  const sealedSize = chunkSize + 16;
  const plainOffset = (k: number) => k * chunkSize;
  const sealedOffset = (k: number) => headerLength + 56 + k * sealedSize;
  const plainLength = (k: number) => Math.min(chunkSize, plaintextLength - k * chunkSize);
  const source = await open(job.input, 'r');
  const sink = await open(job.output, 'r+');
  try {
    // Two buffers: the next chunk is read while the current one is sealed or opened, as in the sequential path.
    const buffers = [Buffer.allocUnsafe(sealedSize), Buffer.allocUnsafe(sealedSize)] as const;
    const seal = job.mode === 'seal';
    // Each chunk's output and where it goes in the sink.
    let transform: (k: number, input: Buffer) => Buffer[];
    let outputOffset: (k: number) => number;
    if (seal) {
      const enc = ChunkedEncryption.resume(job.dataKey, job.payloadContext, job.prefix, chunkSize);
      transform = (k, input) => enc.sealChunk(k, input);
      outputOffset = sealedOffset;
    } else {
      const dec = ChunkedDecryption.open(job.dataKey, job.payloadContext, job.prefix, chunkSize);
      transform = (k, input) => [dec.openChunk(k, input)];
      outputOffset = plainOffset;
    }
    const inputLength = (k: number) => plainLength(k) + (seal ? 0 : 16);
    const read = (k: number) => {
      const buffer = buffers[k % 2 === 0 ? 0 : 1];
      return inFlight(readFully(source.fd, buffer, inputLength(k), seal ? plainOffset(k) : sealedOffset(k)));
    };
    let pendingRead = read(job.firstChunk);
    let readAhead: Promise<Buffer> | undefined = pendingRead;
    // The previous chunk's write stays in flight while this one is processed (its output is a fresh buffer,
    // freed the moment that write completed). Raw-descriptor I/O (see io.ts): settled before the handles close.
    let pendingWrite: Promise<void> | undefined;
    let unreported = 0;
    const garbage = new GarbageStep(COLLECT_CONTEXTS_EVERY_BYTES);
    try {
      for (let k = job.firstChunk; k < job.endChunk; k++) {
        const input = await pendingRead;
        readAhead = undefined;
        if (k + 1 < job.endChunk) {
          pendingRead = read(k + 1);
          readAhead = pendingRead;
        }
        const output = transform(k, input);
        await pendingWrite;
        pendingWrite = inFlight(
          writeFully(sink.fd, output, outputOffset(k)).then(() => {
            releaseAll(output);
          }),
        );
        garbage.add(input.length);
        unreported += plainLength(k);
        // Progress in batches: a message per chunk would cost more than it tells.
        if ((k - job.firstChunk) % 16 === 15 || k + 1 === job.endChunk) {
          parentPort?.postMessage({ type: 'progress', bytes: unreported } satisfies WorkerMessage);
          unreported = 0;
        }
      }
      await pendingWrite;
    } finally {
      await settled(readAhead);
      await settled(pendingWrite);
    }
  } finally {
    await source.close();
    await sink.close();
  }
}

if (parentPort !== null) {
  const job = workerData as ChunkRangeJob;
  run(job).then(
    () => parentPort?.postMessage({ type: 'done' } satisfies WorkerMessage),
    (err: unknown) =>
      parentPort?.postMessage({
        type: 'failed',
        kind:
          err instanceof DecryptionError
            ? 'authentication'
            : err instanceof TruncatedEnvelopeError
              ? 'truncated'
              : 'other',
        message: err instanceof Error ? err.message : String(err),
      } satisfies WorkerMessage),
  );
}
