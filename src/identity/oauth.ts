// @peculiar/x509 needs a Reflect metadata API loaded before it.
import 'reflect-metadata';
import { Name, X509Certificate } from '@peculiar/x509';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import type { AuditEvent, AuditRecorder } from '../audit/index.ts';
import { constantTimeEqual, randomBytes } from '../crypto/index.ts';
import type { MacKey } from '../crypto/index.ts';
import type { Principal } from '../kms/index.ts';
import { networkOf } from '../policy/index.ts';
import type { AuthThrottle } from './credentials/index.ts';
import { ROLE_PATTERN, parsePrincipalId, servicePrincipalId } from './directory.ts';
import type {
  Directory,
  PrincipalStatus,
  ServiceAccountRecord,
  TokenFamily,
  UserRecord,
} from './directory.ts';
import { IdentityAuditUnavailableError, IdentityError, OAuthError } from './errors.ts';
import { keyedHash, sha256Base64url } from './secrets.ts';
import type { KmsTokenKeys } from './tokens.ts';

/**
 * Warden's OAuth 2.0 authorization server: JWT access tokens (RFC 9068) signed through the KMS, opaque rotating
 * refresh tokens with reuse detection, client authentication (client_secret_basic/post, private_key_jwt per
 * RFC 7523, tls_client_auth per RFC 8705 with certificate-bound tokens), the client_credentials and refresh_token
 * grants, revocation (RFC 7009) and introspection (RFC 7662). See docs/identity.md.
 */

export const ACCESS_TOKEN_DEFAULT_TTL_SECONDS = 3600;
/** No access token lives longer than this, whatever the configuration says; verification enforces it too. */
export const ACCESS_TOKEN_HARD_MAX_SECONDS = 12 * 3600;
export const REFRESH_TOKEN_DEFAULT_TTL_SECONDS = 14 * 24 * 3600;
export const SESSION_DEFAULT_MAX_SECONDS = 30 * 24 * 3600;
/** The public client of Warden's own CLI and console: sessions from local and OIDC login belong to it. */
export const PUBLIC_CLIENT_ID = 'warden';
/** Roles whose holders must have passed MFA; without it a session may only enrol MFA. */
export const PRIVILEGED_ROLES: readonly string[] = ['admin', 'security-admin', 'key-custodian'];
/** The scope of a session that may do nothing but enrol MFA. It cannot collide with a role (roles have no ':'). */
export const MFA_ENROLMENT_SCOPE = 'warden:mfa-enrolment';
/**
 * Roles whose confidential clients may introspect every token and API key (resource servers such as
 * `warden gateway`); other clients see only their own tokens. `resource-server` grants nothing else.
 */
