import { HOTP, Secret, TOTP } from 'otpauth';
import { constantTimeEqual, InvalidInputError, randomBytes } from '../../crypto/index.ts';

/**
 * TOTP (RFC 6238) on top of `otpauth` for the HOTP truncation (RFC 4226) and the provisioning URI; the window,
 * the constant-time comparison and replay protection are done here.
 *
 * Replay protection: a code is accepted only for a time step strictly greater than the last step accepted for
 * the same principal. `verifyTotp` takes that `lastUsedStep` and returns the newly used step; the caller must
 * persist it atomically with the login (compare-and-set), otherwise two concurrent requests could both use the
 * same code.
 *
 * The shared secret is a credential: store it encrypted (envelope encryption), never log it.
 */

export const TOTP_ALGORITHMS = ['SHA1', 'SHA256', 'SHA512'] as const;
export type TotpAlgorithm = (typeof TOTP_ALGORITHMS)[number];

export interface TotpConfig {
  /** HMAC hash. SHA1 is what nearly every authenticator app implements; it is not a weakness in HMAC-based OTP. */
  readonly algorithm: TotpAlgorithm;
  /** 6, 7 or 8. */
  readonly digits: number;
  /** Time step in seconds; RFC 6238 recommends 30. */
  readonly period: number;
}

export const TOTP_DEFAULTS: TotpConfig = Object.freeze({ algorithm: 'SHA1', digits: 6, period: 30 });

/** RFC 4226 §4 requires at least 128 bits and recommends 160. */
export const TOTP_MIN_SECRET_BYTES = 16;
export const TOTP_MAX_SECRET_BYTES = 128;
/** Default: 20 bytes for SHA1 (the HMAC output size, RFC 4226's recommendation). */
export const TOTP_DEFAULT_SECRET_BYTES = 20;
/** Steps either side of the current one that are accepted (clock skew, typing time). */
export const TOTP_DEFAULT_WINDOW = 1;
const TOTP_MAX_WINDOW = 10;

function checkConfig(c: TotpConfig): void {
  if (!(TOTP_ALGORITHMS as readonly string[]).includes(c.algorithm)) {
    throw new InvalidInputError('TOTP algorithm must be SHA1, SHA256 or SHA512');
  }
  if (!Number.isInteger(c.digits) || c.digits < 6 || c.digits > 8) {
    throw new InvalidInputError('TOTP digits must be 6, 7 or 8');
  }
  if (!Number.isInteger(c.period) || c.period < 15 || c.period > 300) {
    throw new InvalidInputError('TOTP period must be an integer from 15 to 300 seconds');
  }
}

function toSecret(secret: Uint8Array): Secret {
  if (!(secret instanceof Uint8Array)) throw new InvalidInputError('TOTP secret must be bytes');
  if (secret.byteLength < TOTP_MIN_SECRET_BYTES || secret.byteLength > TOTP_MAX_SECRET_BYTES) {
    throw new InvalidInputError(
      `TOTP secret must be ${TOTP_MIN_SECRET_BYTES} to ${TOTP_MAX_SECRET_BYTES} bytes`,
    );
  }
  // Copy: otpauth keeps a reference, and the caller may wipe its buffer.
  return new Secret({ buffer: Uint8Array.from(secret).buffer });
}

/** A fresh random TOTP secret (20 bytes by default). */
export function generateTotpSecret(bytes: number = TOTP_DEFAULT_SECRET_BYTES): Buffer {
  if (!Number.isInteger(bytes) || bytes < TOTP_MIN_SECRET_BYTES || bytes > TOTP_MAX_SECRET_BYTES) {
    throw new InvalidInputError(
      `TOTP secret must be ${TOTP_MIN_SECRET_BYTES} to ${TOTP_MAX_SECRET_BYTES} bytes`,
    );
  }
  return randomBytes(bytes);
}

/** RFC 4648 base32 (no padding), the encoding authenticator apps expect for manual entry. */
export function totpSecretToBase32(secret: Uint8Array): string {
  return toSecret(secret).base32;
}

/** Decodes base32 (case-insensitive, spaces and padding ignored); throws InvalidInputError on bad input. */
export function totpSecretFromBase32(base32: string): Buffer {
  const cleaned = typeof base32 === 'string' ? base32.replace(/[\s=]/g, '').toUpperCase() : '';
  if (!/^[A-Z2-7]+$/.test(cleaned)) throw new InvalidInputError('TOTP secret is not valid base32');
  let bytes: Uint8Array;
  try {
    bytes = Secret.fromBase32(cleaned).bytes;
  } catch {
    throw new InvalidInputError('TOTP secret is not valid base32');
  }
  const out = Buffer.from(bytes);
  toSecret(out); // length check
  return out;
}

/** The time step containing `unixSeconds`. */
export function totpStep(unixSeconds: number, period: number = TOTP_DEFAULTS.period): number {
  return Math.floor(unixSeconds / period);
}

