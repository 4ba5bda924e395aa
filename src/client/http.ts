import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { KmsClientError, transportError } from './errors.ts';

export interface WardenHttpOptions {
  /** `https://host:port` (plain `http://` only to a loopback address). */
  readonly address: string;
  /**
   * Bearer token, or a provider called before every request (the identity SDK's refreshing provider). Optional
   * only for the calls that need none: health, discovery, operator status and unseal.
   */
  readonly token?: string | (() => Promise<string>);
  /** PEM certificate(s) to trust for the server, e.g. the development certificate; default: the system CAs. */
  readonly ca?: string | Buffer;
  /** PEM client certificate and key for mutual TLS (e.g. issued by Warden's CA). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Concurrent connections (default 8). */
  readonly connections?: number;
  /** Per-request timeout for headers and for the body, in milliseconds (default 30 s). */
  readonly timeoutMs?: number;
  /**
   * The purpose the calls are made for (e.g. `fraud-scoring`), sent as `X-Warden-Purpose` with every request:
   * Cedar policies see it as `context.purpose`. `[a-z][a-z0-9._-]{0,63}`, as the server accepts it.
   */
  readonly purpose?: string;
}

export interface RequestOptions {
  /** Error statuses returned as a response instead of thrown (e.g. 503 from health). */
  readonly acceptedErrors?: readonly number[];
  /** A form body (`application/x-www-form-urlencoded`) instead of JSON, for OAuth endpoints. */
  readonly form?: boolean;
  /** Send no Authorization header even when a token is configured (public endpoints, client authentication). */
  readonly anonymous?: boolean;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The largest JSON response read into memory. Streamed bodies (`stream`: audit exports, model downloads) are not
 * bounded: an export of a log of a few million entries is larger, and the caller writes it to a file as it comes.
 */
const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;
const TOKEN_PATTERN = /^[\x21-\x7e]{1,4096}$/;
/** The declared purposes the server passes to policies; it ignores any other header value. */
const PURPOSE_PATTERN = /^[a-z][a-z0-9._-]{0,63}$/;

/**
 * The SDK's HTTP transport: a connection pool (undici) to one Warden server, bearer authentication, JSON in and
 * out, and one error type (`KmsClientError` with the server's `code` and HTTP `status`). The token is held
 * privately and never appears in an error or in `util.inspect` output.
 */
export class WardenHttp {
  readonly address: string;
  readonly #pool: Pool;
  readonly #token: string | (() => Promise<string>) | undefined;
  readonly #timeoutMs: number;
  readonly #purpose: string | undefined;