export const INTROSPECT_ALL_ROLES: readonly string[] = ['admin', 'security-admin', 'resource-server'];
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** A client assertion may be valid for at most this long (bounds the replay cache). */
export const CLIENT_ASSERTION_MAX_LIFETIME_SECONDS = 300;
const LEEWAY_SECONDS = 30;
const STATUS_CACHE_MAX_MS = 1000;
const MAX_FORM_VALUE = 8192;
const MAX_FORM_FIELDS = 32;
const REFRESH_PATTERN = /^wrt_([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];

export interface RequestInfo {
  readonly sourceIp?: string;
  readonly userAgent?: string;
  readonly requestId?: string;
}

/** An OAuth endpoint request: the parsed form, the Authorization header and the TLS client certificate (DER). */
export interface OAuthRequest extends RequestInfo {
  readonly form: Readonly<Record<string, string>>;
  readonly authorization?: string | undefined;
  readonly clientCertificate?: Buffer | undefined;
  /**
   * True when the TLS layer verified the certificate's chain against the client CA. Subject-DN binding requires
   * it (anyone can self-sign a certificate with any DN); SPKI binding does not (RFC 8705 §2.2: the handshake
   * proved possession of the bound key).
   */
  readonly clientCertificateTrusted?: boolean | undefined;
}

export interface TokenResponse {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
  readonly refresh_token?: string;
}

export type ClientAuthentication =
  'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'tls_client_auth' | 'none';

export interface AuthenticatedClient {
  readonly clientId: string;
  readonly method: ClientAuthentication;
  /** Absent for the public client. */
  readonly account?: ServiceAccountRecord;
  /** base64url SHA-256 of the client certificate, when it authenticated with one (for `cnf`). */
  readonly certificateThumbprint?: string;
}

/** The claims of a Warden access token (RFC 9068 plus Warden's). */
export interface AccessTokenClaims extends JWTPayload {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly iat: number;
  readonly jti: string;
  readonly client_id: string;
  readonly scope: string;
  readonly roles: string[];
  readonly groups?: string[];
  readonly auth_time?: number;
  readonly amr?: string[];
  readonly auth_method: string;
  readonly sid?: string;
  readonly cnf?: { 'x5t#S256': string };
  readonly wdn_epoch: number;
  /** The network the session logged in from (IPv4 /24, IPv6 /48). */
  readonly wdn_net?: string;
}

export type AccessTokenFailure =
  | 'malformed'
  | 'invalid'
  | 'expired'
  | 'revoked'
  | 'principal_unknown'
  | 'principal_disabled'
  | 'principal_changed'
  | 'certificate_mismatch';

export type VerifiedAccessToken =
  | {
      readonly ok: true;
      readonly claims: AccessTokenClaims;
      readonly principal: Principal;
      /** True for a session of a privileged user without MFA: it may only enrol MFA. */
      readonly mfaEnrolmentOnly: boolean;
    }
  | { readonly ok: false; readonly reason: AccessTokenFailure };

export interface AuthorizationServerOptions {
  readonly directory: Directory;
  readonly keys: KmsTokenKeys;
  /** Server key for the keyed hashes of refresh tokens and client secrets. */
  readonly macKey: MacKey;
  readonly audit: AuditRecorder;
  readonly throttle: AuthThrottle;
  /** The issuer URL (`iss`), e.g. `https://warden.example.com:8443`; the token endpoint is `<issuer>/oauth/token`. */
  readonly issuer: string;
  /** `aud` of access tokens (the Warden API); default the issuer. */
  readonly audience?: string;
  readonly accessTokenTtlSeconds?: number;
  readonly refreshTokenTtlSeconds?: number;
  readonly sessionMaxSeconds?: number;
  /** How long a principal's status (disabled, epoch, roles) and the revocation list are cached; at most 1000 ms. */
  readonly statusCacheMs?: number;
  /** Introspection of an API key (`wdn_…`): its claims, or undefined when it is not active. */
  readonly introspectApiKey?: (token: string) => Promise<Record<string, unknown> | undefined>;
  readonly now?: () => number;
}

export interface SessionOptions extends RequestInfo {
  /** RFC 8176 values, e.g. `['pwd']`, `['pwd', 'otp', 'mfa']`, `['fed']`. */
  readonly amr: readonly string[];
  /** When MFA was passed (epoch ms); absent: no MFA in this session. */
  readonly mfaAt?: number;
  /** What the user authenticated with, e.g. `password`, `password+totp`, `oidc`, `webauthn`. */
  readonly authMethod: string;
  readonly clientId?: string;
}

export interface SessionTokens extends TokenResponse {
  readonly refresh_token: string;
  /** True when the user holds a privileged role without MFA: the session may only enrol MFA. */
  readonly mfa_enrolment_required: boolean;
}

function invalidRequest(description: string): never {
  throw new OAuthError('invalid_request', description);
}

/**
 * An OAuth form body as parsed by a querystring parser (values are strings or arrays of strings) to a flat map.
 * RFC 6749 §3.1: parameters must not repeat; empty values count as absent.
 */
export function parseOAuthForm(body: unknown): Record<string, string> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    invalidRequest('the body must be a form');
  const entries = Object.entries(body as Record<string, unknown>);
  if (entries.length > MAX_FORM_FIELDS) invalidRequest('too many parameters');
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of entries) {
    if (typeof value !== 'string') invalidRequest('a parameter is repeated or not text');
    if (value.length > MAX_FORM_VALUE) invalidRequest('a parameter is too long');
    if (value !== '') out[name] = value;
  }
  return out;
}

/** `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1); undefined when malformed. */
export function parseBasicCredentials(header: string): { clientId: string; secret: string } | undefined {
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header);
  if (m === null || header.length > MAX_FORM_VALUE) return undefined;
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    const clientId = decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' '));
    const secret = decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' '));
    return clientId === '' || secret === '' ? undefined : { clientId, secret };
  } catch {
    return undefined;
  }
}

/** base64url SHA-256 of a DER certificate: the `x5t#S256` of RFC 8705. */
export function certificateThumbprint(der: Uint8Array): string {
  return sha256Base64url(der);
}

/** base64url SHA-256 of a DER certificate's SubjectPublicKeyInfo: what a tls_client_auth account may be bound to. */
export function certificateSpkiSha256(der: Uint8Array): string {
  return sha256Base64url(Buffer.from(new X509Certificate(der).publicKey.rawData));
}

/** Normalised RFC 4514 form of a distinguished name, so that registration and certificate compare equal. */
export function normalizeDn(dn: string): string {
  return new Name(dn).toString();
}

interface CachedStatus {
  readonly status: PrincipalStatus | undefined;
  readonly fetchedAt: number;
}

export class AuthorizationServer {
  readonly #dir: Directory;
  readonly #keys: KmsTokenKeys;
  readonly #mac: MacKey;
  readonly #audit: AuditRecorder;
  readonly #throttle: AuthThrottle;
  readonly issuer: string;
  readonly audience: string;
  readonly tokenEndpoint: string;
  readonly accessTokenTtlSeconds: number;
  readonly #refreshTtlMs: number;
  readonly #sessionMaxMs: number;
  readonly #cacheMs: number;
  readonly #now: () => number;
  readonly #introspectApiKey: AuthorizationServerOptions['introspectApiKey'];
  readonly #status = new Map<string, CachedStatus>();
  #mappings: { map: Map<string, readonly string[]>; fetchedAt: number } | undefined;
  #denylist: { set: Set<string>; fetchedAt: number } | undefined;
  readonly #dummyHash: string;

