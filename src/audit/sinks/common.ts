/**
 * Shared pieces of the SIEM sinks. Every sink implements `AuditRecorder` (so the lead can chain or fan out
 * recorders) and receives `AuditEvent`s that are already free of secrets. A sink stamps each event once with a
 * stable `id` (UUID) and a `time` (unless the event already carries them, e.g. a log entry with its `index`
 * and `time`), and that record is what every downstream system sees: retries and restarts re-send the same id,
 * so receivers deduplicate on it.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEvent, AuditRecorder } from '../recorder.ts';

/** What a sink delivers: the event plus its delivery identity. */
export type SinkRecord = AuditEvent & {
  readonly id: string;
  readonly time: string;
  readonly index?: number;
};

export function toSinkRecord(event: AuditEvent): SinkRecord {
  const extra = event as AuditEvent & { id?: unknown; time?: unknown };
  return {
    ...event,
    id: typeof extra.id === 'string' && extra.id.length > 0 ? extra.id : randomUUID(),
    time: typeof extra.time === 'string' ? extra.time : new Date().toISOString(),
  };
}

/** An `AuditRecorder` that can also wait until everything accepted so far has reached its destination. */
export interface AuditSink extends AuditRecorder {
  /** Resolves once every event recorded before the call has been delivered (or rejects on close). */
  flush(): Promise<void>;
}

export class SinkClosedError extends Error {
  readonly code = 'sink_closed';
  constructor() {
    super('audit sink is closed');
  }
}

export interface BackoffOptions {
  /** First retry delay (ms), default 250. */
  readonly baseMs?: number;
  /** Longest delay (ms), default 60 000. */
  readonly maxMs?: number;
}

/** "Full jitter" exponential backoff: uniform in [base·2^attempt / 2, base·2^attempt], capped. */
export function backoffDelay(attempt: number, o: BackoffOptions = {}): number {
  const base = o.baseMs ?? 250;
  const max = o.maxMs ?? 60_000;
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** A sleep that `wake()` or `cancel()` ends early. */
export class Sleeper {
  #timer: NodeJS.Timeout | undefined;
  #resolve: (() => void) | undefined;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.#timer = setTimeout(() => {
        this.wake();
      }, ms);
    });
  }

  wake(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const r = this.#resolve;
    this.#resolve = undefined;
    r?.();
  }
}
