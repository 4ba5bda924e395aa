import { constantTimeEqual, InvalidInputError, mac, type MacKey, randomBytes } from '../../crypto/index.ts';

/**
 * Single-use recovery codes. Each code is 12 characters of Crockford base32 (0-9 A-Z without I, L, O, U), i.e.
 * 60 random bits, shown grouped as `XXXX-XXXX-XXXX`. Input is forgiving in the Crockford way: case-insensitive,
 * hyphens and spaces ignored, O read as 0 and I/L as 1, so a code copied from paper still works.
 *
 * Only keyed hashes are stored: HMAC-SHA256 under a server MacKey, with a domain-separation label, base64url.
 * A database dump without the key does not let anyone test guesses offline (60 bits would otherwise be
 * brute-forceable against a fast unkeyed hash). Verification compares against every stored hash in constant
 * time and returns the remaining hashes: the caller persists them (atomically, compare-and-set) so the code is
 * consumed.
 */

export const RECOVERY_CODE_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const RECOVERY_CODE_LENGTH = 12;
export const RECOVERY_CODE_GROUP = 4;
export const RECOVERY_CODE_DEFAULT_COUNT = 10;
const MAX_COUNT = 100;
const LABEL = Buffer.from('warden/identity/recovery-code/v1\0', 'ascii');

export interface RecoveryCodeSet {
  /** Display form, shown to the user once. */
  readonly codes: readonly string[];
  /** What to store, in the same order. */
  readonly hashes: readonly string[];
}

/** `count` fresh codes (default 10) and their keyed hashes. */
export function generateRecoveryCodes(
  key: MacKey,
  count: number = RECOVERY_CODE_DEFAULT_COUNT,
): RecoveryCodeSet {
  if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT) {
    throw new InvalidInputError(`recovery code count must be from 1 to ${MAX_COUNT}`);
  }
  const codes: string[] = [];
  const hashes: string[] = [];
  const seen = new Set<string>();
  while (codes.length < count) {
    const bytes = randomBytes(RECOVERY_CODE_LENGTH);
    let raw = '';
    // 32 symbols: the low 5 bits of a uniform byte are uniform.
    for (const b of bytes) raw += RECOVERY_CODE_ALPHABET[b & 31] ?? '';
    bytes.fill(0);
    if (seen.has(raw)) continue;
    seen.add(raw);
    codes.push(formatGroups(raw));
    hashes.push(hashCode(key, raw));
  }
  return { codes, hashes };
}

function formatGroups(raw: string): string {
  const groups: string[] = [];
  for (let i = 0; i < raw.length; i += RECOVERY_CODE_GROUP)
    groups.push(raw.slice(i, i + RECOVERY_CODE_GROUP));
  return groups.join('-');
}

function hashCode(key: MacKey, normalized: string): string {
  return mac(key, Buffer.concat([LABEL, Buffer.from(normalized, 'ascii')])).toString('base64url');
}

/** Canonical form of a typed code, or null if it cannot be one. */
export function normalizeRecoveryCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > 64) return null;
  const s = input.replace(/[\s-]/g, '').toUpperCase().replace(/O/g, '0').replace(/[IL]/g, '1');
  if (s.length !== RECOVERY_CODE_LENGTH) return null;
  for (const c of s) if (!RECOVERY_CODE_ALPHABET.includes(c)) return null;
  return s;
}

export type VerifyRecoveryCodeResult =
  | { readonly ok: true; /** Store this instead of the old list. */ readonly remaining: readonly string[] }
  | { readonly ok: false };

/**
 * Checks a typed code against the stored hashes. On success the matching hash is removed from the returned
 * list. Never throws for bad input; only a wrong key type throws (InvalidKeyError).
 */
export function verifyRecoveryCode(
  key: MacKey,
  presented: string,
  storedHashes: readonly string[],
): VerifyRecoveryCodeResult {
  const normalized = normalizeRecoveryCode(presented);
  // Hash something even for malformed input so the key check still runs (a wrong key throws either way).
  const candidate = Buffer.from(hashCode(key, normalized ?? ''), 'ascii');
  if (normalized === null) return { ok: false };
  let index = -1;
  for (let i = 0; i < storedHashes.length; i++) {
    const stored = storedHashes[i];
    if (typeof stored !== 'string') continue;
    if (constantTimeEqual(Buffer.from(stored, 'ascii'), candidate) && index === -1) index = i;
  }
  if (index === -1) return { ok: false };
  return { ok: true, remaining: storedHashes.filter((_, i) => i !== index) };
}
