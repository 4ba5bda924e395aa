/**
 * A bounded, durable FIFO of JSON lines on disk: a directory of segment files `seg-<16 digits>.jsonl` plus a
 * `cursor.json` naming the first undelivered byte. Appends are group-committed (one `fdatasync` per batch of
 * concurrent appends) and resolve only once durable; segments roll at `segmentBytes`; a fully delivered segment
 * is deleted after the cursor has moved past it (cursor first, so a crash can only leave an already delivered
 * segment behind, which `open` removes). On open, a torn last line of the newest segment (a crash mid-append,
 * never acknowledged to its caller) is truncated away. One process per directory.
 *
 * Capacity: `maxBytes` bounds the undelivered bytes. When an append would exceed it, the `onFull` policy applies:
 * `'reject'` (fail closed: the append rejects with `SpoolFullError` at once) or `'block'` (the append waits until
 * deliveries free space, and rejects with `SpoolFullError` after `blockTimeoutMs`).
 */
import { open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirectoryDurably, syncDirectory } from '../../durable/index.ts';

export class SpoolFullError extends Error {
  readonly code = 'spool_full';
  constructor() {
    super('audit spool is full');
  }
}

export interface DiskSpoolOptions {
  readonly dir: string;
  /** Cap on undelivered bytes. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Segment size at which the writer rolls to a new segment. Default 1 MiB. */
  readonly segmentBytes?: number;
  /** Policy when full. Default `'reject'` (fail closed). */
  readonly onFull?: 'reject' | 'block';
  /** With `'block'`: how long an append may wait for space. Default 30 000 ms. */
  readonly blockTimeoutMs?: number;
}

export interface SpoolPosition {
  readonly segment: number;
  readonly offset: number;
}

export interface SpoolBatch {
  readonly lines: readonly string[];
  /** Position just after the batch; pass it to `ack` once delivered. */
  readonly end: SpoolPosition;
}

interface PendingAppend {
  readonly data: string;
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

const SEGMENT = /^seg-(\d{16})\.jsonl$/;
const segName = (n: number): string => `seg-${String(n).padStart(16, '0')}.jsonl`;

type ResolvedSpoolOptions = Required<DiskSpoolOptions>;

export class DiskSpool {
  readonly #o: ResolvedSpoolOptions;
  /** Segment numbers present, oldest first. */
  #segments: number[];
  /** Sizes of the segments, by number. */
  readonly #sizes = new Map<number, number>();
  #cursor: SpoolPosition;
  #handle: FileHandle;
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | undefined;
  #reserved = 0; // bytes of appends accepted but not yet written
  #waiters: (() => void)[] = [];
  #closed = false;

  private constructor(
    o: ResolvedSpoolOptions,
    segments: number[],
    sizes: Map<number, number>,
    cursor: SpoolPosition,
    handle: FileHandle,
  ) {
    this.#o = o;
    this.#segments = segments;
    for (const [k, v] of sizes) this.#sizes.set(k, v);
    this.#cursor = cursor;
    this.#handle = handle;
  }

