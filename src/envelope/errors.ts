import { WardenCryptoError } from '../crypto/index.ts';

/**
 * Envelope errors. Only facts visible without any key (structure, lengths, the clear-text header) get their own
 * error; everything that depends on a secret (wrong key, tampered header MAC, commitment, chunk tags) is the one
 * `DecryptionError` from the crypto layer, so a decryptor is never an oracle.
 */

/** The bytes are not a well-formed Warden envelope header (bad magic, version, lengths, encodings). */
export class MalformedEnvelopeError extends WardenCryptoError {
  constructor(message: string) {
    super('malformed_envelope', `malformed envelope: ${message}`);
  }
}

/** The ciphertext is shorter (or longer) than its header and chunk structure require. */
export class TruncatedEnvelopeError extends WardenCryptoError {
  constructor(message = 'the ciphertext is truncated or has trailing data') {
    super('truncated_envelope', message);
  }
}

/** None of the envelope's key slots names a key the caller's key providers hold. */
export class KeyUnavailableError extends WardenCryptoError {
  readonly slots: readonly string[];
  constructor(slots: readonly string[]) {
    super('key_unavailable', `no available key opens this envelope (key slots: ${slots.join(', ')})`);
    this.slots = slots;
  }
}

/** The header's authenticated encryption context differs from the context the caller expected. */
export class ContextMismatchError extends WardenCryptoError {
  readonly keys: readonly string[];
  constructor(keys: readonly string[]) {
    super('context_mismatch', `encryption context mismatch on: ${keys.join(', ')}`);
    this.keys = keys;
  }
}

/** Atomic output replaces only regular files; devices, FIFOs, directories and symlinks are refused. */
export class OutputNotRegularFileError extends WardenCryptoError {
  constructor(output: string) {
    super(
      'output_not_regular_file',
      `refusing to replace ${output}: not a regular file (use -o - to stream to stdout)`,
    );
  }
}
