import { availableParallelism } from 'node:os';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { DecryptionError } from '../crypto/index.ts';
import type { ChunkRangeJob, WorkerMessage } from './chunk-worker.ts';
import { prepareEncryption } from './envelope.ts';
import { TruncatedEnvelopeError } from './errors.ts';
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
            else if (msg.kind === 'authentication') reject(new DecryptionError());
            else if (msg.kind === 'truncated') reject(new TruncatedEnvelopeError());
            else reject(new Error(msg.message));
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

type ParallelOptions = { readonly threads?: number };

/**
 * Sets the sink's final size up front so every worker writes at its own offsets. A sink that is not a regular
 * file (a device such as /dev/null, used by the benchmarks) cannot be sized and does not need to be.
 */
async function sizeSink(sink: FileHandle, size: number): Promise<void> {
  if ((await sink.stat()).isFile()) await sink.truncate(size);
}

/**
 * Encrypts `input` into an open sink across worker threads; workers reopen the sink by `sinkPath`. Same output
 * format as the sequential path: the header and prefix are written here, the chunks in parallel ranges.
 */
export async function encryptFileParallelTo(
  input: string,
  sink: FileHandle,
  sinkPath: string,
  options: FileEncryptOptions & ParallelOptions,
): Promise<ParsedHeader> {
  const size = await fileSize(input);
  const prepared = await prepareEncryption({ ...options, plaintextLength: size });
  const { layout, encryption } = prepared;
  const head = Buffer.concat([prepared.header, encryption.prefix()]);
  try {
    await sink.write(head, 0, head.length, 0);
    await sizeSink(sink, prepared.header.length + layout.ciphertextLength(size));
    await runRanges(
      {
        mode: 'seal',
        input,
        output: sinkPath,
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
  } finally {
    prepared.dataKey.fill(0);
  }
  return parseHeader(prepared.header);
}

/** `encryptFile` across worker threads; `output` appears only once complete. */
export function encryptFileParallel(
  input: string,
  output: string,
  options: FileEncryptOptions & ParallelOptions,
): Promise<ParsedHeader> {
  return writeAtomically(output, (sink, tempPath) => encryptFileParallelTo(input, sink, tempPath, options));
}

/** Decrypts `input` into an open sink across worker threads, after verifying header, context and commitment. */
export async function decryptFileParallelTo(
  input: string,
  sink: FileHandle,
  sinkPath: string,
  options: FileDecryptOptions & ParallelOptions,
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
    await sizeSink(sink, size);
    await runRanges(
      {
        mode: 'open',
        input,
        output: sinkPath,
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
  } finally {
    opened.dataKey.fill(0);
  }
  return opened.header;
}

/** `decryptFile` across worker threads; the output appears only once every chunk authenticated. */
export function decryptFileParallel(
  input: string,
  output: string,
  options: FileDecryptOptions & ParallelOptions,
): Promise<ParsedHeader> {
  return writeAtomically(output, (sink, tempPath) => decryptFileParallelTo(input, sink, tempPath, options));
}

async function fileSize(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}
