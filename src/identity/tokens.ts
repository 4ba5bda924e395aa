import { createPublicKey } from 'node:crypto';
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
   */
  async verify(
    token: string,
    options: { issuer: string; audience: string | readonly string[]; typ: string; now: number },
  ): Promise<JWTPayload> {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const found = await this.keyFor(header.kid);
        if (found === undefined || header.alg !== found.algorithm)
          throw new TokenKeyError('unknown signing key');
        return found.key;
      },
      {
        issuer: options.issuer,
        audience: [...(typeof options.audience === 'string' ? [options.audience] : options.audience)],
        typ: options.typ,
        algorithms: ['ES256', 'EdDSA'],
        currentDate: new Date(options.now),
        clockTolerance: 30,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      },
    );
    return payload;
  }

  /** Forgets the cached key set (after an administrative change of the KMS key). */
  forget(): void {
    this.#set = undefined;
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

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}
