/**
 * Typed errors of the model-signing domain. Every failure of parsing, signing or verification surfaces as one of
 * these, so callers can branch on the class (or `code`) instead of matching messages.
 */
export class ModelSigningError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The bundle is not a well-formed OMS / Sigstore v0.3 bundle (JSON, schema, base64, media type). */
export class BundleFormatError extends ModelSigningError {
  constructor(message: string, options?: ErrorOptions) {
    super('bundle_format', message, options);
  }
}

/** The signed payload is not a valid OMS in-toto statement (schema, predicate type, manifest consistency). */
export class StatementError extends ModelSigningError {
  constructor(message: string, options?: ErrorOptions) {
    super('statement_invalid', message, options);
  }
}

/** No DSSE signature in the bundle verifies under the trusted key. */
export class SignatureError extends ModelSigningError {
  constructor(message = 'DSSE signature verification failed', options?: ErrorOptions) {
    super('signature_invalid', message, options);
  }
}

/**
 * The bundle's verification material does not correspond to what the caller trusts: a `hint` or `rawBytes` for a
 * different key, or a signing method other than the one the caller verifies with.
 */
export class KeyMismatchError extends ModelSigningError {
  constructor(message: string) {
    super('key_mismatch', message);
  }
}

/** The certificate chain does not validate: untrusted, expired, wrong usage, malformed. */
export class CertificateError extends ModelSigningError {
  constructor(message: string, options?: ErrorOptions) {
    super('certificate_invalid', message, options);
  }
}

/** A well-formed input asks for something this implementation deliberately does not do (e.g. BLAKE3, Sigstore). */
export class UnsupportedError extends ModelSigningError {
  constructor(message: string) {
    super('unsupported', message);
  }
}

/**
 * The model on disk cannot be serialized under the rules in force: a refused symlink, a non-UTF-8 or otherwise
 * non-canonical name, a special file, an empty model, a file that changed while being hashed, an I/O failure.
 */
export class SerializationError extends ModelSigningError {
  readonly path: string | undefined;
  constructor(message: string, path?: string, options?: ErrorOptions) {
    super('serialization', message, options);
    this.path = path;
  }
}

/**
 * The model on disk does not match the signed manifest. Lists are relative POSIX paths, sorted; for shard
 * serialization a file is `changed` when any of its shards differs.
 */
export class ModelMismatchError extends ModelSigningError {
  readonly extra: readonly string[];
  readonly missing: readonly string[];
  readonly changed: readonly string[];
  constructor(mismatch: {
    extra: readonly string[];
    missing: readonly string[];
    changed: readonly string[];
  }) {
    const parts = [
      mismatch.missing.length > 0 ? `missing: ${summarise(mismatch.missing)}` : '',
      mismatch.changed.length > 0 ? `changed: ${summarise(mismatch.changed)}` : '',
      mismatch.extra.length > 0 ? `unsigned: ${summarise(mismatch.extra)}` : '',
    ].filter((p) => p !== '');
    super('model_mismatch', `model does not match its signature (${parts.join('; ')})`);
    this.extra = mismatch.extra;
    this.missing = mismatch.missing;
    this.changed = mismatch.changed;
  }
}

// Messages stay readable for models with thousands of files; the full lists are on the error.
function summarise(paths: readonly string[]): string {
  const shown = paths.slice(0, 5).map((p) => JSON.stringify(p));
  return paths.length > 5 ? `${shown.join(', ')} and ${paths.length - 5} more` : shown.join(', ');
}
