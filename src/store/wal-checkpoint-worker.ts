/**
 * Worker thread of `WalSync`: runs PASSIVE checkpoints of one SQLite file through a connection of its own, so the
 * disk flushes of a checkpoint never stall the writer's event loop. PASSIVE copies what it can without waiting for
 * any lock and never blocks readers or the writer. Answers each request with SQLite's result row (or an error).
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const port = parentPort;
if (port === null) throw new Error('wal-checkpoint-worker runs only as a worker thread');
const db = new DatabaseSync((workerData as { file: string }).file);
// A checkpoint's own flushes make the copied pages durable before the WAL may be reset.
db.exec('PRAGMA synchronous = FULL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

port.on('message', () => {
  try {
    port.postMessage({ result: checkpoint.get() });
  } catch (err) {
    port.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
});
