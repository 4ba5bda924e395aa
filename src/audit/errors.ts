export type AuditLogFailure =
  /** The store failed (or the log is closed): the event is NOT recorded; callers fail closed. */
  | 'unavailable'
  /** The log was closed. */
  | 'closed'
  /** Another writer changed the log under this one (only one writer per log is supported). */
  | 'concurrent_writer'
  /** Stored data contradicts itself or a signed checkpoint: evidence of tampering or loss; keep it. */
  | 'integrity';

/**
 * A failure of the log. Its `code` and `httpStatus` are what an API caller sees (the messages name indexes and
 * sizes, never event contents): `integrity_failure` (500) for evidence of tampering or loss, so that
 * `POST /v1/audit/verify` reports it instead of an internal error, and `audit_unavailable` (503) otherwise.
 */
export class AuditLogError extends Error {
  readonly code: 'integrity_failure' | 'audit_unavailable';
  readonly httpStatus: 500 | 503;
  readonly reason: AuditLogFailure;
  constructor(reason: AuditLogFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AuditLogError';
    this.reason = reason;
    this.code = reason === 'integrity' ? 'integrity_failure' : 'audit_unavailable';
    this.httpStatus = reason === 'integrity' ? 500 : 503;
  }
}
