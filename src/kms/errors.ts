/** KMS errors carry a stable `code` and an HTTP status; messages never contain key material or plaintext. */
export class KmsError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, status: number, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
  }
}

export class KeyNotFoundError extends KmsError {
  constructor(name: string, version?: number) {
    super(
      'key_not_found',
      404,
      version === undefined ? `no key named ${name}` : `key ${name} has no version ${version}`,
    );
  }
}

export class KeyExistsError extends KmsError {
  constructor(name: string) {
    super('key_exists', 409, `a key named ${name} already exists`);
  }
}

export class InvalidRequestError extends KmsError {
  constructor(message: string) {
    super('invalid_request', 400, message);
  }
}

/** The key's type does not allow the operation (e.g. signing with an AES key). */
export class WrongKeyTypeError extends KmsError {
  constructor(name: string, type: string, operation: string) {
    super('wrong_key_type', 400, `key ${name} is ${type} and cannot ${operation}`);
  }
}

/** The version exists but is disabled, scheduled for destruction, destroyed, or below the decryption floor. */
export class VersionUnavailableError extends KmsError {
  constructor(name: string, version: number, why: string) {
    super('version_unavailable', 409, `key ${name} version ${version} is ${why}`);
  }
}

/**
 * An import into a key that exists was given key options: it adds a version, and options only apply to a new key
 * (settings change with `updateKey`; exportability is fixed at creation). Refused rather than ignored.
 */
export class ImportOptionsError extends InvalidRequestError {
  readonly options: readonly string[];
  constructor(name: string, options: readonly string[]) {
    super(
      `key ${name} exists: an import into it adds a version and takes no key options (given: ${options.join(', ')}); ` +
        'change the rotation period, floor grace or description with keys update; whether a key is exportable ' +
        'is fixed when it is created',
    );
    this.options = options;
  }
}

export class ForbiddenError extends KmsError {
  constructor(action: string) {
    super('forbidden', 403, `not allowed to ${action}`);
  }
}

export class NotExportableError extends KmsError {
  constructor(name: string) {
    super('not_exportable', 409, `key ${name} was not created exportable`);
  }
}

/** The KMS refuses an operation whose audit event could not be recorded durably (fail closed). */
export class AuditUnavailableError extends KmsError {
  constructor() {
    super(
      'audit_unavailable',
      503,
      'the operation was refused because its audit event could not be recorded',
    );
  }
}

export class KmsSealedError extends KmsError {
  constructor() {
    super('sealed', 503, 'the key store is sealed: unseal it with `warden operator unseal`');
  }
}

/** The single error for every failed decryption, unwrap or rewrap of a ciphertext (no oracle). */
export class KmsDecryptionError extends KmsError {
  constructor() {
    super('decryption_failed', 400, 'decryption failed');
  }
}
