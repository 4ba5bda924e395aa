export type AuditLogFailure =
  /** The store failed (or the log is closed): the event is NOT recorded; callers fail closed. */
  | 'unavailable'
  /** The log was closed. */
  | 'closed'
  /** Another writer changed the log under this one (only one writer per log is supported). */
  | 'concurrent_writer'
  /** Stored data contradicts itself or a signed checkpoint: evidence of tampering or loss; keep it. */
  | 'integrity';

export class AuditLogError extends Error {
  readonly code = 'audit_log';
  readonly reason: AuditLogFailure;
  constructor(reason: AuditLogFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AuditLogError';
    this.reason = reason;
  }
}
