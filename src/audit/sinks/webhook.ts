/**
 * HTTPS webhook sink with a durable on-disk spool.
 *
 * `record` appends the event (stamped with a stable `id`, see common.ts) to a `DiskSpool` and resolves once it
 * is fsynced there; a background loop delivers the spool oldest first in batches: `POST <url>` with
 * `Content-Type: application/json`, body `{"events":[record, …]}` and an `Idempotency-Key` header (SHA-256 over
 * the batch's event ids; identical on every retry of that batch). 2xx acknowledges the batch (the spool cursor
 * moves, durably); anything else — network error, timeout, any non-2xx status — is retried, waiting
 * `Retry-After` (seconds or HTTP date, capped by `maxRetryAfterMs`) when the response has one, else exponential
 * backoff with jitter. Nothing is ever dropped by the sink.
 *
 * Guarantees: at-least-once delivery, in order, across SIEM outages and process restarts (a new sink on the same
 * `spoolDir` delivers what an earlier one spooled). A duplicate is possible only when a delivery succeeded but
 * its acknowledgement was not recorded (lost response, crash before the cursor write); receivers deduplicate on
 * the event `id` (and may use `Idempotency-Key` within one sink lifetime; after a restart batches can be formed
 * differently). When the spool is full, `onSpoolFull` decides: `'reject'` (default, fail closed: `record` rejects
 * with `SpoolFullError`) or `'block'` (wait up to `blockTimeoutMs` for space). The tamper-evident log remains the
 * source of truth either way: a SIEM outage longer than the spool can absorb is repaired from an export.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import type { AuditEvent } from '../recorder.ts';
import {
  SinkClosedError,
  Sleeper,
  backoffDelay,
  toSinkRecord,
  type AuditSink,
  type BackoffOptions,
} from './common.ts';
import { DiskSpool, type SpoolBatch } from './spool.ts';

export interface WebhookSinkOptions {
  /** `https://…` endpoint. */
  readonly url: string;
  /** PEM CA certificate(s) trusted for the endpoint (pinning: replaces the system roots). */
  readonly ca?: string | Buffer;
  /** Optional client certificate and key (PEM). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Extra request headers (e.g. `Authorization`). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly spoolDir: string;
  /** Cap on undelivered spooled bytes. Default 64 MiB. */
  readonly maxSpoolBytes?: number;
  readonly segmentBytes?: number;
  /** Default `'reject'`. */
  readonly onSpoolFull?: 'reject' | 'block';
  readonly blockTimeoutMs?: number;
  /** Default 500 events / 1 MiB per request. */
  readonly maxBatchEvents?: number;
  readonly maxBatchBytes?: number;
  readonly backoff?: BackoffOptions;
  /** Longest `Retry-After` honoured (ms). Default 300 000. */
  readonly maxRetryAfterMs?: number;
  /** Per-request timeout. Default 30 000 ms. */
  readonly requestTimeoutMs?: number;
  /** Delivery failures (the sink keeps retrying) and unreadable spool lines. */
  readonly onError?: (err: Error) => void;
}

export class WebhookDeliveryError extends Error {
  readonly code = 'webhook_delivery';
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

/** `Retry-After` as milliseconds from now, or undefined when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export class WebhookSink implements AuditSink {
  readonly #o: WebhookSinkOptions;
  readonly #spool: DiskSpool;
  readonly #agent: Agent;
  readonly #sleeper = new Sleeper();
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #closed = false;
  #flushWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];

  private constructor(o: WebhookSinkOptions, spool: DiskSpool) {
    this.#o = o;
    this.#spool = spool;
    this.#agent = new Agent({
      connect: {
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        ...(o.cert !== undefined ? { cert: o.cert } : {}),
        ...(o.key !== undefined ? { key: o.key } : {}),
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      },
    });
  }

  /** Opens the spool (recovering what an earlier process left) and starts delivering it. */
  static async open(o: WebhookSinkOptions): Promise<WebhookSink> {
    if (!o.url.startsWith('https://')) throw new RangeError('webhook url must be https://');
    const spool = await DiskSpool.open({
      dir: o.spoolDir,
      ...(o.maxSpoolBytes !== undefined ? { maxBytes: o.maxSpoolBytes } : {}),
      ...(o.segmentBytes !== undefined ? { segmentBytes: o.segmentBytes } : {}),
      ...(o.onSpoolFull !== undefined ? { onFull: o.onSpoolFull } : {}),
      ...(o.blockTimeoutMs !== undefined ? { blockTimeoutMs: o.blockTimeoutMs } : {}),
    });
    const sink = new WebhookSink(o, spool);
    sink.#loop = sink.#run();
    return sink;
  }

