/**
 * Typed errors of the crypto layer. Messages never carry key material, plaintext or other secrets.
 *
 * `DecryptionError` is deliberately uninformative: every way an authenticated decryption can fail (wrong key,
 * wrong context, tampered or truncated ciphertext, bad tag) surfaces as the same error with the same message,
 * so a caller cannot be used as an oracle.
 */
export class WardenCryptoError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Input that is malformed before any secret is involved: wrong sizes, bad encodings, out-of-range values. */
export class InvalidInputError extends WardenCryptoError {
  constructor(message: string) {
    super('invalid_input', message);
  }
}

/** A key of the wrong size, type or purpose for the operation. */
export class InvalidKeyError extends WardenCryptoError {
  constructor(message: string) {
    super('invalid_key', message);
  }
}

/** The one error for every failed authenticated decryption or unwrap. */
export class DecryptionError extends WardenCryptoError {
  constructor() {
    super('decryption_failed', 'decryption failed');
  }
}

/** A signature or MAC that does not verify, where the caller asked for an exception rather than a boolean. */
export class VerificationError extends WardenCryptoError {
  constructor(what = 'signature') {
    super('verification_failed', `${what} verification failed`);
  }
}
