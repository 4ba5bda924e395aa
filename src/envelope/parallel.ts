import { availableParallelism } from 'node:os';
import { open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { DecryptionError } from '../crypto/index.ts';
import type { ChunkRangeJob, WorkerMessage } from './chunk-worker.ts';
import { prepareEncryption } from './envelope.ts';
import { parseHeader } from './header.ts';
import type { ParsedHeader } from './header.ts';
import { openVerified, writeAtomically } from './files.ts';
import type { FileDecryptOptions, FileEncryptOptions } from './files.ts';

/** Same extension as this module: `.ts` when run from source (type stripping), `.js` from the build. */
const WORKER_URL = new URL(
  `./chunk-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`,
  import.meta.url,
);

export function defaultThreads(): number {
  return Math.max(1, Math.min(availableParallelism(), 8));
}

type RangeJob = Omit<ChunkRangeJob, 'firstChunk' | 'endChunk'>;

/** Splits chunks [0, count) into contiguous ranges, one per thread, and runs them; the first failure wins. */
async function runRanges(
  job: RangeJob,
  count: number,
  threads: number,
  onProgress?: (bytes: number) => void,
): Promise<void> {
  const n = Math.max(1, Math.min(threads, count));
  const workers: Worker[] = [];
  let done = 0;
  try {
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const firstChunk = Math.floor((count * i) / n);
        const endChunk = Math.floor((count * (i + 1)) / n);
        const worker = new Worker(WORKER_URL, {
          workerData: { ...job, firstChunk, endChunk } satisfies ChunkRangeJob,
        });
        workers.push(worker);
        return new Promise<void>((resolve, reject) => {
          worker.on('message', (msg: WorkerMessage) => {
            if (msg.type === 'progress') {
              done += msg.bytes;
              onProgress?.(done);
            } else if (msg.type === 'done') resolve();
            else reject(msg.authentication ? new DecryptionError() : new Error(msg.message));
          });
          worker.on('error', reject);
          worker.on('exit', (code) => {
            if (code !== 0) reject(new Error(`chunk worker exited with code ${code}`));
          });
        });
      }),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** `encryptFile` across worker threads: same output format, chunks sealed in parallel ranges. */
export async function encryptFileParallel(
  input: string,
  output: string,
  options: FileEncryptOptions & { threads?: number },
): Promise<ParsedHeader> {
  const size = await fileSize(input);
  const prepared = await prepareEncryption({ ...options, plaintextLength: size });
  const { layout, encryption } = prepared;
  const head = Buffer.concat([prepared.header, encryption.prefix()]);
  try {
    await writeAtomically(output, async (sink, tempPath) => {
      await sink.write(head, 0, head.length, 0);
      await sink.truncate(prepared.header.length + layout.ciphertextLength(size));
      await runRanges(
        {
          mode: 'seal',
          input,
          output: tempPath,
          dataKey: prepared.dataKey,
          payloadContext: prepared.payloadContext,
          prefix: encryption.prefix(),
          chunkSize: layout.chunkSize,
          headerLength: prepared.header.length,
          plaintextLength: size,
        },
        layout.chunkCount(size),
        options.threads ?? defaultThreads(),
        options.onProgress,
      );
    });
  } finally {
    prepared.dataKey.fill(0);
  }
  return parseHeader(prepared.header);
}

/** `decryptFile` across worker threads; the output appears only once every chunk authenticated. */
export async function decryptFileParallel(
  input: string,
  output: string,
  options: FileDecryptOptions & { threads?: number },
): Promise<ParsedHeader> {
  const handle = await open(input, 'r');
  let verified;
  try {
    verified = await openVerified(handle, options);
  } finally {
    await handle.close();
  }
  const { opened, prefix, size } = verified;
  try {
    await writeAtomically(output, async (sink, tempPath) => {
      await sink.truncate(size);
      await runRanges(
        {
          mode: 'open',
          input,
          output: tempPath,
          dataKey: opened.dataKey,
          payloadContext: opened.payloadContext,
          prefix,
          chunkSize: opened.layout.chunkSize,
          headerLength: opened.header.headerLength,
          plaintextLength: size,
        },
        opened.layout.chunkCount(size),
        options.threads ?? defaultThreads(),
        options.onProgress,
      );
    });
  } finally {
    opened.dataKey.fill(0);
  }
  return opened.header;
}

async function fileSize(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}
