import { createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { ACCESS_TOKEN_HARD_MAX_SECONDS, parseApiKey } from '../identity/index.ts';
import type { Principal } from '../kms/index.ts';
import { GatewayError } from './errors.ts';
import type { Authenticate } from './gateway.ts';
import type { RemoteClientCertificates } from './remote-ca.ts';
import { isUnavailable } from './remote-warden.ts';
import type { WardenLink } from './remote-warden.ts';

/** The longest a token's status is reused: a disabled principal's tokens stop within this (plus the server's 1 s). */
export const MAX_STATUS_TTL_MS = 5000;

export interface RemoteAuthOptions {
  readonly link: WardenLink;
  /** `aud` of Warden access tokens; default the server's issuer (the server's own default). */
  readonly audience?: string;
  /** How long one token's introspection answer is reused, ms. Default 2000, at most 5000. */
  readonly statusTtlMs?: number;
  /** How long the last answer stays usable while the server is unreachable, ms. Default 10 000. */
  readonly graceMs?: number;
  /** Token statuses kept (least recently fetched dropped first). Default 10 000. */
  readonly maxCachedTokens?: number;
  /** Least time between two JWKS fetches for an unknown `kid`, ms. Default 10 000. */
  readonly jwksCooldownMs?: number;
  /** Client certificates (mTLS) when the listener requests them. */
  readonly clientCertificates?: RemoteClientCertificates;
  /** Refuse requests without a verified client certificate. Default false. */
  readonly requireClientCertificate?: boolean;
  readonly now?: () => number;
}

/** What introspection says about a credential, reduced to what the gateway uses. */
interface TokenStatus {
  readonly active: boolean;
  readonly sub?: string;
  readonly roles: readonly string[];
  readonly groups?: readonly string[];
  /** Seconds since the epoch. */
  readonly exp?: number;
}

const INACTIVE: TokenStatus = { active: false, roles: [] };
const JWT_PATTERN = /^[A-Za-z0-9_-]{1,4096}\.[A-Za-z0-9_-]{1,8192}\.[A-Za-z0-9_-]{1,1024}$/;
const BEARER_PATTERN = /^Bearer ([\x21-\x7e]{1,16384})$/i;
const PRINCIPAL_PATTERN = /^(user|service):[^\s]{1,256}$/;

export const identityUnavailable = (): GatewayError =>
  new GatewayError('identity_unavailable', 503, 'credentials cannot be checked right now', 1);

function strings(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
}

/** An RFC 7662 answer as a status; anything malformed is inactive (fail closed). */
export function parseIntrospection(answer: unknown): TokenStatus {
  if (typeof answer !== 'object' || answer === null) return INACTIVE;
  const a = answer as Record<string, unknown>;
  if (a.active !== true || typeof a.sub !== 'string' || !PRINCIPAL_PATTERN.test(a.sub)) return INACTIVE;
  const roles = strings(a.roles);
  if (roles === undefined) return INACTIVE;
  const groups = a.groups === undefined ? undefined : strings(a.groups);
  if (a.groups !== undefined && groups === undefined) return INACTIVE;
  if (a.exp !== undefined && (typeof a.exp !== 'number' || !Number.isFinite(a.exp))) return INACTIVE;
  return {
    active: true,
    sub: a.sub,
    roles,
    ...(groups === undefined ? {} : { groups }),
    ...(typeof a.exp === 'number' ? { exp: a.exp } : {}),
  };
}

/**
 * Introspection answers by keyed hash of the credential (the cache never holds a usable token), reused for
 * `ttlMs`, one request in flight per credential, bounded. While the server is unreachable the last answer is
 * used for `graceMs` after it was fetched; past that, or for a credential never seen, checks fail closed (503).
 */
class TokenStatusCache {
  readonly #link: WardenLink;
  readonly #ttlMs: number;
  readonly #graceMs: number;
  readonly #max: number;
  readonly #now: () => number;
  // A KeyObject: node:crypto imports a raw key again on every createHmac, ~7x the cost of the HMAC itself.
  readonly #key = createSecretKey(randomBytes(32));
  readonly #entries = new Map<string, { status: TokenStatus; at: number }>();
  readonly #pending = new Map<string, Promise<TokenStatus>>();

  constructor(link: WardenLink, ttlMs: number, graceMs: number, max: number, now: () => number) {
    this.#link = link;
    this.#ttlMs = ttlMs;
    this.#graceMs = graceMs;
    this.#max = max;
    this.#now = now;
  }

  /** The keyed hash a credential is cached under; never the credential itself. */
  keyOf(token: string): string {
    return createHmac('sha256', this.#key).update(token).digest('base64url');
  }

  async status(token: string, key: string = this.keyOf(token)): Promise<TokenStatus> {
    const cached = this.#entries.get(key);
    if (cached !== undefined && this.#now() - cached.at < this.#ttlMs) return cached.status;
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#fetch(key, token).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    try {
      return await pending;
    } catch (err) {
      if (isUnavailable(err) && cached !== undefined && this.#now() - cached.at < this.#graceMs) {
        return cached.status;
      }
      throw identityUnavailable();
    }
  }

  async #fetch(key: string, token: string): Promise<TokenStatus> {
    const at = this.#now();
    const status = parseIntrospection(await this.#link.introspect(token));
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { status, at });
    return status;
  }
}

type AccessClaims = JWTPayload & { sub: string; exp: number };

/**
 * Access tokens whose signature, issuer, audience and claims already verified, by the status cache's keyed hash,
 * until they expire: verifying an ES256 signature is the largest cost of a gateway request, and a token's
 * verified claims cannot change. Revocation, disabled principals and role changes still come from the status
 * check every request makes; bounded, oldest evicted first.
 */
class VerifiedTokens {
  readonly #max: number;
  readonly #entries = new Map<string, AccessClaims>();

  constructor(max: number) {
    this.#max = max;
  }

  get(key: string, now: number): AccessClaims | undefined {
    const claims = this.#entries.get(key);
    if (claims === undefined) return undefined;
    if (now < claims.exp * 1000) return claims;
    this.#entries.delete(key);
    return undefined;
  }

  set(key: string, claims: AccessClaims): void {
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, claims);
  }
}