  constructor(options: AuthorizationServerOptions) {
    this.#dir = options.directory;
    this.#keys = options.keys;
    this.#mac = options.macKey;
    this.#audit = options.audit;
    this.#throttle = options.throttle;
    let issuer: URL;
    try {
      issuer = new URL(options.issuer);
    } catch {
      throw new TypeError('issuer must be a URL');
    }
    if (issuer.search !== '' || issuer.hash !== '')
      throw new TypeError('issuer must have no query or fragment');
    this.issuer = options.issuer.replace(/\/+$/, '');
    this.audience = options.audience ?? this.issuer;
    this.tokenEndpoint = `${this.issuer}/oauth/token`;
    const ttl = options.accessTokenTtlSeconds ?? ACCESS_TOKEN_DEFAULT_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > ACCESS_TOKEN_HARD_MAX_SECONDS) {
      throw new RangeError(`accessTokenTtlSeconds must be 60 to ${ACCESS_TOKEN_HARD_MAX_SECONDS}`);
    }
    this.accessTokenTtlSeconds = ttl;
    this.#refreshTtlMs = (options.refreshTokenTtlSeconds ?? REFRESH_TOKEN_DEFAULT_TTL_SECONDS) * 1000;
    this.#sessionMaxMs = (options.sessionMaxSeconds ?? SESSION_DEFAULT_MAX_SECONDS) * 1000;
    if (!(this.#refreshTtlMs > 0) || !(this.#sessionMaxMs >= this.#refreshTtlMs)) {
      throw new RangeError('refreshTokenTtlSeconds must be positive and at most sessionMaxSeconds');
    }
    this.#cacheMs = Math.min(options.statusCacheMs ?? STATUS_CACHE_MAX_MS, STATUS_CACHE_MAX_MS);
    this.#now = options.now ?? Date.now;
    this.#introspectApiKey = options.introspectApiKey;
    this.#dummyHash = keyedHash(this.#mac, 'dummy', 'dummy');
  }

