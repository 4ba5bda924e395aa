import { createHmac, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { AuditEvent, AuditRecorder } from '../audit/index.ts';

/**
 * Write-behind auditing for the gateway. A response is released once its event has been handed to the
 * recorder (`record()` called, its promise tracked), not once the event is durable: waiting for the recorder's
 * fsync was most of the gateway's added latency. Fail-closed is kept by a breaker: any rejected record opens
 * it, and while it is open the gateway refuses every request with 503 `audit_unavailable`; a record handed
 * over *after* the failure that then succeeds (the audited refusals are the probes) closes it again. What a crash
 * can lose is bounded by what the recorder has not committed yet; see docs/gateway.md, "Audit".
 */

/** Records handed over and not settled beyond which new requests are refused (a hung recorder). */
export const DEFAULT_MAX_PENDING_AUDIT = 10_000;

export interface AuditTrailOptions {
  /** Default `DEFAULT_MAX_PENDING_AUDIT`. */
  readonly maxPending?: number;
  /** Called on every rejected record (for metrics; never given the event or the error). */
  readonly onFailure?: () => void;
  /** Called when the breaker opens (`true`) or closes (`false`). */
  readonly onBreaker?: (open: boolean) => void;
}

export class AuditTrail {
  readonly #recorder: AuditRecorder;
  readonly #maxPending: number;
  readonly #onFailure: (() => void) | undefined;
  readonly #onBreaker: ((open: boolean) => void) | undefined;
  readonly #pending = new Set<Promise<boolean>>();
  /** Records handed over so far: the sequence number of the latest one. */
  #handed = 0;
  /**
   * Open breaker: the sequence number of the last record handed over when a failure was seen. Only a success of
   * a later record proves the recorder works again; a success of an older one, in flight at the failure, does
   * not.
   */
  #trippedAt: number | undefined;

  constructor(recorder: AuditRecorder, options: AuditTrailOptions = {}) {
    this.#recorder = recorder;
    this.#maxPending = options.maxPending ?? DEFAULT_MAX_PENDING_AUDIT;
    if (!Number.isInteger(this.#maxPending) || this.#maxPending < 1) {
      throw new TypeError('maxPending must be a positive integer');
    }
    this.#onFailure = options.onFailure;
    this.#onBreaker = options.onBreaker;
  }

  /** Whether a new request may be served: the breaker is closed and the recorder is keeping up. */
  accepts(): boolean {
    return this.#trippedAt === undefined && this.#pending.size < this.#maxPending;
  }

  /** Whether the last failure has not yet been followed by a successful record. */
  get open(): boolean {
    return this.#trippedAt !== undefined;
  }

  /** Records handed over and not yet settled by the recorder. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Hands an event to the recorder. The result never rejects: `true` once the recorder committed the event,
   * `false` if it failed (the breaker is then open). Write-behind callers ignore it; refusals await it.
   */
  hand(event: AuditEvent): Promise<boolean> {
    const seq = ++this.#handed;
    let recorded: Promise<void>;
    try {
      recorded = this.#recorder.record(event);
    } catch (err) {
      recorded = Promise.reject(err instanceof Error ? err : new Error('audit record failed'));
    }
    const tracked = recorded.then(
      () => {
        this.#pending.delete(tracked);
        if (this.#trippedAt !== undefined && seq > this.#trippedAt) {
          this.#trippedAt = undefined;
          this.#onBreaker?.(false);
        }
        return true;
      },
      () => {
        this.#pending.delete(tracked);
        const wasOpen = this.#trippedAt !== undefined;
        this.#trippedAt = this.#handed;
        this.#onFailure?.();
        if (!wasOpen) this.#onBreaker?.(true);
        return false;
      },
    );
    this.#pending.add(tracked);
    return tracked;
  }

  /** Resolves once every record handed over so far (and any handed over meanwhile) has settled. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}

/**
 * `hmac-sha256:<hex>` content hashes, the format of the audit face's `AuditHasher`, with the key imported once
 * as a `KeyObject`: `createHmac` with raw key bytes re-imports the key on every call, which cost more than the
 * hash itself at gateway request rates.
 */
export class ContentHasher {
  readonly #key: KeyObject;

  constructor(key: Uint8Array) {
    this.#key = createSecretKey(Buffer.from(key));
  }

  hash(value: string | Uint8Array): string {
    return `hmac-sha256:${createHmac('sha256', this.#key).update(value).digest('hex')}`;
  }

  /**
   * A hash of content that arrives in pieces (a streamed response), equal to `hash()` of their concatenation,
   * without keeping the pieces. Pieces given after `digest()` are ignored.
   */
  start(): IncrementalHash {
    const hmac = createHmac('sha256', this.#key);
    let digest: string | undefined;
    return {
      update(value) {
        if (digest === undefined) hmac.update(value);
      },
      digest() {
        digest ??= `hmac-sha256:${hmac.digest('hex')}`;
        return digest;
      },
    };
  }
}

export interface IncrementalHash {
  update(value: string | Uint8Array): void;
  digest(): string;
}
