import { argon2 } from 'node:crypto';
import { constantTimeEqual, InvalidInputError, randomBytes } from '../../crypto/index.ts';

/**
 * Password hashing with argon2id (RFC 9106) through node:crypto's built-in `argon2`, which runs on the libuv
 * thread pool, so hashing never blocks the event loop. Hashes are PHC strings:
 *
 *   $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt, base64 no padding>$<tag, base64 no padding>
 *
 * Parameters default to OWASP's Password Storage Cheat Sheet first argon2id option (m=19456 KiB, t=2, p=1): about
 * 19 MiB and ~200 ms per hash on one core. RFC 9106's second recommended option (64 MiB, t=3, p=4) costs ~3.4x the
 * memory per login and needs four cores per hash to finish in reasonable time; on a shared API server that invites
 * denial of service by login floods, and OWASP rates the two configurations as equivalent defence. A deployment
 * that wants more sets `hashPassword(pw, { memoryKiB, passes })` and `needsRehash` upgrades hashes at the next login.
 *
 * Passwords are NFKC-normalized (NIST SP 800-63B §5.1.1.2) so the same password typed on differently composing
 * keyboards verifies, then UTF-8 encoded. No error message carries the password or the hash.
 */

export interface PasswordHashParams {
  /** Memory cost in KiB (argon2 `m`). */
  readonly memoryKiB: number;
  /** Passes over memory (argon2 `t`). */
  readonly passes: number;
  /** Lanes (argon2 `p`). */
  readonly parallelism: number;
  /** Salt length in bytes. */
  readonly saltBytes: number;
  /** Tag (hash output) length in bytes. */
  readonly tagBytes: number;
}

/** Current parameters. `needsRehash` compares stored hashes with these. */
export const PASSWORD_HASH_PARAMS: PasswordHashParams = Object.freeze({
  memoryKiB: 19_456,
  passes: 2,
  parallelism: 1,
  saltBytes: 16,
  tagBytes: 32,
});

/**
 * Bounds on what `verifyPassword` will compute. A stored hash is data: one with m=4 GiB or t=10^6 (corrupted,
 * injected, or imported from elsewhere) must not be able to take the server down.
 */
export const PASSWORD_HASH_LIMITS = Object.freeze({
  minMemoryKiB: 8,
  maxMemoryKiB: 262_144, // 256 MiB
  minPasses: 1,
  maxPasses: 16,
  minParallelism: 1,
  maxParallelism: 16,
  minSaltBytes: 8,
  maxSaltBytes: 64,
  minTagBytes: 16,
  maxTagBytes: 64,
});

/** Longest accepted password, in UTF-8 bytes after normalization. Longer input is a mistake or an attack. */
export const MAX_PASSWORD_BYTES = 1024;

const ARGON2_VERSION = 19; // 0x13

export interface ParsedPasswordHash extends PasswordHashParams {
  readonly algorithm: 'argon2id';
  readonly version: 19;
  readonly salt: Buffer;
  readonly tag: Buffer;
}

const B64 = /^[A-Za-z0-9+/]+$/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,9})$/;

function malformed(): never {
  throw new InvalidInputError('malformed password hash');
}

/** Strict, canonical base64 without padding, as PHC strings use. */
function decodeB64(s: string): Buffer {
  if (!B64.test(s) || s.length % 4 === 1) malformed();
  const bytes = Buffer.from(s, 'base64');
  // Re-encoding catches non-zero trailing bits: every byte string has exactly one encoding.
  if (bytes.toString('base64').replace(/=+$/, '') !== s) malformed();
  return bytes;
}

function encodeB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

function decimal(s: string | undefined, min: number, max: number): number {
  if (s === undefined || !DECIMAL.test(s)) malformed();
  const n = Number(s);
  if (n < min || n > max) malformed();
  return n;
}

/**
 * Parses an argon2id PHC string strictly: version 19 only, parameters exactly `m=,t=,p=` in that order with
 * canonical decimals, no keyid/data fields, canonical unpadded base64, everything within PASSWORD_HASH_LIMITS.
 * Throws InvalidInputError('malformed password hash') on anything else.
 */
export function parsePasswordHash(phc: string): ParsedPasswordHash {
  if (typeof phc !== 'string' || phc.length > 512) malformed();
  const fields = phc.split('$');
  if (fields.length !== 6 || fields[0] !== '' || fields[1] !== 'argon2id' || fields[2] !== 'v=19') {
    malformed();
  }
  const params = /^m=([0-9]+),t=([0-9]+),p=([0-9]+)$/.exec(fields[3] ?? '');
  if (!params) malformed();
  const L = PASSWORD_HASH_LIMITS;
  const memoryKiB = decimal(params[1], L.minMemoryKiB, L.maxMemoryKiB);
  const passes = decimal(params[2], L.minPasses, L.maxPasses);
  const parallelism = decimal(params[3], L.minParallelism, L.maxParallelism);
  if (memoryKiB < 8 * parallelism) malformed();
  const salt = decodeB64(fields[4] ?? '');
  const tag = decodeB64(fields[5] ?? '');
  if (salt.length < L.minSaltBytes || salt.length > L.maxSaltBytes) malformed();
  if (tag.length < L.minTagBytes || tag.length > L.maxTagBytes) malformed();
  return {
    algorithm: 'argon2id',
    version: ARGON2_VERSION,
    memoryKiB,
    passes,
    parallelism,
    saltBytes: salt.length,
    tagBytes: tag.length,
    salt,
    tag,
  };
}