function kindOf(id: string): 'user' | 'service' {
  return id.startsWith('user:') ? 'user' : 'service';
}

/**
 * Authentication of the standalone gateway against its Warden server, per request:
 *
 * - a Warden access token (JWT): signature, `typ` `at+jwt`, issuer, audience and expiry verified locally with
 *   jose against the server's JWKS, then the principal's current status (disabled, roles changed, token revoked)
 *   from introspection, cached `statusTtlMs` per token (the verified claims are kept until the token expires, so
 *   each token's signature is checked once);
 * - an API key (`wdn_…`): format and checksum locally, everything else by introspection (same cache);
 * - a client certificate issued by Warden's CA, when the listener requests them: identity from its SPIFFE SAN,
 *   no roles (Cedar policies grant such principals by name), revocation through the CRL.
 *
 * A credential that does not verify is `undefined` (401); when its status cannot be learnt, 503.
 */
export class RemoteAuthenticator {
  readonly authenticate: Authenticate;
  readonly #link: WardenLink;
  readonly #audience: string | undefined;
  readonly #jwks: JWTVerifyGetKey;
  readonly #statuses: TokenStatusCache;
  readonly #verified: VerifiedTokens;
  readonly #certificates: RemoteClientCertificates | undefined;
  readonly #requireCertificate: boolean;
  readonly #now: () => number;