/** The code for a given time (default: now). For tests and enrolment checks, not for verification. */
export function generateTotp(
  secret: Uint8Array,
  options: Partial<TotpConfig> & { readonly unixSeconds?: number } = {},
): string {
  const config: TotpConfig = { ...TOTP_DEFAULTS, ...options };
  checkConfig(config);
  const unixSeconds = options.unixSeconds ?? Date.now() / 1000;
  return codeForStep(toSecret(secret), config, totpStep(unixSeconds, config.period));
}

function codeForStep(secret: Secret, config: TotpConfig, step: number): string {
  return HOTP.generate({ secret, algorithm: config.algorithm, digits: config.digits, counter: step });
}

export interface VerifyTotpInput extends Partial<TotpConfig> {
  readonly secret: Uint8Array;
  /** The code as typed; ASCII spaces are ignored, anything else but digits makes it malformed. */
  readonly code: string;
  /** The last step accepted for this principal and secret, or null if none. Steps <= this are replays. */
  readonly lastUsedStep: number | null;
  /** Current time in seconds since the epoch (default: now). */
  readonly unixSeconds?: number;
  /** Steps accepted either side of the current one (default 1). */
  readonly window?: number;
}

export type VerifyTotpResult =
  | { readonly ok: true; /** Persist as the new lastUsedStep. */ readonly step: number }
  | { readonly ok: false; readonly reason: 'malformed' | 'invalid' | 'replayed' };

/**
 * Verifies a code against the steps current-window .. current+window, in constant time per candidate. Never
 * throws for a bad code (only for a bad secret/config/window, which are caller bugs). When the code matches
 * only steps that are <= lastUsedStep the result is `replayed`; show the user the same message as `invalid`.
 */
export function verifyTotp(input: VerifyTotpInput): VerifyTotpResult {
  const config: TotpConfig = {
    algorithm: input.algorithm ?? TOTP_DEFAULTS.algorithm,
    digits: input.digits ?? TOTP_DEFAULTS.digits,
    period: input.period ?? TOTP_DEFAULTS.period,
  };
  checkConfig(config);
  const window = input.window ?? TOTP_DEFAULT_WINDOW;
  if (!Number.isInteger(window) || window < 0 || window > TOTP_MAX_WINDOW) {
    throw new InvalidInputError(`TOTP window must be an integer from 0 to ${TOTP_MAX_WINDOW}`);
  }
  const last = input.lastUsedStep;
  if (last !== null && !Number.isSafeInteger(last)) {
    throw new InvalidInputError('lastUsedStep must be an integer or null');
  }
  const secret = toSecret(input.secret);
  const code = typeof input.code === 'string' ? input.code.replace(/ /g, '') : '';
  if (code.length !== config.digits || !/^[0-9]+$/.test(code)) return { ok: false, reason: 'malformed' };

  const presented = Buffer.from(code, 'ascii');
  const current = totpStep(input.unixSeconds ?? Date.now() / 1000, config.period);
  let matched: number | null = null;
  let replayed = false;
  // Every candidate is computed and compared, whatever matched earlier.
  for (let step = current - window; step <= current + window; step++) {
    if (step < 0) continue;
    const expected = Buffer.from(codeForStep(secret, config, step), 'ascii');
    if (constantTimeEqual(expected, presented)) {
      if (last !== null && step <= last) replayed = true;
      else matched ??= step;
    }
  }
  if (matched !== null) return { ok: true, step: matched };
  return { ok: false, reason: replayed ? 'replayed' : 'invalid' };
}

export interface TotpProvisioningInput extends Partial<TotpConfig> {
  readonly secret: Uint8Array;
  /** Shown by the app as the service name, e.g. "Warden". No colon. */
  readonly issuer: string;
  /** The user's account name, e.g. an email address. No colon. */
  readonly accountName: string;
}

/**
 * The `otpauth://totp/...` URI for a QR code (Key Uri Format). It contains the secret: render it once at
 * enrolment, never log or store it.
 */
export function totpProvisioningUri(input: TotpProvisioningInput): string {
  const config: TotpConfig = {
    algorithm: input.algorithm ?? TOTP_DEFAULTS.algorithm,
    digits: input.digits ?? TOTP_DEFAULTS.digits,
    period: input.period ?? TOTP_DEFAULTS.period,
  };
  checkConfig(config);
  for (const [name, value] of [
    ['issuer', input.issuer],
    ['accountName', input.accountName],
  ] as const) {
    if (typeof value !== 'string' || value.length === 0 || value.length > 256 || value.includes(':')) {
      throw new InvalidInputError(`${name} must be 1 to 256 characters without ':'`);
    }
  }
  return new TOTP({
    issuer: input.issuer,
    label: input.accountName,
    issuerInLabel: true,
    secret: toSecret(input.secret),
    algorithm: config.algorithm,
    digits: config.digits,
    period: config.period,
  }).toString();
}
