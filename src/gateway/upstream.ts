import { createHash } from 'node:crypto';
import { Pool, errors as undiciErrors } from 'undici';
import type { Dispatcher } from 'undici';
import type { UpstreamConfig } from './config.ts';
import {
  DEFAULT_CONNECTIONS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_RETRIES,
  DEFAULT_UPSTREAM_TIMEOUT_MS,
} from './config.ts';
import { GatewayError, upstreamMalformed, upstreamTimeout, upstreamUnavailable } from './errors.ts';

/**
 * Upstream model servers through undici: one connection pool per distinct upstream (origin and TLS identity),
 * keep-alive, header and idle timeouts, and retries only for idempotent calls and only before any response
 * byte was received (connection refused/reset, or 502/503/504 answers).
 */
export interface UpstreamResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Dispatcher.ResponseData['body'];
  /** Attempts made (1 = no retry). */
  readonly attempts: number;
}

/** A whole (non-streamed) upstream answer. The body is kept only for status 200, the one the gateway serves. */
export interface BufferedResponse {
  readonly statusCode: number;
  readonly body: Buffer;
  /** The answer's `Retry-After` header (kept for statuses other than 200). */
  readonly retryAfter?: string | undefined;
  /** Attempts made (1 = no retry). */
  readonly attempts: number;
}

export interface UpstreamCall {
  readonly path: string;
  readonly body: Buffer;
  readonly idempotent: boolean;
  readonly headers?: Record<string, string>;
  readonly signal?: AbortSignal;
}

const RETRYABLE_STATUS = new Set([502, 503, 504]);
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function fingerprint(value: string | Buffer | undefined): string {
  return value === undefined ? '-' : createHash('sha256').update(value).digest('hex').slice(0, 16);
}

/** Why a dispatched call failed, and whether a response had started (then it is never retried). */
class CollectFailure extends Error {
  readonly responded: boolean;

  constructor(cause: unknown, responded: boolean) {
    super('upstream call failed', { cause });
    this.responded = responded;
  }
}

export class Upstream {
  readonly origin: string;
  readonly basePath: string;
  readonly #pool: Pool;
  readonly #timeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #retries: number;