  /** RFC 8414 authorization server metadata. */
  metadata(): Record<string, unknown> {
    return {
      issuer: this.issuer,
      token_endpoint: this.tokenEndpoint,
      jwks_uri: `${this.issuer}/.well-known/jwks.json`,
      revocation_endpoint: `${this.issuer}/oauth/revoke`,
      introspection_endpoint: `${this.issuer}/oauth/introspect`,
      grant_types_supported: ['client_credentials', 'refresh_token'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: [
        'client_secret_basic',
        'client_secret_post',
        'private_key_jwt',
        'tls_client_auth',
      ],
      token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
      revocation_endpoint_auth_methods_supported: [
        'client_secret_basic',
        'client_secret_post',
        'private_key_jwt',
        'tls_client_auth',
        'none',
      ],
      introspection_endpoint_auth_methods_supported: [
        'client_secret_basic',
        'client_secret_post',
        'private_key_jwt',
        'tls_client_auth',
      ],
      tls_client_certificate_bound_access_tokens: true,
      scopes_supported: [],
    };
  }

  jwks(): Promise<{ keys: unknown[] }> {
    return this.#keys.jwks();
  }

  // ---- the token endpoint -------------------------------------------------------------------------------

  /** POST /oauth/token. Throws OAuthError (RFC 6749 §5.2) on every failure. */
  async token(request: OAuthRequest): Promise<TokenResponse> {
    const grant = request.form['grant_type'];
    if (grant === undefined) invalidRequest('grant_type is required');
    if (grant !== 'client_credentials' && grant !== 'refresh_token') {
      throw new OAuthError('unsupported_grant_type', 'supported grants: client_credentials, refresh_token');
    }
    const client = await this.authenticateClient(request, grant === 'refresh_token');
    try {
      const response =
        grant === 'client_credentials'
          ? await this.#clientCredentials(client, request)
          : await this.#refresh(client, request);
      await this.#record(request, {
        action: 'identity.oauth.token',
        principal: { id: servicePrincipalId(client.clientId), authMethod: client.method },
        resource: `client:${client.clientId}`,
        outcome: 'success',
        details: { grant },
      });
      return response;
    } catch (err) {
      if (err instanceof OAuthError) {
        await this.#record(request, {
          action: 'identity.oauth.token',
          principal: { id: servicePrincipalId(client.clientId), authMethod: client.method },
          resource: `client:${client.clientId}`,
          outcome: 'failure',
          reason: err.error,
          details: { grant },
        });
      }
      throw err;
    }
  }

  async #clientCredentials(client: AuthenticatedClient, request: OAuthRequest): Promise<TokenResponse> {
    const account = client.account;
    if (account === undefined) {
      throw new OAuthError('unauthorized_client', 'client_credentials needs a confidential client');
    }
    const status = await this.#statusOf(account.principalId, true);
    if (status === undefined || status.disabled)
      throw new OAuthError('invalid_client', 'client authentication failed');
    const scope = this.#grantedScope(request.form['scope'], status.roles);
    const now = this.#now();
    const access = await this.#signAccessToken({
      sub: account.principalId,
      clientId: client.clientId,
      scope,
      groups: undefined,
      authMethod: client.method,
      epoch: status.epoch,
      now,
      ...(client.certificateThumbprint === undefined ? {} : { thumbprint: client.certificateThumbprint }),
    });
    return { access_token: access, token_type: 'Bearer', expires_in: this.accessTokenTtlSeconds, scope };
  }

  /** The requested scope (space-separated role names), each held; absent: every role held. */
  #grantedScope(requested: string | undefined, held: readonly string[]): string {
    if (requested === undefined) return [...held].sort().join(' ');
    const asked = requested.split(' ');
    if (asked.some((s) => !ROLE_PATTERN.test(s) || !held.includes(s))) {
      throw new OAuthError('invalid_scope', 'the scope names a role the client does not hold');
    }
    return [...new Set(asked)].sort().join(' ');
  }

  async #refresh(client: AuthenticatedClient, request: OAuthRequest): Promise<TokenResponse> {
    const presented = request.form['refresh_token'];
    if (presented === undefined) invalidRequest('refresh_token is required');
    const m = REFRESH_PATTERN.exec(presented);
    if (m === null) throw new OAuthError('invalid_grant', 'the refresh token is not valid');
    const [, id = '', secret = ''] = m;
    const expected = Buffer.from(keyedHash(this.#mac, 'refresh-token', id, secret), 'base64url');
    const successor = this.#newRefreshToken();
    const outcome = await this.#dir.rotateRefreshToken(
      id,
      (stored) =>
        constantTimeEqual(expected, Buffer.from(stored === '' ? this.#dummyHash : stored, 'base64url')),
      { id: successor.id, hash: successor.hash, expiresAt: this.#now() + this.#refreshTtlMs },
      client.clientId,
    );
    if (!outcome.ok) {
      if (outcome.reason === 'reused') {
        this.#denylist = undefined;
        await this.#record(request, {
          action: 'identity.oauth.refresh_token_reuse',
          principal: { id: servicePrincipalId(client.clientId), authMethod: client.method },
          resource: `client:${client.clientId}`,
          outcome: 'denied',
          reason: 'refresh_token_reuse',
        });
      }
      throw new OAuthError('invalid_grant', 'the refresh token is not valid');
    }
    const family = outcome.family;
    const status = await this.#statusOf(family.principalId, true);
    if (status === undefined || status.disabled || status.epoch !== family.epoch) {
      await this.#dir.revokeFamily(family.id, 'principal_changed');
      this.#denylist = undefined;
      throw new OAuthError('invalid_grant', 'the refresh token is not valid');
    }
    const access = await this.#signAccessToken(this.#familyClaims(family, status, this.#now()));
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: this.accessTokenTtlSeconds,
      scope: family.scope,
      refresh_token: successor.token,
    };
  }

  #familyClaims(family: TokenFamily, status: PrincipalStatus, now: number): AccessTokenInput {
    const mfa = family.mfaAt !== null;
    return {
      sub: family.principalId,
      clientId: family.clientId,
      scope: family.scope,
      groups: status.kind === 'user' ? status.groups : undefined,
      authMethod: family.amr.includes('fed') ? 'federated' : mfa ? 'mfa' : 'password',
      epoch: family.epoch,
      now,
      sid: family.id,
      authTime: family.mfaAt ?? family.authTime,
      amr: family.amr,
      ...(family.loginNetwork === null ? {} : { loginNetwork: family.loginNetwork }),
    };
  }

  #newRefreshToken(): { id: string; hash: string; token: string } {
    const id = randomBytes(16).toString('base64url');
    const secret = randomBytes(32).toString('base64url');
    return { id, token: `wrt_${id}.${secret}`, hash: keyedHash(this.#mac, 'refresh-token', id, secret) };
  }

  // ---- sessions (local and OIDC login) ------------------------------------------------------------------

  /**
   * Access and refresh tokens for a user who has just authenticated. A user holding a privileged role without
   * MFA in this session gets a session that may only enrol MFA (`mfa_enrolment_required`).
   */
  async issueSession(user: UserRecord, options: SessionOptions): Promise<SessionTokens> {
    const status = await this.#statusOf(user.principalId, true);
    if (status === undefined || status.disabled)
      throw new IdentityError('invalid_credentials', 401, 'the credentials are not valid');
    const now = this.#now();
    const mfaAt = options.mfaAt;
    const restricted = mfaAt === undefined && status.roles.some((r) => PRIVILEGED_ROLES.includes(r));
    const scope = restricted ? MFA_ENROLMENT_SCOPE : status.roles.join(' ');
    const amr = [...new Set(options.amr)].filter((a) => /^[a-z0-9_-]{1,32}$/.test(a)).slice(0, 8);
    const family: TokenFamily = {
      id: randomBytes(16).toString('base64url'),
      principalId: user.principalId,
      clientId: options.clientId ?? PUBLIC_CLIENT_ID,
      scope,
      amr,
      authTime: mfaAt ?? now,
      mfaAt: mfaAt ?? null,
      epoch: status.epoch,
      createdAt: now,
      expiresAt: now + this.#sessionMaxMs,
      revokedAt: null,
      loginNetwork: options.sourceIp === undefined ? null : (networkOf(options.sourceIp) ?? null),
    };
    const refresh = this.#newRefreshToken();
    await this.#dir.createFamily(family, {
      id: refresh.id,
      hash: refresh.hash,
      expiresAt: Math.min(now + this.#refreshTtlMs, family.expiresAt),
    });
    const access = await this.#signAccessToken({
      ...this.#familyClaims(family, status, now),
      authMethod: options.authMethod,
    });
    return {
      access_token: access,
      token_type: 'Bearer',
      expires_in: this.accessTokenTtlSeconds,
      scope,
      refresh_token: refresh.token,
      mfa_enrolment_required: restricted,
    };
  }

  // ---- access tokens --------------------------------------------------------------------------------------

  async #signAccessToken(input: AccessTokenInput): Promise<string> {
    const iat = Math.floor(input.now / 1000);
    const claims: AccessTokenClaims = {
      iss: this.issuer,
      sub: input.sub,
      aud: this.audience,
      exp: iat + this.accessTokenTtlSeconds,
      iat,
      jti: randomBytes(16).toString('base64url'),
      client_id: input.clientId,
      scope: input.scope,
      roles: input.scope === MFA_ENROLMENT_SCOPE || input.scope === '' ? [] : input.scope.split(' '),
      ...(input.groups === undefined ? {} : { groups: [...input.groups] }),
      ...(input.authTime === undefined ? {} : { auth_time: Math.floor(input.authTime / 1000) }),
      ...(input.amr === undefined ? {} : { amr: [...input.amr] }),
      auth_method: input.authMethod,
      ...(input.sid === undefined ? {} : { sid: input.sid }),
      ...(input.thumbprint === undefined ? {} : { cnf: { 'x5t#S256': input.thumbprint } }),
      wdn_epoch: input.epoch,
      ...(input.loginNetwork === undefined ? {} : { wdn_net: input.loginNetwork }),
    };
    return this.#keys.sign({ typ: 'at+jwt' }, claims);
  }

  /**
   * Verifies a Warden access token: signature (a KMS key version that is enabled), `typ` `at+jwt`, issuer,
   * audience, expiry, the hard lifetime maximum, the revocation list, the principal's status and epoch (cached at
   * most a second), and the certificate binding. Never throws for bad input.
   */
  async verifyAccessToken(
    token: string,
    context: { clientCertificate?: Buffer | undefined } = {},
  ): Promise<VerifiedAccessToken> {
    if (
      typeof token !== 'string' ||
      token.length > MAX_FORM_VALUE ||
      !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)
    ) {
      return { ok: false, reason: 'malformed' };
    }
    const now = this.#now();
    let payload: JWTPayload;
    try {
      payload = await this.#keys.verify(token, {
        issuer: this.issuer,
        audience: this.audience,
        typ: 'at+jwt',
        now,
      });
    } catch (err) {
      if (err instanceof Error && (err as { code?: unknown }).code === 'ERR_JWT_EXPIRED')
        return { ok: false, reason: 'expired' };
      if (
        err instanceof Error &&
        !isJoseError(err) &&
        !(err instanceof TypeError) &&
        err.name !== 'TokenKeyError'
      )
        throw err;
      return { ok: false, reason: 'invalid' };
    }
    const claims = payload as Partial<AccessTokenClaims>;
    if (
      typeof claims.sub !== 'string' ||
      typeof claims.jti !== 'string' ||
      typeof claims.client_id !== 'string' ||
      typeof claims.scope !== 'string' ||
      typeof claims.wdn_epoch !== 'number' ||
      typeof claims.iat !== 'number' ||
      typeof claims.exp !== 'number' ||
      typeof claims.auth_method !== 'string' ||
      claims.exp - claims.iat > ACCESS_TOKEN_HARD_MAX_SECONDS ||
      claims.iat > now / 1000 + LEEWAY_SECONDS
    ) {
      return { ok: false, reason: 'invalid' };
    }
    const denied = await this.#deniedIds(now);
    if (
      denied.has(`jti:${claims.jti}`) ||
      (typeof claims.sid === 'string' && denied.has(`sid:${claims.sid}`))
    ) {
      return { ok: false, reason: 'revoked' };
    }
    const bound = claims.cnf?.['x5t#S256'];
    if (bound !== undefined) {
      const presented = context.clientCertificate;
      if (
        typeof bound !== 'string' ||
        presented === undefined ||
        !constantTimeEqual(Buffer.from(certificateThumbprint(presented)), Buffer.from(bound))
      ) {
        return { ok: false, reason: 'certificate_mismatch' };
      }
    }
    const status = await this.#statusOf(claims.sub, false);
    if (status === undefined) return { ok: false, reason: 'principal_unknown' };
    if (status.disabled) return { ok: false, reason: 'principal_disabled' };
    if (status.epoch !== claims.wdn_epoch) return { ok: false, reason: 'principal_changed' };
    const granted = new Set(claims.scope.split(' '));
    const mfaEnrolmentOnly = granted.has(MFA_ENROLMENT_SCOPE);
    const roles = mfaEnrolmentOnly ? [] : status.roles.filter((r) => granted.has(r));
    const amr = Array.isArray(claims.amr) ? claims.amr : [];
    const mfaAt =
      amr.includes('mfa') && typeof claims.auth_time === 'number' ? claims.auth_time * 1000 : undefined;
    const principal: Principal = {
      id: claims.sub,
      kind: status.kind,
      roles,
      authMethod: 'jwt',
      ...(status.kind === 'user' ? { groups: status.groups } : {}),
      ...(mfaAt === undefined ? {} : { mfaAt }),
      ...(typeof claims.wdn_net === 'string' ? { loginNetwork: claims.wdn_net } : {}),
    };
    return { ok: true, claims: claims as AccessTokenClaims, principal, mfaEnrolmentOnly };
  }

  // ---- revocation and introspection -----------------------------------------------------------------------

  /** RFC 7009. Answers nothing about the token: an unknown, foreign or expired token is silently ignored. */
  async revoke(request: OAuthRequest): Promise<void> {
    const client = await this.authenticateClient(request, true);
    const token = request.form['token'];
    if (token === undefined) invalidRequest('token is required');
    const hint = request.form['token_type_hint'];
    if (hint !== undefined && hint !== 'access_token' && hint !== 'refresh_token') {
      throw new OAuthError('unsupported_token_type', 'token_type_hint must be access_token or refresh_token');
    }
    let revoked = false;
    const m = REFRESH_PATTERN.exec(token);
    if (m !== null) {
      const [, id = '', secret = ''] = m;
      const found = await this.#dir.getFamilyOfRefreshToken(id);
      const expected = Buffer.from(keyedHash(this.#mac, 'refresh-token', id, secret), 'base64url');
      const matches = constantTimeEqual(expected, Buffer.from(found?.hash ?? this.#dummyHash, 'base64url'));
      if (found !== undefined && matches && found.family.clientId === client.clientId) {
        await this.#dir.revokeFamily(found.family.id, 'revoked');
        revoked = true;
      }
    } else {
      const verified = await this.verifyAccessToken(token, { clientCertificate: request.clientCertificate });
      const claims = verified.ok ? verified.claims : undefined;
      if (claims !== undefined && claims.client_id === client.clientId) {
        await this.#dir.denyAccessToken(claims.jti, claims.exp * 1000 + LEEWAY_SECONDS * 1000);
        revoked = true;
      }
    }
    if (revoked) this.#denylist = undefined;
    await this.#record(request, {
      action: 'identity.oauth.revoke',
      principal: { id: servicePrincipalId(client.clientId), authMethod: client.method },
      resource: `client:${client.clientId}`,
      outcome: 'success',
      details: { revoked },
    });
  }

  /**
   * RFC 7662, for confidential clients. A client sees its own tokens; one holding `admin` or `security-admin`
   * (a resource server) sees every token. Everything else is `{active:false}`.
   */
  async introspect(request: OAuthRequest): Promise<Record<string, unknown>> {
    const client = await this.authenticateClient(request, false);
    const token = request.form['token'];
    if (token === undefined) invalidRequest('token is required');
    const status =
      client.account === undefined ? undefined : await this.#statusOf(client.account.principalId, false);
    const seesAll = status?.roles.some((r) => INTROSPECT_ALL_ROLES.includes(r)) === true;
    const inactive = { active: false };
    let answer: Record<string, unknown> = inactive;
    const m = REFRESH_PATTERN.exec(token);
    if (m !== null) {
      const [, id = '', secret = ''] = m;
      const found = await this.#dir.getFamilyOfRefreshToken(id);
      const expected = Buffer.from(keyedHash(this.#mac, 'refresh-token', id, secret), 'base64url');
      const matches = constantTimeEqual(expected, Buffer.from(found?.hash ?? this.#dummyHash, 'base64url'));
      const family = found?.family;
      if (family !== undefined && matches && family.revokedAt === null && this.#now() < family.expiresAt) {
        const stillValid = await this.#refreshTokenUnused(id);
        if (stillValid && (seesAll || family.clientId === client.clientId)) {
          answer = {
            active: true,
            token_type: 'refresh_token',
            client_id: family.clientId,
            sub: family.principalId,
            scope: family.scope,
            exp: Math.floor(family.expiresAt / 1000),
            iss: this.issuer,
          };
        }
      }
    } else if (token.startsWith('wdn_')) {
      // API keys belong to no client: only a client that sees every token may ask about one.
      if (seesAll) answer = (await this.#introspectApiKey?.(token)) ?? inactive;
    } else {
      const verified = await this.verifyAccessToken(token, { clientCertificate: request.clientCertificate });
      if (verified.ok && (seesAll || verified.claims.client_id === client.clientId)) {
        const c = verified.claims;
        answer = {
          active: true,
          token_type: 'Bearer',
          scope: c.scope,
          client_id: c.client_id,
          sub: c.sub,
          aud: c.aud,
          iss: c.iss,
          exp: c.exp,
          iat: c.iat,
          jti: c.jti,
          roles: verified.principal.roles,
          ...(verified.principal.groups === undefined ? {} : { groups: verified.principal.groups }),
          ...(c.cnf === undefined ? {} : { cnf: c.cnf }),
          ...(c.auth_time === undefined ? {} : { auth_time: c.auth_time }),
          ...(c.amr === undefined ? {} : { amr: c.amr }),
        };
      }
    }
    await this.#record(request, {
      action: 'identity.oauth.introspect',
      principal: { id: servicePrincipalId(client.clientId), authMethod: client.method },
      resource: `client:${client.clientId}`,
      outcome: 'success',
      details: { active: answer['active'] === true },
    });
    return answer;
  }

  async #refreshTokenUnused(id: string): Promise<boolean> {
    const row = await this.#dir.store.db
      .selectFrom('identity_refresh_tokens')
      .select(['used_at', 'expires_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row !== undefined && row.used_at === null && this.#now() < row.expires_at;
  }

  // ---- client authentication ------------------------------------------------------------------------------

  /**
   * Authenticates the client of an OAuth request with exactly one method. `allowPublic`: the public `warden`
   * client may identify itself by `client_id` alone (refresh and revocation of its sessions). Failures are all
   * `invalid_client` (401), throttled per client and per address, and audited.
   */
  async authenticateClient(request: OAuthRequest, allowPublic: boolean): Promise<AuthenticatedClient> {
    const form = request.form;
    const basic =
      request.authorization === undefined ? undefined : parseBasicCredentials(request.authorization);
    if (request.authorization !== undefined && basic === undefined) {
      return this.#clientFailure(request, undefined, 'malformed_authorization');
    }
    const methods = [
      basic !== undefined,
      form['client_secret'] !== undefined,
      form['client_assertion'] !== undefined || form['client_assertion_type'] !== undefined,
    ].filter(Boolean).length;
    if (methods > 1) invalidRequest('use exactly one client authentication method');
    let claimedId = basic?.clientId ?? form['client_id'];
    if (form['client_assertion'] !== undefined) {
      if (form['client_assertion_type'] !== CLIENT_ASSERTION_TYPE)
        invalidRequest('unsupported client_assertion_type');
      let iss: unknown;
      try {
        iss = decodeJwt(form['client_assertion']).iss;
      } catch {
        return this.#clientFailure(request, claimedId, 'malformed_assertion');
      }
      if (typeof iss !== 'string' || (claimedId !== undefined && claimedId !== iss)) {
        return this.#clientFailure(request, claimedId, 'assertion_issuer');
      }
      claimedId = iss;
    }
    if (claimedId === undefined) return this.#clientFailure(request, undefined, 'no_client');
    if (basic !== undefined && form['client_id'] !== undefined && form['client_id'] !== basic.clientId) {
      invalidRequest('client_id does not match the Authorization header');
    }
    const decision = this.#throttle.check({ principal: `client:${claimedId}`, ...address(request) });
    if (!decision.allowed) {
      throw new OAuthError('invalid_client', 'too many failed attempts: try again later');
    }

    if (claimedId === PUBLIC_CLIENT_ID && methods === 0 && request.clientCertificate === undefined) {
      if (!allowPublic) return this.#clientFailure(request, claimedId, 'public_client');
      return { clientId: PUBLIC_CLIENT_ID, method: 'none' };
    }
    const account = await this.#dir.getServiceAccount(claimedId);
    const secret = basic?.secret ?? form['client_secret'];
    if (secret !== undefined) {
      const expected = Buffer.from(keyedHash(this.#mac, 'client-secret', claimedId, secret), 'base64url');
      const stored = Buffer.from(account?.secretHash ?? this.#dummyHash, 'base64url');
      const ok =
        constantTimeEqual(expected, stored) && account?.authMethod === 'client_secret' && account.hasSecret;
      if (!ok || account.disabled) return this.#clientFailure(request, claimedId, 'bad_secret');
      return this.#clientSuccess({
        clientId: claimedId,
        method: basic === undefined ? 'client_secret_post' : 'client_secret_basic',
        account,
      });
    }
    if (form['client_assertion'] !== undefined) {
      if (
        account === undefined ||
        account.disabled ||
        account.authMethod !== 'private_key_jwt' ||
        account.jwks === null
      ) {
        return this.#clientFailure(request, claimedId, 'bad_assertion');
      }
      const reason = await this.#verifyAssertion(form['client_assertion'], account.clientId, account.jwks);
      if (reason !== undefined) return this.#clientFailure(request, claimedId, reason);
      return this.#clientSuccess({ clientId: claimedId, method: 'private_key_jwt', account });
    }
    if (request.clientCertificate !== undefined) {
      if (account === undefined || account.disabled || account.authMethod !== 'tls_client_auth') {
        return this.#clientFailure(request, claimedId, 'bad_certificate');
      }
      const thumbprint = this.#certificateMatches(
        request.clientCertificate,
        request.clientCertificateTrusted === true,
        account,
      );
      if (thumbprint === undefined) return this.#clientFailure(request, claimedId, 'bad_certificate');
      return this.#clientSuccess({
        clientId: claimedId,
        method: 'tls_client_auth',
        account,
        certificateThumbprint: thumbprint,
      });
    }
    return this.#clientFailure(request, claimedId, 'no_credentials');
  }

  /** RFC 7523 §3 checks; returns a failure reason or undefined. */
  async #verifyAssertion(
    assertion: string,
    clientId: string,
    jwks: { keys: Record<string, unknown>[] },
  ): Promise<string | undefined> {
    const now = this.#now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), {
        issuer: clientId,
        subject: clientId,
        audience: [this.tokenEndpoint, this.issuer],
        algorithms: ASSERTION_ALGORITHMS,
        currentDate: new Date(now),
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: ['exp', 'jti', 'iss', 'sub', 'aud'],
      }));
    } catch (err) {
      if (err instanceof Error && (isJoseError(err) || err instanceof TypeError)) return 'bad_assertion';
      throw err;
    }
    const exp = payload.exp ?? 0;
    const jti = payload.jti;
    if (exp * 1000 > now + (CLIENT_ASSERTION_MAX_LIFETIME_SECONDS + LEEWAY_SECONDS) * 1000)
      return 'assertion_lifetime';
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) return 'bad_assertion';
    const fresh = await this.#dir.spendAssertionId(
      sha256Base64url(`${clientId}\0${jti}`),
      exp * 1000 + LEEWAY_SECONDS * 1000,
    );
    return fresh ? undefined : 'assertion_replayed';
  }

  /** The certificate's thumbprint if it matches the account's registered SPKI hash or subject DN. */
  #certificateMatches(der: Buffer, trusted: boolean, account: ServiceAccountRecord): string | undefined {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch {
      return undefined;
    }
    const now = this.#now();
    if (!(cert.notBefore.getTime() <= now && now <= cert.notAfter.getTime())) return undefined;
    if (account.tlsSpkiSha256 !== null) {
      const spki = sha256Base64url(Buffer.from(cert.publicKey.rawData));
      if (!constantTimeEqual(Buffer.from(spki), Buffer.from(account.tlsSpkiSha256))) return undefined;
    } else if (account.tlsSubjectDn !== null && trusted) {
      let subject: string;
      try {
        subject = normalizeDn(cert.subject);
      } catch {
        return undefined;
      }
      if (subject !== account.tlsSubjectDn) return undefined;
    } else {
      return undefined;
    }
    return certificateThumbprint(der);
  }

  #clientSuccess(client: AuthenticatedClient): AuthenticatedClient {
    this.#throttle.recordSuccess({ principal: `client:${client.clientId}` });
    return client;
  }

  async #clientFailure(request: OAuthRequest, clientId: string | undefined, reason: string): Promise<never> {
    const safeId =
      clientId !== undefined && /^[a-z0-9][a-z0-9._-]{0,63}$/.test(clientId) ? clientId : undefined;
    this.#throttle.recordFailure({
      ...(safeId === undefined ? {} : { principal: `client:${safeId}` }),
      ...address(request),
    });
    await this.#record(request, {
      action: 'identity.oauth.client_authentication',
      principal: {
        id: safeId === undefined ? 'anonymous' : servicePrincipalId(safeId),
        authMethod: 'oauth-client',
      },
      resource: safeId === undefined ? 'client:?' : `client:${safeId}`,
      outcome: 'failure',
      reason,
    });
    throw new OAuthError('invalid_client', 'client authentication failed');
  }

  // ---- principal status and revocation caches ----------------------------------------------------------------

  /** Status of a principal, cached at most `statusCacheMs` (1 s). `fresh` reads through the cache. */
  async #statusOf(principalId: string, fresh: boolean): Promise<PrincipalStatus | undefined> {
    if (parsePrincipalId(principalId) === undefined) return undefined;
    const now = this.#now();
    const cached = this.#status.get(principalId);
    if (!fresh && cached !== undefined && now - cached.fetchedAt < this.#cacheMs) return cached.status;
    const status = await this.#dir.principalStatus(principalId, await this.#roleMappings(now, fresh));
    if (this.#status.size >= 10_000) this.#status.clear();
    this.#status.set(principalId, { status, fetchedAt: now });
    return status;
  }

  async #roleMappings(now: number, fresh: boolean): Promise<ReadonlyMap<string, readonly string[]>> {
    if (!fresh && this.#mappings !== undefined && now - this.#mappings.fetchedAt < this.#cacheMs)
      return this.#mappings.map;
    this.#mappings = { map: await this.#dir.roleMappings(), fetchedAt: now };
    return this.#mappings.map;
  }

  async #deniedIds(now: number): Promise<Set<string>> {
    if (this.#denylist !== undefined && now - this.#denylist.fetchedAt < this.#cacheMs)
      return this.#denylist.set;
    this.#denylist = { set: await this.#dir.activeDenylist(now), fetchedAt: now };
    return this.#denylist.set;
  }

  /** Drops cached state after a change made through this process (other processes see it within a second). */
  invalidate(principalId?: string): void {
    if (principalId === undefined) this.#status.clear();
    else this.#status.delete(principalId);
    this.#mappings = undefined;
    this.#denylist = undefined;
  }

  /** Revokes every session (token family) of a principal. */
  async revokeSessionsOf(principalId: string): Promise<number> {
    const families = await this.#dir.store.db
      .selectFrom('identity_token_families')
      .select('id')
      .where('principal_id', '=', principalId)
      .where('revoked_at', 'is', null)
      .execute();
    for (const f of families) await this.#dir.revokeFamily(f.id, 'revoked');
    this.#denylist = undefined;
    return families.length;
  }

  /** The keyed hash stored for a client secret. */
  clientSecretHash(clientId: string, secret: string): string {
    return keyedHash(this.#mac, 'client-secret', clientId, secret);
  }

  async #record(request: RequestInfo, event: AuditEvent): Promise<void> {
    try {
      await this.#audit.record({
        ...event,
        ...(request.requestId === undefined ? {} : { requestId: request.requestId }),
        ...(request.sourceIp === undefined ? {} : { sourceIp: request.sourceIp }),
        ...(request.userAgent === undefined ? {} : { userAgent: request.userAgent.slice(0, 256) }),
      });
    } catch {
      throw new IdentityAuditUnavailableError();
    }
  }
}

interface AccessTokenInput {
  readonly sub: string;
  readonly clientId: string;
  readonly scope: string;
  readonly groups: readonly string[] | undefined;
  readonly authMethod: string;
  readonly epoch: number;
  readonly now: number;
  readonly sid?: string;
  readonly thumbprint?: string;
  readonly authTime?: number;
  readonly amr?: readonly string[];
  readonly loginNetwork?: string;
}

function address(request: RequestInfo): { address?: string } {
  return request.sourceIp === undefined ? {} : { address: request.sourceIp };
}

function isJoseError(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('ERR_J');
}
