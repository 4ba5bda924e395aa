import { crc32 } from 'node:zlib';
import { constantTimeEqual, InvalidInputError, mac, type MacKey, randomBytes } from '../../crypto/index.ts';

/**
 * API keys: `wdn_<env>_<id>_<secret><checksum>`, e.g. `wdn_live_3hT9…(16)_…(43)…(6)`.
 *
 * - `wdn_` is a fixed prefix that secret scanners can match (register the pattern API_KEY_PATTERN with them).
 * - `env` (`[a-z][a-z0-9]{0,15}`, e.g. `live`, `test`) tells keys for different deployments apart at a glance.
 * - `id`: 16 base62 characters (~95 random bits), not secret: the database lookup key, safe to log.
 * - `secret`: 43 base62 characters, each drawn uniformly by rejection sampling, so >= 256 bits of entropy.
 * - `checksum`: CRC32 of everything before it, 6 base62 characters (GitHub's token format does the same). It
 *   lets scanners discard random look-alikes and lets us reject typos before any database lookup. It is not a
 *   security control: anyone can compute it.
 *
 * The full key is returned once by `createApiKey`. The server stores only ApiKeyRecord, whose `hash` is
 * HMAC-SHA256 under a server MacKey over a label, env, id and secret. 256 random bits need no slow hash; the key
 * means a database dump alone cannot even confirm a leaked key, and binding id and env stops a record swap.
 */

export const API_KEY_PREFIX = 'wdn';
export const API_KEY_ID_LENGTH = 16;
export const API_KEY_SECRET_LENGTH = 43;
export const API_KEY_CHECKSUM_LENGTH = 6;
export const API_KEY_DEFAULT_TTL_SECONDS = 90 * 24 * 3600;
export const API_KEY_MAX_TTL_SECONDS = 366 * 24 * 3600;
export const API_KEY_MIN_TTL_SECONDS = 60;
/** Default minimum interval between two persisted `lastUsedAt` updates. */
export const API_KEY_TOUCH_INTERVAL_SECONDS = 60;
export const API_KEY_MAX_SCOPES = 64;
/** A scope is lowercase segments separated by ':', e.g. `kms:encrypt`, `audit:read`. No wildcards. */
export const API_KEY_SCOPE_PATTERN = /^[a-z][a-z0-9_-]{0,31}(?::[a-z][a-z0-9_-]{0,31}){0,3}$/;
const ENV_PATTERN = /^[a-z][a-z0-9]{0,15}$/;
/** For secret scanners and log redaction. */
export const API_KEY_PATTERN = /\bwdn_[a-z][a-z0-9]{0,15}_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b/g;
const STRICT = /^wdn_([a-z][a-z0-9]{0,15})_([0-9A-Za-z]{16})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;
const MAX_KEY_LENGTH = 4 + 17 + 17 + 49;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const LABEL = 'warden/identity/api-key/v1';

export interface ApiKeyParts {
  readonly env: string;
  readonly id: string;
  readonly secret: string;
}

export interface ApiKeyRecord {
  readonly id: string;
  readonly env: string;
  /** base64url HMAC-SHA256; see module comment. */
  readonly hash: string;
  /** Sorted, unique, each matching API_KEY_SCOPE_PATTERN. */
  readonly scopes: readonly string[];
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly lastUsedAt: Date | null;
  /** Set when revoked; a revoked key never verifies. */
  readonly revokedAt?: Date | null;
}

/** `n` uniform base62 characters from the CSPRNG (bytes >= 248 are rejected: 248 = 4 * 62). */
function randomBase62(n: number): string {
  let out = '';
  while (out.length < n) {
    const bytes = randomBytes(n * 2);
    for (const b of bytes) {
      if (b < 248 && out.length < n) out += BASE62[b % 62] ?? '';
    }
    bytes.fill(0);
  }
  return out;
}

