/**
 * Worker thread of `AuditLog.verify()` on SQLite: checks the blocks it is sent through its own read-only
 * connection to the log's file (a WAL reader never blocks the writer) and answers with their summaries.
 * The parent terminates it when done: a read-only connection needs no orderly close.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import { AuditLogError } from './errors.ts';
import { summarizeBlock } from './verify-blocks.ts';
import type { BlockSummary, EntryRow } from './verify-blocks.ts';

export interface VerifyBlockJob {
  readonly id: number;
  readonly start: number;
  readonly count: number;
  readonly prefixSizes: readonly number[];
}

export type VerifyWorkerReply =
  | { readonly id: number; readonly summary: BlockSummary }
  | { readonly id: number; readonly integrity: string }
  | { readonly id: number; readonly failure: string };

const port = parentPort;
if (port === null) throw new Error('verify-worker runs only as a worker thread');
const db = new DatabaseSync((workerData as { file: string }).file, { readOnly: true });
db.exec('PRAGMA busy_timeout = 5000');
const select = db.prepare(
  'SELECT idx, leaf_hash, body FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx',
);
select.setReturnArrays(true);

port.on('message', (job: VerifyBlockJob) => {
  let reply: VerifyWorkerReply;
  try {
    const rows = select.all(job.start, job.start + job.count) as unknown as EntryRow[];
    reply = { id: job.id, summary: summarizeBlock(job.start, job.count, rows, job.prefixSizes) };
  } catch (err) {
    reply =
      err instanceof AuditLogError
        ? { id: job.id, integrity: err.message }
        : { id: job.id, failure: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
});
