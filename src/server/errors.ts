import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { InvalidInputError } from '../crypto/index.ts';
import { KmsError } from '../kms/index.ts';
import { SealedError } from '../kms/index.ts';
import { BASE64_PATTERN } from './schemas.ts';

/** The body of every error response: `{ "error": { "code", "message" } }`. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export class UnauthenticatedError extends KmsError {
  constructor() {
    super('unauthenticated', 401, 'a valid bearer token is required');
  }
}

/** The caller is authenticated but its policies do not allow the route's action. */
export class PermissionDeniedError extends Error {
  readonly code = 'forbidden';
  readonly httpStatus = 403;
  constructor(action: string) {
    super(`not allowed to ${action}`);
    this.name = 'PermissionDeniedError';
  }
}

/**
 * Errors of any domain meant for API callers carry a stable `code` and an `httpStatus`; their messages never
 * contain secrets or personal data (each domain's error classes guarantee it), so they are shown as they are.
 */
interface PublicError extends Error {
  readonly code: string;
  readonly httpStatus: number;
}

function isPublicError(err: unknown): err is PublicError {
  if (!(err instanceof Error)) return false;
  const { code, httpStatus } = err as Partial<PublicError>;
  return (
    typeof code === 'string' &&
    typeof httpStatus === 'number' &&
    Number.isInteger(httpStatus) &&
    httpStatus >= 400 &&
    httpStatus <= 599
  );
}

export class RouteNotFoundError extends KmsError {
  constructor() {
    super('not_found', 404, 'no such route');
  }
}

/** Generic messages for framework errors: their own messages can quote request bytes (JSON syntax errors do). */
const FRAMEWORK_ERRORS: Readonly<Record<number, { code: string; message: string }>> = {
  400: { code: 'invalid_request', message: 'the request is malformed' },
  404: { code: 'not_found', message: 'no such route' },
  405: { code: 'method_not_allowed', message: 'method not allowed' },
  406: { code: 'not_acceptable', message: 'not acceptable' },
  408: { code: 'request_timeout', message: 'the request took too long' },
  413: { code: 'payload_too_large', message: 'the request body is too large' },
  // The same message for every route: JSON routes and the raw file uploads of the registry answer it alike.
  415: {
    code: 'unsupported_media_type',
    message:
      "this route does not accept the request body's content-type (application/json; file uploads application/octet-stream)",
  },
  431: { code: 'headers_too_large', message: 'the request headers are too large' },
  503: { code: 'unavailable', message: 'the server is shutting down' },
};

/** Errors raised by the root of trust's lifecycle (software root), matched by shape to avoid depending on it. */
const ROOT_LIFECYCLE_STATUS: Readonly<Record<string, number>> = {
  not_initialized: 409,
  already_initialized: 409,
  key_check_failed: 400,
  share_conflict: 400,
  dev_mode: 409,
};

export interface MappedError {
  readonly status: number;
  readonly body: ErrorBody;
  /** True for server faults, which are logged (without request data). */
  readonly internal: boolean;
}

/**
 * Maps any thrown value to a status and the public error body. KMS errors keep their code, status and message
 * (those messages never carry secrets). Schema violations report which field broke which rule, never the value.
 * Everything else is a generic 500 with no detail.
 */
export function mapError(err: unknown): MappedError {
  const fail = (status: number, code: string, message: string, internal = false): MappedError => ({
    status,
    body: { error: { code, message } },
    internal,
  });
  if (err instanceof KmsError) return fail(err.status, err.code, err.message, err.status >= 500);
  if (err instanceof SealedError) return fail(503, 'sealed', err.message);
  if (err instanceof InvalidInputError) return fail(400, 'invalid_request', err.message);
  if (isPublicError(err)) return fail(err.httpStatus, err.code, err.message, err.httpStatus >= 500);
  if (!(err instanceof Error)) return fail(500, 'internal_error', 'internal error', true);
  const e: Partial<FastifyError> & Error = err;
  if (e.name === 'SoftwareRootError' && typeof e.code === 'string') {
    const status = ROOT_LIFECYCLE_STATUS[e.code];
    if (status !== undefined) return fail(status, e.code, e.message);
  }
  if (Array.isArray(e.validation)) return fail(400, 'invalid_request', validationMessage(e));
  const status = e.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
      return fail(400, 'invalid_request', 'the request body is not valid JSON');
    }
    if (e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      return fail(
        400,
        'invalid_request',
        'the request body is empty but its content-type is application/json',
      );
    }
    const known = FRAMEWORK_ERRORS[status] ?? { code: 'invalid_request', message: 'the request was refused' };
    return fail(status, known.code, known.message);
  }
  return fail(500, 'internal_error', 'internal error', true);
}

/**
 * `body.items.3.plaintext must be base64`: where and which rule, from the schema, never the data. A body that is
 * one of several shapes (single or batch) fails in each; the deepest failure is the one the caller meant.
 */
function validationMessage(err: Partial<FastifyError>): string {
  const where = err.validationContext ?? 'request';
  const candidates = (err.validation ?? []).filter((v) => v.keyword !== 'oneOf' && v.keyword !== 'anyOf');
  const depth = (v: FastifySchemaValidationError) =>
    v.instancePath === '' ? 0 : v.instancePath.split('/').length;
  const best = candidates.reduce<FastifySchemaValidationError | undefined>((chosen, v) => {
    if (chosen === undefined) return v;
    if (depth(v) !== depth(chosen)) return depth(v) > depth(chosen) ? v : chosen;
    return chosen.keyword === 'required' && v.keyword !== 'required' ? v : chosen;
  }, undefined);
  if (best === undefined) return `${where} is invalid`;
  const path = best.instancePath.replace(/^\//, '').replaceAll('/', '.');
  const subject = path === '' ? where : `${where}.${path}`;
  const params = best.params as { additionalProperty?: unknown; pattern?: unknown };
  if (best.keyword === 'additionalProperties') {
    return `${subject} must not have the property ${JSON.stringify(String(params.additionalProperty).slice(0, 64))}`;
  }
  if (best.keyword === 'pattern' && params.pattern === BASE64_PATTERN) return `${subject} must be base64`;
  return `${subject} ${best.message ?? 'is invalid'}`;
}

export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  err: unknown,
): FastifyReply | Promise<FastifyReply> {
  const mapped = mapError(err);
  if (mapped.internal) {
    // Name and stack only: an unexpected error's message could, in principle, quote data it was handed.
    const error = err instanceof Error ? err : new Error(String(err));
    request.log.error(
      { err: { type: error.name, stack: redactedStack(error) } },
      `request failed: ${mapped.body.error.code}`,
    );
  } else {
    request.log.info({ code: mapped.body.error.code, status: mapped.status }, 'request refused');
  }
  if (mapped.status === 401) void reply.header('www-authenticate', 'Bearer');
  const retryAfter = (err as { retryAfterSeconds?: unknown } | null)?.retryAfterSeconds;
  if (typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter >= 0) {
    void reply.header('retry-after', String(Math.ceil(retryAfter)));
  }
  return reply.code(mapped.status).type('application/json; charset=utf-8').send(mapped.body);
}

/** The stack's frames without its first line (which repeats the message). */
function redactedStack(error: Error): string {
  return (error.stack ?? '').split('\n').slice(1).join('\n');
}