  constructor(options: RemoteAuthOptions) {
    const ttl = options.statusTtlMs ?? 2000;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_STATUS_TTL_MS) {
      throw new RangeError(`statusTtlMs must be 0 to ${MAX_STATUS_TTL_MS}`);
    }
    this.#link = options.link;
    this.#audience = options.audience;
    this.#now = options.now ?? Date.now;
    this.#jwks = options.link.jwks(options.jwksCooldownMs ?? 10_000);
    this.#statuses = new TokenStatusCache(
      options.link,
      ttl,
      options.graceMs ?? 10_000,
      options.maxCachedTokens ?? 10_000,
      this.#now,
    );
    this.#verified = new VerifiedTokens(options.maxCachedTokens ?? 10_000);
    this.#certificates = options.clientCertificates;
    this.#requireCertificate = options.requireClientCertificate === true;
    if (this.#requireCertificate && this.#certificates === undefined) {
      throw new TypeError('requireClientCertificate needs clientCertificates');
    }
    this.authenticate = (request) => this.#authenticate(request);
  }

  async #authenticate(request: FastifyRequest): Promise<Principal | undefined> {
    const userAgent = request.headers['user-agent'];
    const info = { id: request.id, sourceIp: request.ip, ...(userAgent === undefined ? {} : { userAgent }) };
    let client: { principalId: string; kind: 'user' | 'service' } | undefined;
    const socket = request.raw.socket;
    if (this.#certificates !== undefined && socket instanceof TLSSocket) {
      try {
        client = this.#certificates.verify(socket);
      } catch {
        // A certificate was presented and failed (unknown issuer, revoked, expired...): nothing it carries counts.
        return undefined;
      }
    }
    if (this.#requireCertificate && client === undefined) return undefined;
    const header = request.headers.authorization;
    if (header === undefined) {
      return client === undefined
        ? undefined
        : { id: client.principalId, kind: client.kind, roles: [], authMethod: 'mtls', request: info };
    }
    const token = BEARER_PATTERN.exec(header)?.[1];
    if (token === undefined) return undefined;
    if (token.startsWith('wdn_')) {
      if (!parseApiKey(token).ok) return undefined;
      const status = await this.#statuses.status(token);
      if (!status.active || status.sub === undefined) return undefined;
      if (status.exp !== undefined && this.#now() >= status.exp * 1000) return undefined;
      return this.#principal(status.sub, status, 'api-key', undefined, info);
    }
    const key = this.#statuses.keyOf(token);
    let claims = this.#verified.get(key, this.#now());
    if (claims === undefined) {
      claims = await this.#verifyJwt(token);
      if (claims === undefined) return undefined;
      this.#verified.set(key, claims);
    }
    const status = await this.#statuses.status(token, key);
    if (!status.active || status.sub !== claims.sub) return undefined;
    const amr = Array.isArray(claims.amr) ? (claims.amr as unknown[]) : [];
    const mfaAt =
      amr.includes('mfa') && typeof claims.auth_time === 'number' ? claims.auth_time * 1000 : undefined;
    const principal = this.#principal(claims.sub, status, 'jwt', mfaAt, info);
    // The session's login network, so the server's reauthenticateOnNewNetwork guardrail holds here too.
    return typeof claims.wdn_net === 'string' ? { ...principal, loginNetwork: claims.wdn_net } : principal;
  }

  #principal(
    id: string,
    status: TokenStatus,
    authMethod: string,
    mfaAt: number | undefined,
    request: Principal['request'],
  ): Principal {
    const kind = kindOf(id);
    return {
      id,
      kind,
      roles: status.roles,
      authMethod,
      ...(kind === 'user' ? { groups: status.groups ?? [] } : {}),
      ...(mfaAt === undefined ? {} : { mfaAt }),
      ...(request === undefined ? {} : { request }),
    };
  }

  /** The claims of a locally verified Warden access token, or undefined when it is not one. */
  async #verifyJwt(token: string): Promise<AccessClaims | undefined> {
    if (!JWT_PATTERN.test(token)) return undefined;
    let issuer: string;
    try {
      issuer = await this.#link.issuer();
    } catch {
      throw identityUnavailable();
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#jwks, {
        issuer,
        audience: this.#audience ?? issuer,
        typ: 'at+jwt',
        algorithms: ['ES256', 'EdDSA'],
        currentDate: new Date(this.#now()),
        clockTolerance: 30,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      }));
    } catch (err) {
      // The key set could not be fetched: unknown, not invalid.
      if (err instanceof joseErrors.JWKSTimeout || !(err instanceof joseErrors.JOSEError)) {
        throw identityUnavailable();
      }
      return undefined;
    }
    const c = payload as Record<string, unknown>;
    if (
      typeof c.sub !== 'string' ||
      !PRINCIPAL_PATTERN.test(c.sub) ||
      typeof c.client_id !== 'string' ||
      typeof c.scope !== 'string' ||
      typeof c.auth_method !== 'string' ||
      typeof c.wdn_epoch !== 'number' ||
      typeof c.iat !== 'number' ||
      typeof c.exp !== 'number' ||
      c.exp - c.iat > ACCESS_TOKEN_HARD_MAX_SECONDS ||
      // Certificate-bound tokens (RFC 8705): the server's introspection checks the binding against the
      // introspecting client's connection, so the gateway cannot vouch for one; refused rather than unbound.
      c.cnf !== undefined
    ) {
      return undefined;
    }
    return payload as AccessClaims;
  }
}
