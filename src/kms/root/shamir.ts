import { createHash } from 'node:crypto';
import { constantTimeEqual, InvalidInputError, randomBytes, wipe } from '../../crypto/index.ts';

/**
 * Shamir secret sharing over GF(2^8), byte by byte, as specified in docs/spec/shamir-shares.md.
 *
 * Field arithmetic is written without table lookups or branches on its operands: the usual log/exp tables are
 * indexed by secret bytes here (share values, polynomial coefficients) and would leak them through the cache.
 * JavaScript gives no hard constant-time guarantee, but masks and fixed loop counts leave the JIT nothing
 * data-dependent to specialise on.
 */

/** One share: the evaluation point `x` (public, 1..255) and the polynomials' values there, one byte per byte. */
export interface Share {
  readonly x: number;
  readonly y: Uint8Array;
}

export const MIN_THRESHOLD = 2;
export const MAX_SHARES = 255;
/** The software root shares 32 bytes; the cap keeps a mistaken call from producing unreadable megabyte shares. */
export const MAX_SECRET_BYTES = 1024;

export const SHARE_PREFIX = 'warden-share-v1';
const CHECKSUM_BYTES = 4;
const SHARE_PATTERN = /^warden-share-v1:([1-9][0-9]{0,2}):([A-Za-z0-9_-]+):([0-9a-f]{8})$/;

/** Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (0x11B, the AES field), shift-and-add with masks. */
export function gfMul(a: number, b: number): number {
  let product = 0;
  for (let i = 0; i < 8; i++) {
    // -(bit) is 0 or all ones, so the masked XORs run whether or not the bit is set.
    product ^= -(b & 1) & a;
    const carry = -((a >> 7) & 1);
    a = ((a << 1) ^ (carry & 0x1b)) & 0xff;
    b >>= 1;
  }
  return product;
}

/**
 * Multiplicative inverse as a^254 (a^255 = 1 for a != 0), by a fixed square-and-multiply chain; maps 0 to 0.
 * Only public x-coordinates reach it today, but it stays constant-time so it is safe to reuse.
 */
export function gfInv(a: number): number {
  // 254 = 0b11111110: square, then multiply by a, for each of the seven leading one bits, then a final square.
  let result = 1;
  for (let i = 0; i < 7; i++) result = gfMul(gfMul(result, result), a);
  return gfMul(result, result);
}

function checkSecretLength(length: number): void {
  if (length < 1 || length > MAX_SECRET_BYTES) {
    throw new InvalidInputError(`a shared secret must be 1 to ${MAX_SECRET_BYTES} bytes`);
  }
}

/**
 * Splits `secret` into `shares` shares, any `threshold` of which recover it and fewer of which reveal nothing.
 * Share i has x = i (1..shares) so operators can tell their shares apart by number.
 *
 * Threshold 1 is refused: a 1-of-n "share" is the secret itself dressed up as a share, and the quickstart's
 * need for a key without ceremony is met by the explicit development mode instead.
 *
 * Coefficients are uniform over all of GF(2^8), zero included. Forcing the leading coefficient non-zero would
 * let threshold-1 shares rule out one candidate value per secret byte; with uniform coefficients they are
 * independent of the secret.
 */
export function split(secret: Uint8Array, shares: number, threshold: number): Share[] {
  if (!Number.isSafeInteger(threshold) || !Number.isSafeInteger(shares)) {
    throw new InvalidInputError('share count and threshold must be integers');
  }
  if (threshold < MIN_THRESHOLD || threshold > shares || shares > MAX_SHARES) {
    throw new InvalidInputError(
      `need ${MIN_THRESHOLD} <= threshold <= shares <= ${MAX_SHARES}, got threshold ${threshold} of ${shares}`,
    );
  }
  const length = secret.byteLength;
  checkSecretLength(length);
  // coefficients[(k - 1) * length + i] is the coefficient of x^k in the polynomial for secret byte i.
  const coefficients = randomBytes((threshold - 1) * length);
  try {
    const result: Share[] = [];
    for (let x = 1; x <= shares; x++) {
      const y = new Uint8Array(length);
      for (let i = 0; i < length; i++) {
        // Horner's rule from the highest coefficient down to the secret byte.
        let value = 0;
        for (let k = threshold - 1; k >= 1; k--) {
          value = gfMul(value, x) ^ (coefficients[(k - 1) * length + i] as number);
        }
        y[i] = gfMul(value, x) ^ (secret[i] as number);
      }
      result.push({ x, y });
    }
    return result;
  } finally {
    wipe(coefficients);
  }
}

