import { Worker } from 'node:worker_threads';
import { AuditLogError } from './errors.ts';
import type { BlockSummary } from './verify-blocks.ts';
import type { VerifyBlockJob, VerifyWorkerReply } from './verify-worker.ts';

/** Same extension as this module: `.ts` when run from source (type stripping), `.js` from the build. */
const WORKER_URL = new URL(
  `./verify-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`,
  import.meta.url,
);

/** More threads than this only contend for the database file's pages. */
export const MAX_VERIFY_THREADS = 4;

/**
 * Runs the block jobs on `threads` workers reading `file`, handing each worker its next job as it answers, and
 * yields the summaries in job order. An integrity failure is thrown when its block's turn comes, so the error
 * names the first bad entry whatever order the threads finish in. Workers end with the generator.
 */
export async function* verifyInWorkers(
  file: string,
  jobs: readonly VerifyBlockJob[],
  threads: number,
): AsyncGenerator<BlockSummary> {
  const done = new Map<number, VerifyWorkerReply>();
  let next = 0;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const workers: Worker[] = [];
  const settle = (): void => {
    wake?.();
    wake = undefined;
  };
  const dispatch = (worker: Worker): void => {
    const job = jobs[next++];
    if (job !== undefined) worker.postMessage(job);
  };
  try {
    for (let t = 0; t < threads; t++) {
      const worker = new Worker(WORKER_URL, { workerData: { file } });
      workers.push(worker);
      worker.on('message', (reply: VerifyWorkerReply) => {
        done.set(reply.id, reply);
        dispatch(worker);
        settle();
      });
      worker.on('error', (err) => {
        failure ??= err;
        settle();
      });
      worker.on('exit', (code) => {
        if (code !== 0) failure ??= new Error(`audit verify worker exited with code ${code}`);
        settle();
      });
      dispatch(worker);
    }
    for (let id = 0; id < jobs.length; id++) {
      let reply = done.get(id);
      while (reply === undefined) {
        if (failure !== undefined) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
        reply = done.get(id);
      }
      done.delete(id);
      if ('integrity' in reply) throw new AuditLogError('integrity', reply.integrity);
      if ('failure' in reply) throw new Error(`audit verify worker failed: ${reply.failure}`);
      yield reply.summary;
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