  constructor(options: WardenHttpOptions) {
    let url: URL;
    try {
      url = new URL(options.address);
    } catch {
      throw new KmsClientError('invalid_options', 0, `not a URL: ${options.address}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new KmsClientError('invalid_options', 0, 'the address must be https://host:port');
    }
    if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
      throw new KmsClientError(
        'invalid_options',
        0,
        'refusing to send credentials over plain HTTP to a non-loopback address: use https://',
      );
    }
    if (typeof options.token === 'string') checkToken(options.token);
    // Checked here: a purpose the server would silently drop would make purpose-bound policies deny for no
    // visible reason.
    if (options.purpose !== undefined && !PURPOSE_PATTERN.test(options.purpose)) {
      throw new KmsClientError(
        'invalid_options',
        0,
        'the purpose must be 1-64 characters: a lowercase letter, then lowercase letters, digits, ".", "_" or "-"',
      );
    }
    this.#purpose = options.purpose;
    this.address = url.origin;
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#pool = new Pool(url.origin, {
      connections: options.connections ?? 8,
      allowH2: false,
      connect: {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(options.cert === undefined ? {} : { cert: options.cert }),
        ...(options.key === undefined ? {} : { key: options.key }),
        rejectUnauthorized: true,
        timeout: this.#timeoutMs,
      },
    });
  }

  /** Closes the connection pool after in-flight requests finish. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  /**
   * One request; error responses (other than `acceptedErrors`) throw `KmsClientError`. `T` is the caller's
   * declaration of the response shape (the server's schema), not a runtime check.
   */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
  async request<T = Record<string, unknown>>(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    const headers = await this.#headers(options);
    let payload: string | undefined;
    if (body !== undefined) {
      if (options.form === true) {
        payload = new URLSearchParams(body as Record<string, string>).toString();
        headers['content-type'] = 'application/x-www-form-urlencoded';
      } else {
        payload = JSON.stringify(body);
        headers['content-type'] = 'application/json';
      }
    }
    let response: Dispatcher.ResponseData;
    let text: string;
    try {
      response = await this.#pool.request({
        method,
        path,
        headers,
        body: payload,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      text = await boundedText(response.body);
    } catch (err) {
      throw transportError(err, this.address);
    }
    const status = response.statusCode;
    // 204 No Content (revocations, deletions): no body to parse.
    if (status === 204) return { status, body: {} as T };
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new KmsClientError('invalid_response', status, `HTTP ${status} from ${this.address} is not JSON`);
    }
    if (status >= 400 && !(options.acceptedErrors ?? []).includes(status)) {
      throw errorOf(parsed, status);
    }
    if (parsed === null || typeof parsed !== 'object') {
      throw new KmsClientError('invalid_response', status, `unexpected response from ${this.address}`);
    }
    return { status, body: parsed as T };
  }

  /**
   * Sends a raw body streamed from `body` (uploads), without a body timeout; the JSON response is handled as
   * `request` handles it.
   */
  async upload<T = Record<string, unknown>>(
    method: Dispatcher.HttpMethod,
    path: string,
    body: Readable,
    options: { readonly contentType?: string; readonly length?: number } = {},
  ): Promise<T> {
    const headers = await this.#headers({});
    headers['content-type'] = options.contentType ?? 'application/octet-stream';
    if (options.length !== undefined) headers['content-length'] = String(options.length);
    let response: Dispatcher.ResponseData;
    let text: string;
    try {
      response = await this.#pool.request({ method, path, headers, body, headersTimeout: 0, bodyTimeout: 0 });
      text = await boundedText(response.body);
    } catch (err) {
      throw transportError(err, this.address);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new KmsClientError(
        'invalid_response',
        response.statusCode,
        `HTTP ${response.statusCode} from ${this.address} is not JSON`,
      );
    }
    if (response.statusCode >= 400) throw errorOf(parsed, response.statusCode);
    return parsed as T;
  }

  /** A successful response's body as a stream (exports, downloads); error responses throw as `request`'s do. */
  async stream(method: Dispatcher.HttpMethod, path: string): Promise<Readable> {
    const headers = await this.#headers({ headers: { accept: '*/*' } });
    let response: Dispatcher.ResponseData;
    try {
      response = await this.#pool.request({
        method,
        path,
        headers,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: 0,
      });
    } catch (err) {
      throw transportError(err, this.address);
    }
    if (response.statusCode >= 400) {
      const text = await response.body.text().catch(() => '');
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        // A non-JSON error body: the status alone.
      }
      throw errorOf(parsed, response.statusCode);
    }
    return response.body;
  }

  async #headers(options: RequestOptions): Promise<Record<string, string>> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.#purpose !== undefined) headers['x-warden-purpose'] = this.#purpose;
    if (this.#token !== undefined && options.anonymous !== true) {
      const token = typeof this.#token === 'string' ? this.#token : checkToken(await this.#token());
      headers.authorization = `Bearer ${token}`;
    }
    return headers;
  }

  /** The response body of a successful request. */
  async json<T = Record<string, unknown>>(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
  ): Promise<T> {
    return (await this.request<T>(method, path, body)).body;
  }
}

/** A response body as text, refused (as undici's own size limit would be) past `MAX_RESPONSE_BYTES`. */
async function boundedText(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    const piece = chunk as Buffer;
    length += piece.length;
    if (length > MAX_RESPONSE_BYTES) {
      body.destroy();
      throw Object.assign(new Error('response too large'), { code: 'UND_ERR_RES_EXCEEDED_MAX_SIZE' });
    }
    chunks.push(piece);
  }
  return Buffer.concat(chunks, length).toString('utf8');
}

/** Warden's `{error: {code, message}}`, or OAuth's `{error, error_description}` (RFC 6749 §5.2). */
function errorOf(parsed: unknown, status: number): KmsClientError {
  const body = parsed as { error?: unknown; error_description?: unknown } | null;
  const error = body?.error;
  if (typeof error === 'string') {
    const description = typeof body?.error_description === 'string' ? body.error_description : error;
    return new KmsClientError(error, status, description);
  }
  const detail = error as { code?: unknown; message?: unknown } | undefined;
  const code = typeof detail?.code === 'string' ? detail.code : `http_${status}`;
  const message = typeof detail?.message === 'string' ? detail.message : `HTTP ${status}`;
  return new KmsClientError(code, status, message);
}

function checkToken(token: string): string {
  if (!TOKEN_PATTERN.test(token)) {
    throw new KmsClientError('invalid_options', 0, 'the token must be 1-4096 printable ASCII characters');
  }
  return token;
}

export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}
