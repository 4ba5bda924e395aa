import { createHmac, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
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
 * Appends events as JSON lines with group commit: events arriving while an fsync is in flight are written and
 * synced together by the next one, so durability costs one fsync per batch rather than per event.
 */
export class JsonLinesAuditRecorder implements AuditRecorder {
  readonly #handle: FileHandle;
  #pending: { line: string; resolve: () => void; reject: (err: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;

  private constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  static async open(path: string): Promise<JsonLinesAuditRecorder> {
    return new JsonLinesAuditRecorder(await open(path, 'a', 0o600));
  }

  record(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('audit recorder is closed'));
    const line = `${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`;
    const done = new Promise<void>((resolve, reject) => this.#pending.push({ line, resolve, reject }));
    // The flush starts a turn later, so every event recorded in this turn shares its fsync (a batch of 100
    // operations is one sync, not two).
    this.#flushing ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flush());
    return done;
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        await this.#handle.write(batch.map((p) => p.line).join(''));
        await this.#handle.datasync();
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.#flushing = undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#handle.close();
  }
}