  static async open(options: DiskSpoolOptions): Promise<DiskSpool> {
    const o: ResolvedSpoolOptions = {
      dir: options.dir,
      maxBytes: options.maxBytes ?? 64 * 1024 * 1024,
      segmentBytes: options.segmentBytes ?? 1024 * 1024,
      onFull: options.onFull ?? 'reject',
      blockTimeoutMs: options.blockTimeoutMs ?? 30_000,
    };
    await makeDirectoryDurably(o.dir);
    let segments = (await readdir(o.dir))
      .map((n) => SEGMENT.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    let cursor: SpoolPosition = { segment: segments[0] ?? 1, offset: 0 };
    try {
      const c = JSON.parse(await readFile(join(o.dir, 'cursor.json'), 'utf8')) as Partial<SpoolPosition>;
      if (Number.isSafeInteger(c.segment) && Number.isSafeInteger(c.offset)) cursor = c as SpoolPosition;
    } catch {
      // no cursor yet: start at the oldest segment
    }
    // Segments before the cursor were delivered (crash between cursor update and unlink).
    for (const s of segments.filter((s) => s < cursor.segment)) await unlink(join(o.dir, segName(s)));
    segments = segments.filter((s) => s >= cursor.segment);
    if (segments[0] !== cursor.segment) cursor = { segment: segments[0] ?? cursor.segment, offset: 0 };
    if (segments.length === 0) segments = [cursor.segment];
    const sizes = new Map<number, number>();
    for (const s of segments) {
      const path = join(o.dir, segName(s));
      const h = await open(path, 'a+', 0o600);
      try {
        const data = await h.readFile();
        let size = data.byteLength;
        if (s === segments.at(-1)) {
          const end = data.lastIndexOf(0x0a) + 1; // torn tail: drop the partial last line
          if (end !== size) {
            await h.truncate(end);
            await h.sync();
            size = end;
          }
        }
        sizes.set(s, size);
      } finally {
        await h.close();
      }
    }
    if (cursor.offset > (sizes.get(cursor.segment) ?? 0)) cursor = { segment: cursor.segment, offset: 0 };
    const last = segments.at(-1) ?? 1;
    const handle = await open(join(o.dir, segName(last)), 'a', 0o600);
    await syncDirectory(o.dir);
    return new DiskSpool(o, segments, sizes, cursor, handle);
  }

  /** Undelivered bytes on disk. */
  get usedBytes(): number {
    let used = -this.#cursor.offset;
    for (const s of this.#segments) used += this.#sizes.get(s) ?? 0;
    return used;
  }

  get isEmpty(): boolean {
    return this.usedBytes === 0 && this.#reserved === 0;
  }

  /** Appends one record (a JSON value without newlines); resolves once it is durable. */
  async append(json: string): Promise<void> {
    if (this.#closed) throw new Error('spool is closed');
    const data = `${json}\n`;
    const bytes = Buffer.byteLength(data);
    if (bytes > this.#o.maxBytes) throw new SpoolFullError();
    if (this.usedBytes + this.#reserved + bytes > this.#o.maxBytes) {
      if (this.#o.onFull === 'reject') throw new SpoolFullError();
      const deadline = Date.now() + this.#o.blockTimeoutMs;
      while (this.usedBytes + this.#reserved + bytes > this.#o.maxBytes) {
        const left = deadline - Date.now();
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by close() during the await
        if (left <= 0 || this.#closed) throw new SpoolFullError();
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          this.#waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    }
    this.#reserved += bytes;
    const done = new Promise<void>((resolve, reject) => this.#pending.push({ data, bytes, resolve, reject }));
    this.#flushing ??= this.#flush();
    return done;
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        const last = this.#segments.at(-1) ?? 1;
        if ((this.#sizes.get(last) ?? 0) >= this.#o.segmentBytes) await this.#roll(last + 1);
        const seg = this.#segments.at(-1) ?? 1;
        await this.#handle.write(batch.map((p) => p.data).join(''));
        await this.#handle.datasync();
        let total = 0;
        for (const p of batch) total += p.bytes;
        this.#sizes.set(seg, (this.#sizes.get(seg) ?? 0) + total);
        this.#reserved -= total;
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) {
          this.#reserved -= p.bytes;
          p.reject(err);
        }
      }
    }
    this.#flushing = undefined;
  }

  async #roll(next: number): Promise<void> {
    await this.#handle.close();
    this.#handle = await open(join(this.#o.dir, segName(next)), 'a', 0o600);
    await syncDirectory(this.#o.dir);
    this.#segments.push(next);
    this.#sizes.set(next, 0);
  }

  /**
   * Reads the oldest undelivered complete lines, up to the limits (at least one line when any is available).
   * Moves past fully delivered segments. Returns an empty batch when nothing is waiting.
   */
  async read(maxLines: number, maxBytes: number): Promise<SpoolBatch> {
    for (;;) {
      const { segment, offset } = this.#cursor;
      const size = this.#sizes.get(segment) ?? 0;
      const isLast = segment === this.#segments.at(-1);
      if (offset >= size) {
        if (isLast) return { lines: [], end: this.#cursor };
        await this.#advanceSegment();
        continue;
      }
      const h = await open(join(this.#o.dir, segName(segment)), 'r');
      let buf: Buffer;
      try {
        buf = Buffer.alloc(Math.min(size - offset, Math.max(maxBytes, 64 * 1024)));
        const { bytesRead } = await h.read(buf, 0, buf.byteLength, offset);
        buf = buf.subarray(0, bytesRead);
      } finally {
        await h.close();
      }
      const lines: string[] = [];
      let pos = 0;
      while (lines.length < maxLines) {
        const nl = buf.indexOf(0x0a, pos);
        if (nl < 0 || (lines.length > 0 && nl + 1 > maxBytes)) break;
        lines.push(buf.toString('utf8', pos, nl));
        pos = nl + 1;
      }
      if (lines.length === 0) {
        // a single line longer than the read window: read it whole
        const whole = await readFile(join(this.#o.dir, segName(segment)));
        const nl = whole.indexOf(0x0a, offset);
        if (nl < 0) return { lines: [], end: this.#cursor };
        return { lines: [whole.toString('utf8', offset, nl)], end: { segment, offset: nl + 1 } };
      }
      return { lines, end: { segment, offset: offset + pos } };
    }
  }

  /** Marks everything before `end` delivered (durably). */
  async ack(end: SpoolPosition): Promise<void> {
    this.#cursor = end;
    await this.#writeCursor();
    const size = this.#sizes.get(end.segment) ?? 0;
    if (end.offset >= size && end.segment !== this.#segments.at(-1)) await this.#advanceSegment();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  async #advanceSegment(): Promise<void> {
    const old = this.#cursor.segment;
    const next = this.#segments.find((s) => s > old);
    if (next === undefined) return;
    this.#cursor = { segment: next, offset: 0 };
    await this.#writeCursor();
    await unlink(join(this.#o.dir, segName(old)));
    this.#segments = this.#segments.filter((s) => s !== old);
    this.#sizes.delete(old);
    await syncDirectory(this.#o.dir);
  }

  async #writeCursor(): Promise<void> {
    const tmp = join(this.#o.dir, 'cursor.json.tmp');
    await writeFile(tmp, JSON.stringify(this.#cursor), { mode: 0o600, flush: true });
    await rename(tmp, join(this.#o.dir, 'cursor.json'));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    for (const w of this.#waiters.splice(0)) w();
    await this.#handle.close();
  }
}
