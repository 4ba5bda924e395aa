import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditEvent, AuditRecorder } from '../audit/index.ts';
import type { BatchResult, KmsAction, KmsService } from '../kms/index.ts';
import { declaredPurpose, kmsCedarAction } from '../policy/index.ts';
import type { Principal } from '../kms/index.ts';
import { UnauthenticatedError } from './errors.ts';
import type { OperatorControl } from './operator.ts';

/** What route modules get: the services behind the API and the server's route policy. */
export interface RouteContext {
  readonly kms: KmsService;
  readonly operator: OperatorControl;
  /** Body limit of routes that take batches (the default limit applies to the others). */
  readonly batchBodyLimit: number;
  /** Where operator actions (init, unseal, seal) are recorded, when the server has an audit trail. */
  readonly audit: AuditRecorder | undefined;
}

export type RouteModule = (app: FastifyInstance, context: RouteContext) => void;

/**
 * The route declaration of a KMS operation: its Cedar action (`kms.<action>`), decided per key by the KMS service,
 * which asks the server's policy engine (through `cedarKmsAuthorizer`) for every key a request touches.
 */
export function kmsRoute(action: KmsAction): { action: `kms.${KmsAction}`; authorizedBy: 'kms' } {
  return { action: kmsCedarAction(action), authorizedBy: 'kms' };
}

const principals = new WeakMap<FastifyRequest, Principal>();

/**
 * Binds the caller to the request, with the request's id, source address and user agent for the audit trail, and
 * its declared purpose for the policies every check on the caller evaluates (routes, KMS keys, the registry).
 */
export function setPrincipal(request: FastifyRequest, principal: Principal): void {
  const userAgent = request.headers['user-agent'];
  const purpose = declaredPurpose(request.headers['x-warden-purpose']);
  principals.set(request, {
    ...principal,
    request: {
      id: request.id,
      sourceIp: request.ip,
      ...(userAgent === undefined ? {} : { userAgent }),
      ...(purpose === undefined ? {} : { purpose }),
    },
  });
}

/**
 * An audit event about a request: its principal (the caller, unless given), id, source address, at most 256
 * characters of its user agent and its declared purpose (`details.purpose`), around what the route says happened.
 */
export function requestEvent(
  request: FastifyRequest,
  event: Omit<AuditEvent, 'principal' | 'requestId' | 'sourceIp' | 'userAgent'>,
  principal: { readonly id: string; readonly authMethod: string } = principalOf(request),
): AuditEvent {
  const userAgent = request.headers['user-agent'];
  const purpose = declaredPurpose(request.headers['x-warden-purpose']);
  return {
    ...event,
    ...(purpose === undefined ? {} : { details: { ...event.details, purpose } }),
    principal: { id: principal.id, authMethod: principal.authMethod },
    requestId: request.id,
    sourceIp: request.ip,
    ...(userAgent === undefined ? {} : { userAgent: userAgent.slice(0, 256) }),
  };
}

/** The authenticated caller; the authentication hook guarantees one on every protected route. */
export function principalOf(request: FastifyRequest): Principal {
  const principal = principals.get(request);
  if (principal === undefined) throw new UnauthenticatedError();
  return principal;
}

export function fromBase64(text: string): Buffer {
  return Buffer.from(text, 'base64');
}

export function optionalBytes(text: string | undefined): Buffer | undefined {
  return text === undefined ? undefined : Buffer.from(text, 'base64');
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export type WireBatchItem<T> = T | { error: { code: string; message: string } };

/** Service batch results as wire items: the mapped value, or the item's error. */
export function wireItems<T, W>(
  results: readonly BatchResult<T>[],
  map: (value: T) => W,
): WireBatchItem<W>[] {
  return results.map((r) => (r.ok ? map(r.value) : { error: r.error }));
}

export function versionNumber(text: string | undefined): number | undefined {
  return text === undefined ? undefined : Number(text);
}

/** preValidation hook of routes whose body is optional: a missing body counts as `{}`. */
export function emptyBodyAsObject(request: FastifyRequest, _reply: unknown, done: () => void): void {
  request.body ??= {};
  done();
}