  constructor(config: UpstreamConfig) {
    const url = new URL(config.url);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.#timeoutMs = config.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    this.#idleTimeoutMs = config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#retries = config.retries ?? DEFAULT_RETRIES;
    this.#pool = new Pool(this.origin, {
      connections: config.connections ?? DEFAULT_CONNECTIONS,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#idleTimeoutMs,
      connect: {
        timeout: Math.min(this.#timeoutMs, 10_000),
        ...(url.protocol === 'https:'
          ? {
              minVersion: 'TLSv1.2' as const,
              rejectUnauthorized: true,
              ...(config.ca === undefined ? {} : { ca: config.ca }),
              ...(config.cert === undefined ? {} : { cert: config.cert }),
              ...(config.key === undefined ? {} : { key: config.key }),
              ...(config.servername === undefined ? {} : { servername: config.servername }),
            }
          : {}),
      },
    });
  }

  /** Pools are shared by endpoints with the same origin and TLS identity. */
  static poolKey(config: UpstreamConfig): string {
    const url = new URL(config.url);
    return [
      url.origin,
      fingerprint(config.ca),
      fingerprint(config.cert),
      fingerprint(config.key),
      config.servername ?? '-',
      config.connections ?? DEFAULT_CONNECTIONS,
      config.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS,
      config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      config.retries ?? DEFAULT_RETRIES,
    ].join('|');
  }

  /** The request both call styles send: a JSON POST with the call's headers and this upstream's timeouts. */
  #options(call: UpstreamCall): Dispatcher.DispatchOptions {
    return {
      method: 'POST',
      path: this.basePath + call.path,
      body: call.body,
      headers: {
        'content-type': 'application/json',
        'content-length': String(call.body.length),
        ...call.headers,
      },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#idleTimeoutMs,
    };
  }

  async post(call: UpstreamCall): Promise<UpstreamResponse> {
    const attempts = call.idempotent ? this.#retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#pool.request({
          ...this.#options(call),
          ...(call.signal === undefined ? {} : { signal: call.signal }),
        });
      } catch (err) {
        if (call.signal?.reason instanceof GatewayError) throw call.signal.reason;
        const code = (err as { code?: string }).code ?? '';
        if (attempt < attempts && RETRYABLE_CODES.has(code)) {
          await backoff(attempt);
          continue;
        }
        if (err instanceof undiciErrors.HeadersTimeoutError || code === 'UND_ERR_CONNECT_TIMEOUT') {
          throw upstreamTimeout();
        }
        throw upstreamUnavailable();
      }
      if (attempt < attempts && RETRYABLE_STATUS.has(res.statusCode)) {
        await res.body.dump().catch(() => undefined);
        await backoff(attempt);
        continue;
      }
      return { statusCode: res.statusCode, headers: res.headers, body: res.body, attempts: attempt };
    }
  }

  /**
   * A non-streamed call, its answer collected whole with a size bound (which protects the output filter's
   * memory). It goes through undici's `dispatch` with a handler that only gathers the chunks: no response
   * stream, no per-chunk promise, no body mixin. Retries as `post`: only before a response started.
   */
  async exchange(call: UpstreamCall, maxBytes: number): Promise<BufferedResponse> {
    const attempts = call.idempotent ? this.#retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      let res: { statusCode: number; body: Buffer; retryAfter?: string | undefined };
      try {
        res = await this.#collect(call, maxBytes);
      } catch (err) {
        // Cancelled by the caller with a reason of its own (the client went away): that reason, not a model-server
        // failure.
        if (call.signal?.reason instanceof GatewayError) throw call.signal.reason;
        if (!(err instanceof CollectFailure)) throw err;
        const failure = err;
        const code = (failure.cause as { code?: string } | undefined)?.code ?? '';
        if (!failure.responded && attempt < attempts && RETRYABLE_CODES.has(code)) {
          await backoff(attempt);
          continue;
        }
        if (
          failure.cause instanceof undiciErrors.HeadersTimeoutError ||
          failure.cause instanceof undiciErrors.BodyTimeoutError ||
          code === 'UND_ERR_CONNECT_TIMEOUT'
        ) {
          throw upstreamTimeout();
        }
        throw upstreamUnavailable();
      }
      if (attempt < attempts && RETRYABLE_STATUS.has(res.statusCode)) {
        await backoff(attempt);
        continue;
      }
      return { statusCode: res.statusCode, body: res.body, retryAfter: res.retryAfter, attempts: attempt };
    }
  }

  #collect(
    call: UpstreamCall,
    maxBytes: number,
  ): Promise<{ statusCode: number; body: Buffer; retryAfter?: string | undefined }> {
    return new Promise((resolve, reject) => {
      let statusCode = 0;
      let retryAfter: string | undefined;
      let responded = false;
      let size = 0;
      const chunks: Buffer[] = [];
      const signal = call.signal;
      let onAbort: (() => void) | undefined;
      const done = (): void => {
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
      };
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(controller) {
          if (signal === undefined) return;
          onAbort = () => {
            const reason: unknown = signal.reason;
            controller.abort(reason instanceof Error ? reason : new Error('aborted'));
          };
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, { once: true });
        },
        onResponseStart(controller, status, headers) {
          responded = true;
          statusCode = status;
          const wait = headers['retry-after'];
          if (status !== 200 && typeof wait === 'string') retryAfter = wait;
          const length = headers['content-length'];
          // Refused before reading: the HTTP parser holds the upstream to its announced length.
          if (status === 200 && typeof length === 'string' && Number(length) > maxBytes) {
            controller.abort(upstreamMalformed());
          }
        },
        onResponseData(controller, chunk) {
          // Only a 200 answer is served; any other body is read off the connection and dropped.
          if (statusCode !== 200) return;
          size += chunk.length;
          if (size > maxBytes) {
            controller.abort(upstreamMalformed());
            return;
          }
          chunks.push(chunk);
        },
        onResponseEnd() {
          done();
          resolve({
            statusCode,
            body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size),
            retryAfter,
          });
        },
        onResponseError(_controller, err) {
          done();
          reject(err instanceof GatewayError ? err : new CollectFailure(err, responded));
        },
      };
      this.#pool.dispatch(this.#options(call), handler);
    });
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/**
 * Why a streamed answer's body failed after its headers: a stall longer than the idle timeout is
 * `upstream_timeout`, a connection lost mid-body `upstream_unavailable` (as for buffered answers); anything else
 * (an unparseable or oversized event) `upstream_malformed`.
 */
export function streamFailure(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof undiciErrors.BodyTimeoutError) return upstreamTimeout();
  if (err instanceof undiciErrors.UndiciError) return upstreamUnavailable();
  return upstreamMalformed();
}

/** Short jittered backoff: retries exist to ride over a restarting replica, not to queue behind an outage. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.min(250, 25 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
