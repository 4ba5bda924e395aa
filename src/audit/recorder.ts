import { createHmac, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/**
 * The one interface every component records audit events through. `record` resolves only once the event is
 * durable; callers that must be audited (KMS, authentication, administration) fail closed when it rejects. The
 * audit-log issue puts the tamper-evident Merkle log behind this same interface.
 */
export type AuditOutcome = 'success' | 'failure' | 'denied';

export interface AuditEvent {
  readonly action: string;
  readonly principal: { readonly id: string; readonly authMethod: string };
  readonly resource: string;
  readonly outcome: AuditOutcome;
  /** Stable error code or denial reason; never secret material. */
  readonly reason?: string;
  readonly keyVersion?: number;
  readonly requestId?: string;
  readonly sourceIp?: string;
  readonly userAgent?: string;
  readonly latencyMs?: number;
  /** Small, non-secret facts. Sensitive values go through `AuditHasher` first. */
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}

export interface AuditRecorder {
  record(event: AuditEvent): Promise<void>;
  close(): Promise<void>;
}

/** Keyed hashes for sensitive values (`hmac-sha256:<hex>`), so a known value can be searched for, never read. */
export class AuditHasher {
  // A KeyObject: HMAC with raw key bytes re-imports the key on every call (~7x the cost of a short hash).
  readonly #key: KeyObject;
  constructor(key: Uint8Array) {
    this.#key = createSecretKey(Buffer.from(key));
  }
  hash(value: string | Uint8Array): string {
    return `hmac-sha256:${createHmac('sha256', this.#key).update(value).digest('hex')}`;
  }
}

/**
 * Appends events as JSON lines with group commit. The file is opened O_APPEND | O_DSYNC, so one `write` both
 * appends a batch and makes it durable: one trip to the thread pool per batch, not two.
 *
 * Batches are pipelined: a batch is written as soon as it holds EAGER_BATCH events (else at the end of the turn
 * that recorded its first event), and up to MAX_IN_FLIGHT writes run at once, so the event loop goes on serving
 * operations while earlier batches are on their way to disk instead of waiting for each sync in turn.
 *
 * Order: a batch never waits for another one's write, so two batches in flight together may land in either
 * order. Their events are of operations that were all still unacknowledged, hence concurrent; an event recorded
 * after another one's `record` resolved is in a batch written after that one was durable, so it always comes
 * later in the file (causal order holds). Each write is a whole number of lines; a write cut short is dealt with
 * below (and a log cut by a crash, in `open`).
 */
export class JsonLinesAuditRecorder implements AuditRecorder {
  readonly #handle: FileHandle;
  #pending: PendingLine[] = [];
  #inFlight = 0;
  #turnFlushScheduled = false;
  readonly #settled = new Set<Promise<void>>();
  #closed = false;
  /** The last write stopped part-way through a line, which the next write must end first. */
  #cutShort = false;
  #timestampMs = Number.NaN;
  #timestamp = '';

  private constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  static async open(path: string): Promise<JsonLinesAuditRecorder> {
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_DSYNC;
    const handle = await open(path, flags, 0o600);
    try {
      // A process killed in the middle of a write leaves a line without its end; the next event appended would
      // be glued to it and unreadable. End the fragment first: it stays a line of its own, which readers reject.
      if (await endsInsideLine(path, handle)) await handle.write('\n');
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new JsonLinesAuditRecorder(handle);
  }

  record(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('audit recorder is closed'));
    const line = `{"time":${JSON.stringify(this.#now())},${JSON.stringify(event).slice(1)}\n`;
    const done = new Promise<void>((resolve, reject) => this.#pending.push({ line, resolve, reject }));
    if (this.#pending.length >= EAGER_BATCH && this.#inFlight < MAX_IN_FLIGHT) this.#write();
    else if (!this.#turnFlushScheduled) {
      // Every event recorded in this turn shares one write (a batch of 100 operations is one sync, not two).
      this.#turnFlushScheduled = true;
      setImmediate(() => {
        this.#turnFlushScheduled = false;
        if (this.#inFlight < MAX_IN_FLIGHT) this.#write();
      });
    }
    return done;
  }

  /** ISO 8601 time of now, formatted once per millisecond (formatting costs more than the rest of a line). */
  #now(): string {
    const ms = Date.now();
    if (ms !== this.#timestampMs) {
      this.#timestampMs = ms;
      this.#timestamp = new Date(ms).toISOString();
    }
    return this.#timestamp;
  }

  #write(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#inFlight++;
    const text = batch.map((p) => p.line).join('');
    const endsFragment = this.#cutShort;
    this.#cutShort = false;
    const bytes = Buffer.from(endsFragment ? `\n${text}` : text);
    const written = this.#handle
      .write(bytes)
      .then(({ bytesWritten }) => {
        if (bytesWritten !== bytes.length) {
          // The disk filled up part-way: the batch's events are refused, and the next batch first ends the
          // fragment left in the file (as `open` does after a crash). A batch already in flight may still land
          // right after the fragment; that takes a partial write followed at once by a successful one.
          this.#cutShort = true;
          throw new Error('audit log write was cut short');
        }
        for (const p of batch) p.resolve();
      })
      .catch((err: unknown) => {
        // A write that failed outright wrote nothing, not even the fragment's end.
        if (endsFragment) this.#cutShort = true;
        for (const p of batch) p.reject(err);
      });
    const settled = written.finally(() => {
      this.#settled.delete(settled);
      this.#inFlight--;
      // Events that queued behind a full pipeline go out now.
      if (this.#inFlight < MAX_IN_FLIGHT) this.#write();
    });
    this.#settled.add(settled);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#write();
    while (this.#settled.size > 0) await Promise.all(this.#settled);
    await this.#handle.close();
  }
}

/** Whether a non-empty regular file's last byte is not a newline. */
async function endsInsideLine(path: string, handle: FileHandle): Promise<boolean> {
  const info = await handle.stat();
  if (!info.isFile() || info.size === 0) return false;
  // The append handle is write-only.
  const reader = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await reader.read(Buffer.alloc(1), 0, 1, info.size - 1);
    return bytesRead === 1 && buffer[0] !== 0x0a;
  } finally {
    await reader.close();
  }
}

interface PendingLine {
  readonly line: string;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** A batch this large is written at once rather than at the end of the turn. */
const EAGER_BATCH = 32;
/** Batch writes in flight at once (each holds one of libuv's four thread-pool threads while it syncs). */
const MAX_IN_FLIGHT = 2;
