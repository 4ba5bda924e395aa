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
import { upstreamMalformed, upstreamTimeout, upstreamUnavailable } from './errors.ts';

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

  async post(call: UpstreamCall): Promise<UpstreamResponse> {
    const attempts = call.idempotent ? this.#retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#pool.request({
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
          ...(call.signal === undefined ? {} : { signal: call.signal }),
        });
      } catch (err) {
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

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/** Short jittered backoff: retries exist to ride over a restarting replica, not to queue behind an outage. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.min(250, 25 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Reads a whole upstream body with a size bound; the bound protects the output filter's memory. With a
 * `content-length` within the bound (the HTTP parser holds the upstream to it), the body is collected by undici
 * in one piece, without the per-chunk promises of async iteration.
 */
export async function readBounded(
  body: UpstreamResponse['body'],
  maxBytes: number,
  contentLength?: string | string[],
): Promise<Buffer> {
  if (typeof contentLength === 'string' && /^[0-9]{1,15}$/.test(contentLength)) {
    if (Number(contentLength) > maxBytes) {
      body.destroy();
      throw upstreamMalformed();
    }
    try {
      return Buffer.from(await body.arrayBuffer());
    } catch (err) {
      if (err instanceof undiciErrors.BodyTimeoutError) throw upstreamTimeout();
      throw upstreamUnavailable();
    }
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const b = chunk as Buffer;
      total += b.length;
      if (total > maxBytes) break;
      chunks.push(b);
    }
  } catch (err) {
    if (err instanceof undiciErrors.BodyTimeoutError) throw upstreamTimeout();
    throw upstreamUnavailable();
  }
  if (total > maxBytes) {
    body.destroy();
    throw upstreamMalformed();
  }
  return Buffer.concat(chunks, total);
}