function checksum(body: string): string {
  let n = crc32(body);
  let out = '';
  for (let i = 0; i < API_KEY_CHECKSUM_LENGTH; i++) {
    out = (BASE62[n % 62] ?? '') + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export function formatApiKey(parts: ApiKeyParts): string {
  if (
    !ENV_PATTERN.test(parts.env) ||
    !/^[0-9A-Za-z]{16}$/.test(parts.id) ||
    !/^[0-9A-Za-z]{43}$/.test(parts.secret)
  ) {
    throw new InvalidInputError('invalid API key parts');
  }
  const body = `${API_KEY_PREFIX}_${parts.env}_${parts.id}_${parts.secret}`;
  return body + checksum(body);
}

export type ParseApiKeyResult =
  | { readonly ok: true; readonly parts: ApiKeyParts }
  | { readonly ok: false; readonly reason: 'malformed' | 'checksum' };

/** Strict parse: exact format, then checksum. Never throws. */
export function parseApiKey(presented: unknown): ParseApiKeyResult {
  if (typeof presented !== 'string' || presented.length > MAX_KEY_LENGTH) {
    return { ok: false, reason: 'malformed' };
  }
  const m = STRICT.exec(presented);
  if (!m) return { ok: false, reason: 'malformed' };
  const [, env = '', id = '', secret = '', sum = ''] = m;
  const expected = checksum(presented.slice(0, presented.length - API_KEY_CHECKSUM_LENGTH));
  // The checksum is public; a plain comparison is fine.
  if (sum !== expected) return { ok: false, reason: 'checksum' };
  return { ok: true, parts: { env, id, secret } };
}

function keyedHash(key: MacKey, parts: ApiKeyParts): Buffer {
  return mac(key, Buffer.from(`${LABEL}\0${parts.env}\0${parts.id}\0${parts.secret}`, 'ascii'));
}

/** Validates, de-duplicates and sorts scopes; throws InvalidInputError naming the rule, not the value. */
export function normalizeScopes(scopes: readonly string[]): string[] {
  if (!Array.isArray(scopes) || scopes.length === 0 || scopes.length > API_KEY_MAX_SCOPES) {
    throw new InvalidInputError(`an API key needs 1 to ${API_KEY_MAX_SCOPES} scopes`);
  }
  for (const s of scopes) {
    if (typeof s !== 'string' || !API_KEY_SCOPE_PATTERN.test(s)) {
      throw new InvalidInputError(`each scope must match ${API_KEY_SCOPE_PATTERN.source}`);
    }
  }
  return [...new Set<string>(scopes)].sort();
}

export interface CreateApiKeyInput {
  readonly env: string;
  readonly scopes: readonly string[];
  /** Lifetime, default 90 days, 60 s to 366 days. */
  readonly ttlSeconds?: number;
  readonly now?: Date;
}

export interface CreatedApiKey {
  /** The full key: show it once, never store or log it. */
  readonly key: string;
  /** What to store. */
  readonly record: ApiKeyRecord;
}

export function createApiKey(serverKey: MacKey, input: CreateApiKeyInput): CreatedApiKey {
  if (typeof input.env !== 'string' || !ENV_PATTERN.test(input.env)) {
    throw new InvalidInputError(`API key env must match ${ENV_PATTERN.source}`);
  }
  const scopes = normalizeScopes(input.scopes);
  const ttl = input.ttlSeconds ?? API_KEY_DEFAULT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < API_KEY_MIN_TTL_SECONDS || ttl > API_KEY_MAX_TTL_SECONDS) {
    throw new InvalidInputError(
      `API key ttlSeconds must be from ${API_KEY_MIN_TTL_SECONDS} to ${API_KEY_MAX_TTL_SECONDS}`,
    );
  }
  const now = input.now ?? new Date();
  if (Number.isNaN(now.getTime())) throw new InvalidInputError('now is not a valid date');
  const parts: ApiKeyParts = {
    env: input.env,
    id: randomBase62(API_KEY_ID_LENGTH),
    secret: randomBase62(API_KEY_SECRET_LENGTH),
  };
  return {
    key: formatApiKey(parts),
    record: {
      id: parts.id,
      env: parts.env,
      hash: keyedHash(serverKey, parts).toString('base64url'),
      scopes,
      createdAt: new Date(now.getTime()),
      expiresAt: new Date(now.getTime() + ttl * 1000),
      lastUsedAt: null,
      revokedAt: null,
    },
  };
}

export type ApiKeyLookup = (
  id: string,
) => ApiKeyRecord | null | undefined | Promise<ApiKeyRecord | null | undefined>;

export type VerifyApiKeyFailure =
  'malformed' | 'checksum' | 'unknown' | 'mismatch' | 'revoked' | 'expired' | 'insufficient_scope';

export type VerifyApiKeyResult =
  | { readonly ok: true; readonly record: ApiKeyRecord }
  | {
      readonly ok: false;
      readonly reason: VerifyApiKeyFailure;
      /** Safe to log; absent if unparseable. */ readonly id?: string;
    };

export interface VerifyApiKeyOptions {
  readonly now?: Date;
  /** All of these must be in the record's scopes, else `insufficient_scope` (HTTP 403, not 401). */
  readonly requiredScopes?: readonly string[];
}

// Compared against when the id is unknown, so that path costs one HMAC and one comparison too.
const DUMMY_HASH = Buffer.alloc(32);

/**
 * Parses strictly, checks the checksum, looks the id up, compares the keyed hash in constant time, then checks
 * revocation, expiry and scopes, in that order. Failures other than `insufficient_scope` should all be answered
 * with the same 401. Returns a result for every input; throws only if `lookup` throws or `serverKey` is not a
 * MacKey (InvalidKeyError).
 */
export async function verifyApiKey(
  serverKey: MacKey,
  presented: unknown,
  lookup: ApiKeyLookup,
  options: VerifyApiKeyOptions = {},
): Promise<VerifyApiKeyResult> {
  const parsed = parseApiKey(presented);
  if (!parsed.ok) {
    mac(serverKey, DUMMY_HASH); // a wrong key type fails here too, not only for well-formed keys
    return { ok: false, reason: parsed.reason };
  }
  const { parts } = parsed;
  const record = await lookup(parts.id);
  const computed = keyedHash(serverKey, parts);
  if (!record) {
    constantTimeEqual(computed, DUMMY_HASH);
    return { ok: false, reason: 'unknown', id: parts.id };
  }
  const stored = typeof record.hash === 'string' ? Buffer.from(record.hash, 'base64url') : DUMMY_HASH;
  if (!constantTimeEqual(computed, stored) || record.id !== parts.id || record.env !== parts.env) {
    return { ok: false, reason: 'mismatch', id: parts.id };
  }
  const now = (options.now ?? new Date()).getTime();
  if (record.revokedAt !== null && record.revokedAt !== undefined)
    return { ok: false, reason: 'revoked', id: parts.id };
  if (!(record.expiresAt instanceof Date) || !(now < record.expiresAt.getTime())) {
    return { ok: false, reason: 'expired', id: parts.id };
  }
  if (options.requiredScopes && !hasScopes(record, options.requiredScopes)) {
    return { ok: false, reason: 'insufficient_scope', id: parts.id };
  }
  return { ok: true, record };
}

/** Exact-match scope check: every required scope is in the record. */
export function hasScopes(record: Pick<ApiKeyRecord, 'scopes'>, required: readonly string[]): boolean {
  return required.every((s) => record.scopes.includes(s));
}

/**
 * The `lastUsedAt` to persist after a successful verification, throttled: `persist` is true only when the stored
 * value is null or older than `minIntervalSeconds` (default 60), so a busy key does not write on every request.
 */
export function touch(
  record: Pick<ApiKeyRecord, 'lastUsedAt'>,
  now: Date = new Date(),
  minIntervalSeconds: number = API_KEY_TOUCH_INTERVAL_SECONDS,
): { readonly lastUsedAt: Date; readonly persist: boolean } {
  const last = record.lastUsedAt;
  if (last && now.getTime() - last.getTime() < minIntervalSeconds * 1000) {
    return { lastUsedAt: last, persist: false };
  }
  return { lastUsedAt: new Date(now.getTime()), persist: true };
}
