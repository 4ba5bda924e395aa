/**
 * Keeps streaming memory flat. node:crypto has no "update into this buffer" API, so every chunk sealed or
 * opened allocates a fresh output buffer (about one chunk, outside V8's heap). Left to the garbage collector,
 * such external memory is only reclaimed in ~64 MB steps, which on its own holds a streaming process near
 * 150 MB RSS.
 *
 * Where this code owns an output buffer from allocation to the end of its write (the file paths and the
 * chunk workers), `releaseBuffer` frees it the moment the write completes, deterministically: the process then
 * holds two input buffers and two or three output buffers whatever the file size. Where a buffer is handed to
 * a caller (the streaming generators yield plaintext and ciphertext that the consumer may keep), ownership is
 * not ours to end, and `GarbageStep` runs a young-generation collection every 4 MiB instead, which recycles the
 * same few buffers.
 *
 * Both need the runtime to expose `gc` (the `warden` launcher starts Node with `--expose-gc`, and tells glibc
 * to keep freed blocks instead of returning them to the kernel); without it they do nothing and V8 decides.
 */
type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' }) => void;

/** For chunk buffers the garbage collector owns (the streaming generators). */
export const COLLECT_BUFFERS_EVERY_BYTES = 4 * 1024 * 1024;

/**
 * For the file paths, whose chunk buffers are released explicitly. Each chunk still leaves a JS cipher object
 * holding a native OpenSSL context (a few KiB of malloc'd memory) that only a collection frees; with so little
 * JS garbage V8 collects every ~200 chunks on its own, and the contexts that pile up in between fragment the
 * malloc heap around the 1 MiB chunk buffers: peak RSS measured 1.5–2 MiB higher (63.8–66.1 MiB against
 * 62.4–63.2 MiB at a collection every 16 MiB, 2 GiB files). A minor collection of a tiny heap costs ~0.1 ms.
 */
export const COLLECT_CONTEXTS_EVERY_BYTES = 16 * 1024 * 1024;

/**
 * For `EnvelopeFile` reads, whose results belong to the caller. A read allocates only its result (see files.ts),
 * but V8 counts each such buffer as external memory and, with next to no JS garbage to trigger a scavenge,
 * frees none of them until that count has grown by 64 MB: then it runs a full mark-compact, whose incremental
 * steps and final pause made the reads around it 5–9 ms instead of ~0.7 ms (31 mark-compacts in 2,000 random
 * 1 MiB reads; p99 5.3–6 ms). A young-generation collection every 16 MiB frees the results the caller dropped
 * while they are still young: no mark-compact at all, p99 1.3–3.2 ms (4 MiB steps measured no better).
 */
export const COLLECT_READS_EVERY_BYTES = 16 * 1024 * 1024;

export class GarbageStep {
  #sinceLast = 0;
  readonly #gc: GcFunction | undefined;
  readonly #every: number;

  constructor(everyBytes: number) {
    const candidate = (globalThis as { gc?: unknown }).gc;
    this.#gc = typeof candidate === 'function' ? (candidate as GcFunction) : undefined;
    this.#every = everyBytes;
  }

  /** Call after each chunk with the bytes it processed. */
  add(bytes: number): void {
    if (this.#gc === undefined) return;
    this.#sinceLast += bytes;
    if (this.#sinceLast >= this.#every) {
      this.#sinceLast = 0;
      this.#gc({ type: 'minor' });
    }
  }
}

/**
 * Frees a buffer's memory now instead of at some later collection, for a buffer the caller allocated (a
 * cipher's output) and has finished with: detaching its ArrayBuffer (`transfer(0)`) drops the backing store,
 * and any view left over sees zero bytes rather than stale data. Only a buffer spanning its whole ArrayBuffer
 * is released; a view into a shared one (Node's small-buffer pool) is left to the collector.
 */
export function releaseBuffer(buf: Buffer): void {
  const backing = buf.buffer;
  if (
    backing instanceof ArrayBuffer &&
    !backing.detached &&
    buf.byteOffset === 0 &&
    buf.byteLength === backing.byteLength
  ) {
    backing.transfer(0);
  }
}

/** `releaseBuffer` for each output of a chunk (ciphertext and tag, or plaintext) once it was written. */
export function releaseAll(buffers: readonly Buffer[]): void {
  for (const buf of buffers) releaseBuffer(buf);
}

/** Environment the launcher sets so freed chunk buffers are reused rather than unmapped and faulted in again. */
export const MALLOC_TUNING: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(256 * 1024 * 1024),
};
