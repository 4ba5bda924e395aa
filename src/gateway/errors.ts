/**
 * Typed gateway errors. Each has a stable snake_case `code` and the HTTP status it maps to; messages never carry
 * request or response content, tokens or personal data, so they can be returned to callers and audited as-is.
 */
export class GatewayError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  /** Seconds, for `Retry-After` on 429 and 503. */
  readonly retryAfterSeconds: number | undefined;
  constructor(code: string, httpStatus: number, message: string, retryAfterSeconds?: number) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.httpStatus = httpStatus;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export const unauthenticated = (): GatewayError =>
  new GatewayError('unauthenticated', 401, 'authentication required');
export const forbidden = (): GatewayError =>
  new GatewayError('forbidden', 403, 'not allowed to invoke this endpoint');
export const endpointNotFound = (): GatewayError =>
  new GatewayError('endpoint_not_found', 404, 'no such endpoint');
export const modelUnavailable = (): GatewayError =>
  new GatewayError('model_unavailable', 503, 'the model version behind this endpoint is not servable');
export const invalidRequest = (message: string): GatewayError =>
  new GatewayError('invalid_request', 400, message);
export const parameterNotAllowed = (name: string): GatewayError =>
  new GatewayError('parameter_not_allowed', 400, `parameter ${name} is not allowed on this endpoint`);
export const promptTooLong = (limit: number): GatewayError =>
  new GatewayError('prompt_too_long', 400, `the prompt exceeds ${limit} characters`);
export const bodyTooLarge = (limit: number): GatewayError =>
  new GatewayError('payload_too_large', 413, `the request body exceeds ${limit} bytes`);
export const rateLimited = (retryAfterSeconds: number): GatewayError =>
  new GatewayError('rate_limited', 429, 'request rate limit reached', retryAfterSeconds);
export const tokenBudgetExhausted = (retryAfterSeconds: number): GatewayError =>
  new GatewayError('token_budget_exhausted', 429, 'token budget exhausted', retryAfterSeconds);
export const exceedsTokenBudget = (): GatewayError =>
  new GatewayError('exceeds_token_budget', 400, 'the request needs more tokens than the whole budget');
export const limiterUnavailable = (): GatewayError =>
  new GatewayError('limiter_unavailable', 503, 'rate limiting is unavailable', 1);
export const upstreamTimeout = (): GatewayError =>
  new GatewayError('upstream_timeout', 504, 'the model server did not answer in time');
export const upstreamUnavailable = (): GatewayError =>
  new GatewayError('upstream_unavailable', 502, 'the model server is unreachable');
/** A stream that ended without `[DONE]`: the answer may be cut short, so it is not passed off as complete. */
export const upstreamStreamCut = (): GatewayError =>
  new GatewayError('upstream_unavailable', 502, 'the model server ended the stream before it finished');
/**
 * A non-200 upstream answer. The model server's own 429 (and 503) keep its `Retry-After`, so a client backs off
 * for as long as the model server asked rather than retrying at once.
 */
export const upstreamError = (status: number, retryAfterSeconds?: number): GatewayError =>
  status >= 400 && status < 500
    ? new GatewayError(
        'upstream_rejected',
        status,
        `the model server refused the request (${status})`,
        status === 429 ? retryAfterSeconds : undefined,
      )
    : new GatewayError(
        'upstream_error',
        502,
        `the model server failed (${status})`,
        status === 503 ? retryAfterSeconds : undefined,
      );
/** The client closed its connection before the answer: the model call is cancelled. */
export const clientClosed = (): GatewayError =>
  new GatewayError('client_closed', 499, 'the client closed the connection before the answer');

/** Longest wait passed on from an upstream `Retry-After`. */
const MAX_RETRY_AFTER_SECONDS = 86_400;

/** An HTTP `Retry-After` value (delta-seconds or an HTTP-date) as whole seconds from `now`; undefined if invalid. */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Math.min(Number(text), MAX_RETRY_AFTER_SECONDS);
  // IMF-fixdate and the obsolete forms Date.parse reads; a bare number of another shape is not a date.
  if (!/^[A-Za-z]{3},? /.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(0, Math.ceil((at - now) / 1000)), MAX_RETRY_AFTER_SECONDS);
}
/** An error event in place of output after a 200 (the server failed mid-stream); its text is never forwarded. */
export const upstreamStreamError = (): GatewayError =>
  new GatewayError('upstream_error', 502, 'the model server reported an error during the stream');
export const upstreamMalformed = (): GatewayError =>
  new GatewayError('upstream_malformed', 502, 'the model server sent a response the gateway cannot filter');
export const outputBlocked = (): GatewayError =>
  new GatewayError('output_blocked', 422, 'the response was withheld by the output policy');
export const auditUnavailable = (): GatewayError =>
  new GatewayError('audit_unavailable', 503, 'the audit trail is unavailable');
export const extractionBlocked = (): GatewayError =>
  new GatewayError('extraction_blocked', 403, 'request pattern refused by model-extraction protection');
export const extractionThrottled = (retryAfterSeconds: number): GatewayError =>
  new GatewayError(
    'extraction_throttled',
    429,
    'request pattern throttled by model-extraction protection',
    retryAfterSeconds,
  );
export const stepUpRequired = (): GatewayError =>
  new GatewayError('step_up_required', 401, 'additional authentication is required for this request pattern');
