import { parentPort } from 'node:worker_threads';
import { allocReadBuffers, hashTask, HashTaskError, type HashFailure, type HashTask } from './hash-core.ts';

/** Worker-thread entry of the hash pool: hashes one batch of tasks at a time with its own pair of read buffers. */

export interface WorkerRequest {
  readonly id: number;
  readonly tasks: readonly HashTask[];
}

export type WorkerResponse =
  | { readonly id: number; readonly digests: readonly string[] }
  | { readonly id: number; readonly failure: HashFailure };

const port = parentPort;
if (port === null) throw new Error('hash-worker must run in a worker thread');
const buffers = allocReadBuffers();

async function run(tasks: readonly HashTask[]): Promise<string[]> {
  const digests: string[] = [];
  for (const task of tasks) digests.push(await hashTask(task, buffers));
  return digests;
}

port.on('message', (request: WorkerRequest) => {
  run(request.tasks).then(
    (digests) => {
      port.postMessage({ id: request.id, digests } satisfies WorkerResponse);
    },
    (err: unknown) => {
      const failure: HashFailure =
        err instanceof HashTaskError
          ? { message: err.message, path: err.path }
          : { message: `hashing failed (${String(err)})`, path: request.tasks[0]?.path ?? '' };
      port.postMessage({ id: request.id, failure } satisfies WorkerResponse);
    },
  );
});