/**
 * Recombines shares by Lagrange interpolation at x = 0. It cannot know the threshold: given fewer shares than
 * were needed it returns a wrong value without complaint, so callers must check the result (the software root
 * compares a key-check value). It rejects what is structurally wrong: fewer than two shares, an x outside 1..255,
 * two shares with the same x, shares of different lengths.
 */
export function combine(shares: readonly Share[]): Buffer {
  if (shares.length < MIN_THRESHOLD) throw new InvalidInputError('combining needs at least two shares');
  const first = shares[0] as Share;
  const length = first.y.byteLength;
  checkSecretLength(length);
  const seen = new Set<number>();
  for (const share of shares) {
    if (!Number.isInteger(share.x) || share.x < 1 || share.x > MAX_SHARES) {
      throw new InvalidInputError('a share x-coordinate must be an integer from 1 to 255');
    }
    if (seen.has(share.x)) throw new InvalidInputError(`two shares have the same x-coordinate ${share.x}`);
    seen.add(share.x);
    if (share.y.byteLength !== length) throw new InvalidInputError('shares have different lengths');
  }
  const secret = Buffer.alloc(length);
  for (const share of shares) {
    // Lagrange basis polynomial of this share at 0: prod over the others of x_j / (x_i - x_j); minus is XOR.
    let numerator = 1;
    let denominator = 1;
    for (const other of shares) {
      if (other === share) continue;
      numerator = gfMul(numerator, other.x);
      denominator = gfMul(denominator, share.x ^ other.x);
    }
    const basis = gfMul(numerator, gfInv(denominator));
    for (let i = 0; i < length; i++) {
      secret[i] = (secret[i] as number) ^ gfMul(basis, share.y[i] as number);
    }
  }
  return secret;
}

function checksum(body: string): string {
  return createHash('sha256').update(body, 'ascii').digest().subarray(0, CHECKSUM_BYTES).toString('hex');
}

/** `warden-share-v1:<x>:<base64url(y)>:<checksum>`; the checksum covers everything before its colon. */
export function encodeShare(share: Share): string {
  if (!Number.isInteger(share.x) || share.x < 1 || share.x > MAX_SHARES) {
    throw new InvalidInputError('a share x-coordinate must be an integer from 1 to 255');
  }
  checkSecretLength(share.y.byteLength);
  const y = Buffer.from(share.y.buffer, share.y.byteOffset, share.y.byteLength);
  const body = `${SHARE_PREFIX}:${share.x}:${y.toString('base64url')}`;
  return `${body}:${checksum(body)}`;
}

/**
 * Parses an encoded share, ignoring surrounding whitespace (pasted shares often carry a newline). Errors never
 * quote the input: it is secret.
 */
export function decodeShare(text: string): Share {
  const trimmed = text.trim();
  const match = SHARE_PATTERN.exec(trimmed);
  if (match === null) throw new InvalidInputError(`not a ${SHARE_PREFIX} share`);
  const [, xText, payload, sum] = match as unknown as [string, string, string, string];
  const body = `${SHARE_PREFIX}:${xText}:${payload}`;
  // Checked before anything else about the payload, so a typo anywhere reads as a typo.
  if (!constantTimeEqual(Buffer.from(checksum(body), 'ascii'), Buffer.from(sum, 'ascii'))) {
    throw new InvalidInputError('share checksum does not match: the share was mistyped or damaged');
  }
  const x = Number(xText);
  const y = Buffer.from(payload, 'base64url');
  // Buffer's decoder tolerates stray bits in the last character; only the canonical spelling is a share.
  if (
    x > MAX_SHARES ||
    y.byteLength < 1 ||
    y.byteLength > MAX_SECRET_BYTES ||
    y.toString('base64url') !== payload
  ) {
    wipe(y);
    throw new InvalidInputError(`not a ${SHARE_PREFIX} share`);
  }
  return { x, y };
}
