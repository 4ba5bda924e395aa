/**
 * JSON-lines file sink with rotation. `record` resolves once the event's line is written and fsynced
 * (group commit: events arriving during an fsync share the next one). When the active file would exceed
 * `maxBytes`, or is older than `maxAgeMs` at the next write, it is fsynced, closed and renamed to
 * `<base>-<UTC timestamp>.jsonl` (`audit-20250102T030405.678Z.jsonl`; on a collision the timestamp moves
 * forward by 1 ms, so names always sort in rotation order), the directory is fsynced, a new active
 * file is created with mode 0600, and rotated files beyond `keep` are deleted oldest first. An event's line is
 * never split across files; a single line larger than `maxBytes` gets a file of its own.
 */
import { open, readdir, rename, stat, unlink, chmod, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import type { AuditEvent } from '../recorder.ts';
import { SinkClosedError, toSinkRecord, type AuditSink } from './common.ts';
import { syncDirectory } from '../../durable/index.ts';

export interface RotatingFileSinkOptions {
  /** Active file, e.g. `/var/log/warden/audit.jsonl`. */
  readonly path: string;
  /** Rotate before a write that would make the file larger than this (bytes). Default: no size limit. */
  readonly maxBytes?: number;
  /** Rotate at the first write after the file has been active this long (ms). Default: no age limit. */
  readonly maxAgeMs?: number;
  /** Rotated files kept (newest first); `'forever'` (default) never deletes. */
  readonly keep?: number | 'forever';
}

interface Pending {
  readonly line: string;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

function stamp(d: Date): string {
  // 2025-01-02T03:04:05.678Z → 20250102T030405.678Z (sortable, no colons)
  return d.toISOString().replace(/[-:]/g, '');
}

export class RotatingFileSink implements AuditSink {
  readonly #o: RotatingFileSinkOptions;
  readonly #dir: string;
  readonly #stem: string;
  readonly #ext: string;
  #handle: FileHandle;
  #size: number;
  #openedAt: number;
  #pending: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  #lastStamp = 0;

  private constructor(o: RotatingFileSinkOptions, handle: FileHandle, size: number, openedAt: number) {
    this.#o = o;
    this.#dir = dirname(o.path);
    this.#ext = extname(o.path) || '.jsonl';
    this.#stem = basename(o.path, extname(o.path));
    this.#handle = handle;
    this.#size = size;
    this.#openedAt = openedAt;
  }

  static async open(o: RotatingFileSinkOptions): Promise<RotatingFileSink> {
    if (o.maxBytes !== undefined && !(Number.isSafeInteger(o.maxBytes) && o.maxBytes > 0)) {
      throw new RangeError('maxBytes must be a positive integer');
    }
    if (o.keep !== undefined && o.keep !== 'forever' && !(Number.isSafeInteger(o.keep) && o.keep >= 0)) {
      throw new RangeError("keep must be a non-negative integer or 'forever'");
    }
    const { handle, size, openedAt } = await RotatingFileSink.#openActive(o.path);
    return new RotatingFileSink(o, handle, size, openedAt);
  }

  static async #openActive(path: string): Promise<{ handle: FileHandle; size: number; openedAt: number }> {
    const handle = await open(path, 'a', 0o600);
    await chmod(path, 0o600); // an existing file created with a wider mode is narrowed
    const st = await handle.stat();
    const openedAt = st.size === 0 ? Date.now() : st.birthtimeMs > 0 ? st.birthtimeMs : st.mtimeMs;
    await syncDirectory(dirname(path));
    return { handle, size: st.size, openedAt };
  }

  record(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new SinkClosedError());
    const line = `${JSON.stringify(toSinkRecord(event))}\n`;
    const done = new Promise<void>((resolve, reject) => this.#pending.push({ line, resolve, reject }));
    this.#flushing ??= this.#flush();
    return done;
  }

  flush(): Promise<void> {
    return this.#flushing ?? Promise.resolve();
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        let chunk = ''; // lines accepted into the active file (counted in #size) but not written yet
        for (const p of batch) {
          const bytes = Buffer.byteLength(p.line);
          if (this.#mustRotate(bytes)) {
            if (chunk.length > 0) await this.#handle.write(chunk);
            chunk = '';
            await this.#rotate();
          }
          chunk += p.line;
          this.#size += bytes;
        }
        if (chunk.length > 0) await this.#handle.write(chunk);
        await this.#handle.datasync();
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.#flushing = undefined;
  }

  /** Whether the active file must be rotated before appending a line of `bytes` bytes. */
  #mustRotate(bytes: number): boolean {
    if (this.#size === 0) return false;
    if (this.#o.maxBytes !== undefined && this.#size + bytes > this.#o.maxBytes) return true;
    return this.#o.maxAgeMs !== undefined && Date.now() - this.#openedAt >= this.#o.maxAgeMs;
  }

  async #rotate(): Promise<void> {
    await this.#handle.datasync();
    await this.#handle.close();
    // Names sort in rotation order: on a collision the timestamp moves forward by a millisecond.
    let ms = Math.max(Date.now(), this.#lastStamp + 1);
    const name = (t: number): string => join(this.#dir, `${this.#stem}-${stamp(new Date(t))}${this.#ext}`);
    while (await exists(name(ms))) ms++;
    this.#lastStamp = ms;
    const target = name(ms);
    await rename(this.#o.path, target);
    const { handle, size, openedAt } = await RotatingFileSink.#openActive(this.#o.path);
    this.#handle = handle;
    this.#size = size;
    this.#openedAt = openedAt;
    await this.#prune();
  }

  /** Rotated files of this sink, oldest first. */
  async rotatedFiles(): Promise<string[]> {
    const prefix = `${this.#stem}-`;
    const names = (await readdir(this.#dir)).filter(
      (n) => n.startsWith(prefix) && n.endsWith(this.#ext) && /^\d{8}T/.test(n.slice(prefix.length)),
    );
    return names.sort().map((n) => join(this.#dir, n));
  }

  async #prune(): Promise<void> {
    const keep = this.#o.keep ?? 'forever';
    if (keep === 'forever') return;
    const files = await this.rotatedFiles();
    const excess = files.slice(0, Math.max(0, files.length - keep));
    for (const f of excess) await unlink(f);
    if (excess.length > 0) await syncDirectory(this.#dir);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
