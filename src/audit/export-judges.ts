import { Worker } from 'node:worker_threads';

/** Same extension as this module: `.ts` when run from source (type stripping), `.js` from the build. */
const WORKER_URL = new URL(
  `./verify-export-worker${import.meta.url.slice(import.meta.url.lastIndexOf('.'))}`,
  import.meta.url,
);

/** An entry line inspected and judged by a worker; `verdict` undefined for a pruned entry (null event). */
export interface JudgedLine {
  readonly index: number;
  readonly leaf: Uint8Array;
  readonly verdict: number | undefined;
}

/** Lines concatenated, `ends[i]` the end offset of line i (line i starts where line i-1 ends). */
export interface JudgeJob {
  readonly id: number;
  readonly lines: ArrayBuffer;
  readonly ends: readonly number[];
}

/**
 * One record per line: [0] 0 = not recognised, 1 = pruned entry, 2 = entry with an event; [1] the body verdict
 * (export-entry.ts flags); [2, 10) the index, float64 little-endian; [10, 42) the leaf hash.
 */
export interface JudgeReply {
  readonly id: number;
  readonly records: ArrayBuffer;
}
export const JUDGED_RECORD = 42;

/**
 * Worker threads that inspect and judge batches of export lines for the verifier's sequential pass, which
 * keeps everything that depends on line order (indexes, the tree, header and checkpoint). Batches are handed
 * out round-robin; each answer resolves its batch's promise.
 */
export class LineJudges {
  readonly #workers: Worker[] = [];
  readonly #waiting = new Map<
    number,
    { resolve: (r: (JudgedLine | undefined)[]) => void; reject: (e: Error) => void }
  >();
  #next = 0;
  #failure: Error | undefined;

  constructor(threads: number) {
    for (let t = 0; t < threads; t++) {
      const worker = new Worker(WORKER_URL);
      worker.on('message', (reply: JudgeReply) => {
        const waiter = this.#waiting.get(reply.id);
        this.#waiting.delete(reply.id);
        waiter?.resolve(decodeRecords(reply.records));
      });
      const fail = (err: Error): void => {
        this.#failure ??= err;
        for (const w of this.#waiting.values()) w.reject(err);
        this.#waiting.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (code !== 0) fail(new Error(`audit export verify worker exited with code ${code}`));
      });
      this.#workers.push(worker);
    }
  }

  /** Judges the lines (undefined: a line to leave to the caller, e.g. over-long). */
  judge(lines: readonly (Uint8Array | undefined)[]): Promise<(JudgedLine | undefined)[]> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    let total = 0;
    for (const l of lines) total += l?.byteLength ?? 0;
    const joined = new Uint8Array(total);
    const ends: number[] = [];
    let at = 0;
    for (const l of lines) {
      if (l !== undefined) {
        joined.set(l, at);
        at += l.byteLength;
      }
      ends.push(at);
    }
    const id = this.#next++;
    const worker = this.#workers[id % this.#workers.length] as Worker;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      worker.postMessage({ id, lines: joined.buffer, ends } satisfies JudgeJob, [joined.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

function decodeRecords(records: ArrayBuffer): (JudgedLine | undefined)[] {
  const bytes = new Uint8Array(records);
  const view = new DataView(records);
  const out: (JudgedLine | undefined)[] = [];
  for (let at = 0; at < bytes.byteLength; at += JUDGED_RECORD) {
    const kind = bytes[at];
    if (kind === 0) {
      out.push(undefined);
      continue;
    }
    out.push({
      index: view.getFloat64(at + 2, true),
      leaf: bytes.slice(at + 10, at + JUDGED_RECORD),
      verdict: kind === 1 ? undefined : bytes[at + 1],
    });
  }
  return out;
}
