import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { ChunkedDecryption, ChunkedEncryption, DecryptionError } from '../crypto/index.ts';
import { GarbageStep } from './memory.ts';

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
  | { type: 'failed'; authentication: boolean; message: string };

async function run(job: ChunkRangeJob): Promise<void> {
  const { chunkSize, headerLength, plaintextLength } = job;
  const sealedSize = chunkSize + 16;
  const plainOffset = (k: number) => k * chunkSize;
  const sealedOffset = (k: number) => headerLength + 56 + k * sealedSize;
  const plainLength = (k: number) => Math.min(chunkSize, plaintextLength - k * chunkSize);
  const source = await open(job.input, 'r');
  const sink = await open(job.output, 'r+');
  const garbage = new GarbageStep();
  try {
    const buffer = Buffer.allocUnsafe(sealedSize);
    if (job.mode === 'seal') {
      const enc = ChunkedEncryption.resume(job.dataKey, job.payloadContext, job.prefix, chunkSize);
      for (let k = job.firstChunk; k < job.endChunk; k++) {
        const length = plainLength(k);
        await readFully(source, buffer, length, plainOffset(k));
        await sink.writev(enc.sealChunk(k, buffer.subarray(0, length)), sealedOffset(k));
        garbage.add(length);
        parentPort?.postMessage({ type: 'progress', bytes: length } satisfies WorkerMessage);
      }
    } else {
      const dec = ChunkedDecryption.open(job.dataKey, job.payloadContext, job.prefix, chunkSize);
      for (let k = job.firstChunk; k < job.endChunk; k++) {
        const length = plainLength(k) + 16;
        await readFully(source, buffer, length, sealedOffset(k));
        const plain = dec.openChunk(k, buffer.subarray(0, length));
        await sink.write(plain, 0, plain.length, plainOffset(k));
        garbage.add(plain.length);
        parentPort?.postMessage({ type: 'progress', bytes: plain.length } satisfies WorkerMessage);
      }
    }
  } finally {
    await source.close();
    await sink.close();
  }
}

async function readFully(
  handle: Awaited<ReturnType<typeof open>>,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new DecryptionError();
    done += bytesRead;
  }
}

if (parentPort !== null) {
  const job = workerData as ChunkRangeJob;
  run(job).then(
    () => parentPort?.postMessage({ type: 'done' } satisfies WorkerMessage),
    (err: unknown) =>
      parentPort?.postMessage({
        type: 'failed',
        authentication: err instanceof DecryptionError,
        message: err instanceof Error ? err.message : String(err),
      } satisfies WorkerMessage),
  );
}
