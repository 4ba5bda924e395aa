/**
 * Durability off the event loop for a SQLite store opened with `durability: 'sync'`.
 *
 * node:sqlite is synchronous: with synchronous=FULL every COMMIT waits for the disk (an fsync of the WAL, ~1–2 ms
 * here) on the calling thread, and SQLite's automatic checkpoint, which runs inside a COMMIT now and then, waits
 * for two more (tens of milliseconds when it copies megabytes). Under load these stalls hold up every request of
 * the process. In this mode the connection commits with synchronous=NORMAL (COMMIT writes the WAL, no flush) and
 * `WalSync.sync()` flushes the WAL with fdatasync on libuv's thread pool; a writer acknowledges a commit only after
 * a sync that started after the commit has finished, which makes an acknowledged commit exactly as durable as
 * under FULL. Checkpoints run on a worker thread with its own connection (PASSIVE: they never block the writer).
 *
 * The WAL file is opened once and kept: SQLite keeps it (and its inode) while any connection is open — it resets
 * it in place after a checkpoint and deletes it only when the last connection closes, which is after `close()`.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';

/** Least time between two checkpoints the worker is asked for. */
const CHECKPOINT_INTERVAL_MS = 250;
// Same extension as this module: .ts when run from source, .js from dist/.
const WORKER_URL = new URL(
  `./wal-checkpoint-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`,
  import.meta.url,
);

/**
 * Coalesces flush requests: every `request()` resolves after a flush that started after the request was made, and
 * requests made while a flush runs share the next one (group commit of the flushes themselves).
 */
export class FlushCoalescer {
  readonly #flush: () => Promise<void>;
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(flush: () => Promise<void>) {
    this.#flush = flush;
  }

  request(): Promise<void> {
    if (this.#next !== undefined) return this.#next;
    if (this.#running === undefined) return this.#start();
    const after = this.#running.then(
      () => undefined,
      () => undefined,
    );
    this.#next = after.then(() => {
      this.#next = undefined;
      return this.#start();
    });
    return this.#next;
  }

  #start(): Promise<void> {
    const run = this.#flush();
    this.#running = run;
    const clear = (): void => {
      if (this.#running === run) this.#running = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}

export class WalSync {
  readonly #file: string;
  readonly #coalescer = new FlushCoalescer(() => this.#flush());
  #wal: Promise<FileHandle> | undefined;
  #directorySynced = false;
  #worker: Worker | undefined;
  #checkpointing = false;
  #lastCheckpoint = 0;
  #closed = false;

  constructor(file: string) {
    this.#file = file;
  }

  /** Makes every commit made before the call durable. */
  sync(): Promise<void> {
    return this.#coalescer.request();
  }

  async #flush(): Promise<void> {
    if (this.#closed) throw new Error('the store is closed');
    this.#wal ??= open(`${this.#file}-wal`, 'r');
    const wal = await this.#wal;
    await wal.datasync();
    if (!this.#directorySynced) {
      // A new WAL file's directory entry must reach the disk too (SQLite syncs the directory once for a new WAL).
      const directory = await open(dirname(this.#file), 'r');
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
      this.#directorySynced = true;
    }
    this.#maybeCheckpoint();
  }

  #maybeCheckpoint(): void {
    const now = Date.now();
    if (this.#checkpointing || this.#closed || now - this.#lastCheckpoint < CHECKPOINT_INTERVAL_MS) return;
    this.#checkpointing = true;
    this.#lastCheckpoint = now;
    if (this.#worker === undefined) {
      const worker = new Worker(WORKER_URL, { workerData: { file: this.#file } });
      // Checkpoints are housekeeping: they never keep the process alive.
      worker.unref();
      worker.on('message', () => {
        this.#checkpointing = false;
      });
      // A checkpoint that fails is retried at a later sync; until then SQLite's own automatic checkpoint
      // (kept at a high threshold on the writing connection) bounds the WAL. A dead worker is replaced.
      worker.on('error', () => {
        this.#checkpointing = false;
        this.#worker = undefined;
      });
      this.#worker = worker;
    }
    this.#worker.postMessage('checkpoint');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    await Promise.allSettled([worker?.terminate(), this.#wal?.then((handle) => handle.close())]);
  }
}
