import { createPublicKey, hash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import type { JWK, JWTPayload } from 'jose';
import { ecdsaDerToP1363 } from '../crypto/index.ts';
import type { KmsService, Principal } from '../kms/index.ts';

/**
 * Signing keys of the token service, held by the KMS. The private key never leaves it: the JWS signing input is
 * sent to `KmsService.sign` under a system principal, and the DER ECDSA signature it returns is converted to the
 * JWS (IEEE P1363) form. Verification is local (jose) against the public keys of every enabled version of the KMS
 * key, so rotating the KMS key rotates the signing key and tokens signed by the previous version keep verifying
 * until they expire (or until that version is disabled).
 *
 * `kid` is `<key name>:<version>`.
 */

export type TokenAlgorithm = 'ES256' | 'EdDSA';

/** The principal the identity service acts as towards the KMS (sign, read public keys, seal TOTP seeds). */
export const IDENTITY_SYSTEM_PRINCIPAL: Principal = {
  id: 'system:identity',
  roles: ['key-user'],
  authMethod: 'internal',
};

const ALGORITHM_OF: Readonly<Record<string, TokenAlgorithm>> = { 'ecdsa-p256': 'ES256', ed25519: 'EdDSA' };

/** The `clockTolerance` of every verification, in seconds. */
const LEEWAY_SECONDS = 30;
/** Most verified tokens remembered; beyond it the oldest is forgotten (re-verified on its next use). */
const VERIFIED_MAX = 10_000;

/** A token whose signature and claims verified: what a later presentation of the same token may skip. */
interface Verified {
  readonly payload: JWTPayload;
  readonly kid: string;
  /** The exact key object it verified against: a reloaded or withdrawn key set never matches it. */
  readonly key: KeyObject;
  /** The verification options (issuer, audience, typ) it was checked against. */
  readonly checks: string;
}

export interface KmsTokenKeysOptions {
  readonly kms: KmsService;
  readonly keyName: string;
  readonly principal?: Principal;
  readonly now?: () => number;
  /** How long the public-key set is cached; an unknown kid refreshes it sooner (at most once a second). */
  readonly jwksTtlMs?: number;
}

interface KeySet {
  readonly fetchedAt: number;
  readonly algorithm: TokenAlgorithm;
  readonly latestVersion: number;
  readonly keys: ReadonlyMap<string, { key: KeyObject; jwk: JWK }>;
}

export class TokenKeyError extends Error {
  readonly code = 'token_key_unavailable';
  readonly httpStatus = 503;
  constructor(message: string) {
    super(message);
    this.name = 'TokenKeyError';
  }
}

export class KmsTokenKeys {
  readonly #kms: KmsService;
  readonly #keyName: string;
  readonly #principal: Principal;
  readonly #now: () => number;
  readonly #ttlMs: number;
  #set: KeySet | undefined;
  #loading: Promise<KeySet> | undefined;
  readonly #verified = new Map<string, Verified>();

  constructor(options: KmsTokenKeysOptions) {
    this.#kms = options.kms;
    this.#keyName = options.keyName;
    this.#principal = options.principal ?? IDENTITY_SYSTEM_PRINCIPAL;
    this.#now = options.now ?? Date.now;
    this.#ttlMs = options.jwksTtlMs ?? 60_000;
  }

  /** Signs a compact JWS over `payload` with the KMS key's latest version. */
  async sign(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<string> {
    let set = await this.#keySet(false);
    let version = set.latestVersion;
    // The KMS signs with whatever version is latest when the call lands; if a rotation raced us, the kid in the
    // header would name the wrong key, so sign again naming the version the KMS actually used.
    for (let attempt = 0; attempt < 3; attempt++) {
      const fullHeader = { ...header, alg: set.algorithm, kid: `${this.#keyName}:${version}` };
      const input = `${b64json(fullHeader)}.${b64json(payload)}`;
      const { signature, keyVersion } = await this.#kms.sign(
        this.#principal,
        this.#keyName,
        Buffer.from(input, 'ascii'),
      );
      if (keyVersion === version) {
        const jws = set.algorithm === 'ES256' ? ecdsaDerToP1363(signature, 'P-256') : signature;
        return `${input}.${jws.toString('base64url')}`;
      }
      version = keyVersion;
      set = await this.#keySet(true);
    }
    throw new TokenKeyError('the signing key kept rotating while signing');
  }

  async algorithm(): Promise<TokenAlgorithm> {
    return (await this.#keySet(false)).algorithm;
  }

  /** The JWKS document: the public key of every enabled version. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const set = await this.#keySet(false);
    return { keys: [...set.keys.values()].map((k) => k.jwk) };
  }

  /** Public key for `kid`; an unknown kid of this key name reloads the set (a newer version), at most once a second. */
  async keyFor(kid: unknown): Promise<{ key: KeyObject; algorithm: TokenAlgorithm } | undefined> {
    if (typeof kid !== 'string' || !kid.startsWith(`${this.#keyName}:`)) return undefined;
    let set = await this.#keySet(false);
    let found = set.keys.get(kid);
    if (found === undefined && this.#now() - set.fetchedAt >= 1000) {
      set = await this.#keySet(true);
      found = set.keys.get(kid);
    }
    return found === undefined ? undefined : { key: found.key, algorithm: set.algorithm };
  }

  /**
   * Verifies signature, `typ`, `iss`, `aud`, `exp`/`nbf` (jose, 30 s leeway). Throws jose's errors on any
   * failure; the caller maps them to one uninformative failure.
   *
   * The ECDSA verification is most of the cost of an authenticated request, and a client presents the same token
   * for up to an hour, so a token that verified is remembered under the SHA-256 of its exact text (the token
   * itself is never kept). A later presentation skips the signature only when the same options are asked for,
   * the key set still holds the very key object it verified against (a disabled version or any reload of the set
   * sends it through jose again) and `exp`/`nbf` still hold at `now`; otherwise jose decides, with its errors.
   * Revocation, principal status and epoch are the caller's checks and run on every presentation.
   */
  async verify(
    token: string,
    options: { issuer: string; audience: string | readonly string[]; typ: string; now: number },
  ): Promise<JWTPayload> {
    const audience = [...(typeof options.audience === 'string' ? [options.audience] : options.audience)];
    const checks = JSON.stringify([options.issuer, audience, options.typ]);
    const digest = hash('sha256', token, 'base64url');
    const known = this.#verified.get(digest);
    if (known !== undefined) {
      if (known.checks === checks && withinTime(known.payload, options.now)) {
        const current = await this.keyFor(known.kid);
        if (current?.key === known.key) return known.payload;
      }
      this.#verified.delete(digest);
    }
    let used: { kid: string; key: KeyObject } | undefined;
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const found = await this.keyFor(header.kid);
        if (found === undefined || header.alg !== found.algorithm)
          throw new TokenKeyError('unknown signing key');
        used = { kid: header.kid as string, key: found.key };
        return found.key;
      },
      {
        issuer: options.issuer,
        audience,
        typ: options.typ,
        algorithms: ['ES256', 'EdDSA'],
        currentDate: new Date(options.now),
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      },
    );
    if (used !== undefined) {
      if (this.#verified.size >= VERIFIED_MAX) {
        const oldest = this.#verified.keys().next();
        if (oldest.done !== true) this.#verified.delete(oldest.value);
      }
      // Shared by every later presentation of the token: frozen so that no caller can alter another's claims.
      this.#verified.set(digest, { payload: deepFreeze(payload), ...used, checks });
    }
    return payload;
  }

  /** Forgets the cached key set (after an administrative change of the KMS key). */
  forget(): void {
    this.#set = undefined;
    this.#verified.clear();
  }

  async #keySet(force: boolean): Promise<KeySet> {
    const now = this.#now();
    if (!force && this.#set !== undefined && now - this.#set.fetchedAt < this.#ttlMs) return this.#set;
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    this.#set = await this.#loading;
    return this.#set;
  }

  async #load(): Promise<KeySet> {
    const info = await this.#kms.getKey(this.#principal, this.#keyName);
    const algorithm = ALGORITHM_OF[info.key.type];
    if (algorithm === undefined) {
      throw new TokenKeyError(`the token signing key must be ecdsa-p256 or ed25519, not ${info.key.type}`);
    }
    const keys = new Map<string, { key: KeyObject; jwk: JWK }>();
    for (const v of info.versions) {
      if (v.state !== 'enabled' || v.publicKey === null) continue;
      const key = createPublicKey({ key: Buffer.from(v.publicKey), format: 'der', type: 'spki' });
      const kid = `${this.#keyName}:${v.version}`;
      keys.set(kid, {
        key,
        jwk: { ...(key.export({ format: 'jwk' }) as JWK), kid, alg: algorithm, use: 'sig' },
      });
    }
    return { fetchedAt: this.#now(), algorithm, latestVersion: info.key.latestVersion, keys };
  }
}

/** jose's `exp` and `nbf` checks (same leeway, same whole-second clock), for a remembered token. */
function withinTime(payload: JWTPayload, nowMs: number): boolean {
  const now = Math.floor(nowMs / 1000);
  if (typeof payload.exp !== 'number' || payload.exp <= now - LEEWAY_SECONDS) return false;
  return (
    payload.nbf === undefined || (typeof payload.nbf === 'number' && payload.nbf <= now + LEEWAY_SECONDS)
  );
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}