export function formatPasswordHash(
  params: Pick<PasswordHashParams, 'memoryKiB' | 'passes' | 'parallelism'>,
  salt: Uint8Array,
  tag: Uint8Array,
): string {
  return `$argon2id$v=${ARGON2_VERSION}$m=${params.memoryKiB},t=${params.passes},p=${params.parallelism}$${encodeB64(salt)}$${encodeB64(tag)}`;
}

function passwordBytes(password: string): Buffer {
  if (typeof password !== 'string' || password.length === 0) {
    throw new InvalidInputError('password must be a non-empty string');
  }
  // A lone surrogate would be replaced by U+FFFD on encoding, silently merging distinct inputs.
  if (!password.isWellFormed()) throw new InvalidInputError('password is not well-formed Unicode');
  const bytes = Buffer.from(password.normalize('NFKC'), 'utf8');
  if (bytes.length > MAX_PASSWORD_BYTES) {
    throw new InvalidInputError(`password must be at most ${MAX_PASSWORD_BYTES} bytes`);
  }
  return bytes;
}

function checkParams(p: PasswordHashParams): void {
  const L = PASSWORD_HASH_LIMITS;
  const ok = (n: number, min: number, max: number) => Number.isSafeInteger(n) && n >= min && n <= max;
  if (
    !ok(p.memoryKiB, L.minMemoryKiB, L.maxMemoryKiB) ||
    !ok(p.passes, L.minPasses, L.maxPasses) ||
    !ok(p.parallelism, L.minParallelism, L.maxParallelism) ||
    !ok(p.saltBytes, 16, L.maxSaltBytes) ||
    !ok(p.tagBytes, L.minTagBytes, L.maxTagBytes) ||
    p.memoryKiB < 8 * p.parallelism
  ) {
    throw new InvalidInputError('password hash parameters out of range');
  }
}

/** Raw argon2id, off the main thread. Exported for the RFC 9106 test vector; use hashPassword/verifyPassword. */
export function argon2id(input: {
  message: Uint8Array;
  nonce: Uint8Array;
  memoryKiB: number;
  passes: number;
  parallelism: number;
  tagBytes: number;
  secret?: Uint8Array;
  associatedData?: Uint8Array;
}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    try {
      argon2(
        'argon2id',
        {
          message: input.message,
          nonce: input.nonce,
          memory: input.memoryKiB,
          passes: input.passes,
          parallelism: input.parallelism,
          tagLength: input.tagBytes,
          ...(input.secret ? { secret: input.secret } : {}),
          ...(input.associatedData ? { associatedData: input.associatedData } : {}),
        },
        (err, key) => {
          // node's messages name parameters and ranges only, but wrap them anyway: one error type for callers.
          if (err) reject(new InvalidInputError('argon2id computation failed'));
          else resolve(key);
        },
      );
    } catch {
      reject(new InvalidInputError('argon2id parameters rejected'));
    }
  });
}

/** Hashes a password with a fresh 16-byte salt; returns the PHC string to store. */
export async function hashPassword(
  password: string,
  params: Partial<PasswordHashParams> = {},
): Promise<string> {
  const p: PasswordHashParams = { ...PASSWORD_HASH_PARAMS, ...params };
  checkParams(p);
  const message = passwordBytes(password);
  const salt = randomBytes(p.saltBytes);
  try {
    const tag = await argon2id({ message, nonce: salt, ...p });
    return formatPasswordHash(p, salt, tag);
  } finally {
    message.fill(0);
  }
}

/**
 * Checks a password against a stored PHC string in constant time. Returns false for a wrong password, for an
 * empty, over-long or ill-formed password (no exception: a login form can send anything). Throws
 * InvalidInputError only when the stored hash itself is malformed, which is a server-side data error.
 */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const parsed = parsePasswordHash(phc);
  let message: Buffer;
  try {
    message = passwordBytes(password);
  } catch {
    return false;
  }
  try {
    const tag = await argon2id({
      message,
      nonce: parsed.salt,
      memoryKiB: parsed.memoryKiB,
      passes: parsed.passes,
      parallelism: parsed.parallelism,
      tagBytes: parsed.tagBytes,
    });
    return constantTimeEqual(tag, parsed.tag);
  } finally {
    message.fill(0);
  }
}

/**
 * True when a stored hash is weaker than `current` on any axis (memory, passes, salt or tag length), so the
 * caller should re-hash the password it has just verified. A different lane count alone is not "weaker".
 * Throws InvalidInputError on a malformed hash.
 */
export function needsRehash(phc: string, current: PasswordHashParams = PASSWORD_HASH_PARAMS): boolean {
  const p = parsePasswordHash(phc);
  return (
    p.memoryKiB < current.memoryKiB ||
    p.passes < current.passes ||
    p.saltBytes < current.saltBytes ||
    p.tagBytes < current.tagBytes
  );
}