  /** Resolves once the event is durable in the spool (not yet delivered). */
  async record(event: AuditEvent): Promise<void> {
    if (this.#closed) throw new SinkClosedError();
    await this.#spool.append(JSON.stringify(toSinkRecord(event)));
    this.#sleeper.wake();
  }

  /** Undelivered bytes in the spool. */
  get spooledBytes(): number {
    return this.#spool.usedBytes;
  }

  /** Resolves when everything recorded so far has been delivered (the spool is empty). */
  flush(): Promise<void> {
    if (this.#spool.isEmpty) return Promise.resolve();
    if (this.#closed) return Promise.reject(new SinkClosedError());
    const done = new Promise<void>((resolve, reject) => this.#flushWaiters.push({ resolve, reject }));
    this.#sleeper.wake();
    return done;
  }

  async #run(): Promise<void> {
    const maxEvents = this.#o.maxBatchEvents ?? 500;
    const maxBytes = this.#o.maxBatchBytes ?? 1024 * 1024;
    let attempt = 0;
    let batch: SpoolBatch | undefined; // kept across retries so the Idempotency-Key stays the same
    let key = '';
    let body = '';
    while (!this.#closed) {
      try {
        if (batch === undefined) {
          const b = await this.#spool.read(maxEvents, maxBytes);
          if (b.lines.length === 0) {
            if (this.#spool.isEmpty) for (const w of this.#flushWaiters.splice(0)) w.resolve();
            await this.#sleeper.sleep(60_000);
            continue;
          }
          const ids: string[] = [];
          const good: string[] = [];
          for (const line of b.lines) {
            try {
              ids.push(String((JSON.parse(line) as { id?: unknown }).id));
              good.push(line);
            } catch {
              this.#o.onError?.(new WebhookDeliveryError('unreadable spool line skipped'));
            }
          }
          batch = b;
          key = createHash('sha256').update(ids.join(',')).digest('hex');
          body = `{"events":[${good.join(',')}]}`;
        }
        const outcome = await this.#post(body, key);
        if (outcome.ok) {
          await this.#spool.ack(batch.end);
          batch = undefined;
          attempt = 0;
          continue;
        }
        await this.#sleeper.sleep(outcome.retryAfterMs ?? backoffDelay(attempt, this.#o.backoff));
        attempt++;
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- changed by close() during the await
        if (this.#closed) break;
        this.#o.onError?.(err instanceof Error ? err : new Error(String(err)));
        await this.#sleeper.sleep(backoffDelay(attempt++, this.#o.backoff));
      }
    }
  }

  /** Posts one batch; on failure, the `Retry-After` delay (ms) when the server gave one. */
  async #post(body: string, key: string): Promise<{ ok: boolean; retryAfterMs?: number }> {
    const res = await request(this.#o.url, {
      method: 'POST',
      dispatcher: this.#agent,
      signal: this.#abort.signal,
      headersTimeout: this.#o.requestTimeoutMs ?? 30_000,
      bodyTimeout: this.#o.requestTimeoutMs ?? 30_000,
      headers: {
        ...this.#o.headers,
        'content-type': 'application/json',
        'idempotency-key': key,
      },
      body,
    });
    await res.body.dump();
    if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true };
    this.#o.onError?.(new WebhookDeliveryError(`webhook answered ${res.statusCode}`, res.statusCode));
    const ra = parseRetryAfter(res.headers['retry-after']);
    return ra === undefined
      ? { ok: false }
      : { ok: false, retryAfterMs: Math.min(ra, this.#o.maxRetryAfterMs ?? 300_000) };
  }

  /** Stops delivery (an in-flight request is aborted; its batch stays spooled) and closes the spool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#sleeper.wake();
    await this.#loop;
    await this.#spool.close();
    await this.#agent.close();
    for (const w of this.#flushWaiters.splice(0)) w.reject(new SinkClosedError());
  }
}
