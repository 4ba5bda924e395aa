/**
 * Registry errors: a stable snake_case `code` and an HTTP status, so the server maps them without a table.
 * Messages name registry objects (model, version, file path) but never key material, tokens or personal data.
 */
export class RegistryError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  constructor(code: string, httpStatus: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

/** A name, version label, path, label value or request field is malformed. */
export class InvalidInputError extends RegistryError {
  constructor(message: string, options?: ErrorOptions) {
    super('invalid_input', 400, message, options);
  }
}

/** The authorizer refused the operation. */
export class RegistryForbiddenError extends RegistryError {
  constructor(message = 'the operation is not allowed') {
    super('forbidden', 403, message);
  }
}

export class NotFoundError extends RegistryError {
  constructor(what: string) {
    super('not_found', 404, `${what} does not exist`);
  }
}

/** The object exists already (same name and version, or the same content under another version). */
export class ConflictError extends RegistryError {
  constructor(message: string) {
    super('conflict', 409, message);
  }
}

/** An upload or artifact is larger than the configured limit. */
export class TooLargeError extends RegistryError {
  constructor(message: string) {
    super('too_large', 413, message);
  }
}

/** A promotion gate refused: `gate` says which (signature, scan, quarantine, approval). */
export class GateError extends RegistryError {
  readonly gate: 'signature' | 'scan' | 'quarantine' | 'approval';
  constructor(gate: GateError['gate'], message: string) {
    super(`gate_${gate}`, 409, message);
    this.gate = gate;
  }
}

/** The approver is the requester (or otherwise not allowed to be the second person). */
export class SelfApprovalError extends RegistryError {
  constructor() {
    super('self_approval', 403, 'the requester of a promotion cannot approve it');
  }
}

/** A signature bundle does not verify under any trusted signer, or does not match the stored digests. */
export class VerificationError extends RegistryError {
  constructor(message: string, options?: ErrorOptions) {
    super('verification_failed', 422, message, options);
  }
}

/**
 * Stored bytes do not match what was recorded: a blob was altered, truncated, swapped or lost. Always a reason
 * to quarantine; never retried silently.
 */
export class IntegrityError extends RegistryError {
  constructor(message: string, options?: ErrorOptions) {
    super('integrity_failure', 502, message, options);
  }
}

/** The audit event could not be recorded, so the operation's result is withheld (fail closed). */
export class AuditFailedError extends RegistryError {
  constructor(options?: ErrorOptions) {
    super(
      'audit_unavailable',
      503,
      'the audit trail is unavailable; the operation was not completed',
      options,
    );
  }
}
