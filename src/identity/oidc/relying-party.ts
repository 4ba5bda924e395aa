import { createHash } from 'node:crypto';
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify } from 'jose';
import type { FetchImplementation, JWTPayload, JWTVerifyGetKey } from 'jose';
import { fetch as undiciFetch } from 'undici';
import type { Dispatcher } from 'undici';
import type { AuditHasher, AuditRecorder } from '../../audit/index.ts';
import { constantTimeEqual, randomBytes } from '../../crypto/index.ts';
import { checkEndpointUrl, resolveOidcConfig } from './config.ts';
import type { OidcConfig, ResolvedOidcConfig } from './config.ts';
import { OidcError } from './errors.ts';
import { isRecord, providerRequest } from './http.ts';
import { MemoryPendingLoginStore } from './pending.ts';
import type { PendingLoginStore } from './pending.ts';

/** Who logged in, as Warden sees it. `issuer` + `subject` is the stable key; `email` is informational. */
export interface OidcIdentity {
  readonly issuer: string;
  readonly subject: string;
  readonly email?: string;
  /** The provider's `email_verified`, when it reports one. */
  readonly emailVerified?: boolean;
  readonly name?: string;
  /** The groups claim as the provider sent it (deduplicated). */
  readonly groups: readonly string[];
  /** Warden roles mapped from `groups` (sorted, deduplicated). */
  readonly roles: readonly string[];
  /** Authentication methods (RFC 8176 values such as `pwd`, `mfa`, `hwk`, `otp`); empty when not reported. */
  readonly amr: readonly string[];
  readonly acr?: string;
  /** When the user authenticated at the provider (epoch ms), from `auth_time`; absent when not reported. */
  readonly authTime?: number;
}

/** The parts of the provider's discovery document the relying party uses. */
export interface ProviderMetadata {
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly jwksUri: string;
  readonly userinfoEndpoint?: string;
}

export interface StartedLogin {
  /** Where to send the browser. */
  readonly authorizationUrl: string;
  /** Echoed back by the provider on the redirect; the login's handle. */
  readonly state: string;
  readonly expiresAt: number;
}

export interface ValidatedAccessToken {
  readonly subject: string;
  readonly clientId?: string;
  readonly scopes: readonly string[];
  readonly expiresAt: number;
  readonly claims: JWTPayload;
}

/** The caller's request, for the audit trail. */
export interface OidcRequestContext {
  readonly requestId?: string;
  readonly sourceIp?: string;
  readonly userAgent?: string;
}

export interface OidcRelyingPartyOptions {
  readonly audit: AuditRecorder;
  /** Keys the subject hash recorded in audit events. */
  readonly auditHasher: AuditHasher;
  readonly pending?: PendingLoginStore;
  /** Clock (epoch ms); tests move it. */
  readonly now?: () => number;
  /** undici dispatcher for requests to the provider (private CA, proxy). */
  readonly dispatcher?: Dispatcher;
}

const STATE_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const MAX_CODE_LENGTH = 4096;
const MAX_TOKEN_LENGTH = 64 * 1024;
const MAX_GROUPS = 1000;
const MAX_GROUP_LENGTH = 256;

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function equalStrings(a: string, b: string): boolean {
  return constantTimeEqual(Buffer.from(a), Buffer.from(b));
}

/** OIDC Core §3.1.3.6: the left half of the hash (the one of the JWS algorithm) of the access token. */
function atHash(accessToken: string, alg: string): string | undefined {
  const bits = /^(?:RS|PS|ES)(256|384|512)$/.exec(alg)?.[1];
  const hash =
    bits !== undefined ? `sha${bits}` : alg === 'EdDSA' || alg === 'Ed25519' ? 'sha512' : undefined;
  if (hash === undefined) return undefined;
  const digest = createHash(hash).update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

/** Why jose refused a token, as a short reason for the audit trail. */
function joseReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'exp';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim:${err.claim}`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown_key';
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return 'ambiguous_key';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'alg';
  if (err instanceof joseErrors.JWKSTimeout) return 'jwks_timeout';
  if (err instanceof joseErrors.JOSEError) return err.code.toLowerCase();
  return 'malformed';
}

function isTransportFailure(err: unknown): boolean {
  return (
    err instanceof joseErrors.JWKSTimeout ||
    (err instanceof joseErrors.JOSEError && err.code === 'ERR_JOSE_GENERIC') ||
    !(err instanceof joseErrors.JOSEError)
  );
}

function optionalString(claims: Record<string, unknown>, name: string, max = 512): string | undefined {
  const value = claims[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length > max) {
    throw new OidcError('oidc_claims_invalid', `claim ${name} is not a string`);
  }
  return value;
}

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (
    !Array.isArray(list) ||
    list.length > MAX_GROUPS ||
    list.some((g) => typeof g !== 'string' || g.length === 0 || g.length > MAX_GROUP_LENGTH)
  ) {
    throw new OidcError('oidc_claims_invalid', `claim ${what} is not a list of strings`);
  }
  return [...new Set(list as string[])];
}

/**
 * OpenID Connect relying party: authorization code flow with PKCE (S256), `state` and `nonce`, for the console
 * (registered redirect URI) and the CLI (RFC 8252 loopback redirect). See docs/identity-oidc-webauthn.md.
 *
 * Everything secret about a login in progress (nonce, code verifier) stays in the pending-login store; the
 * browser only carries `state`. Tokens are validated against the provider's JWKS (cached by jose, reloaded when
 * an unknown `kid` appears, at most once per cooldown, which is how key rotation is followed).
 */
export class OidcRelyingParty {
  readonly config: ResolvedOidcConfig;
  readonly #pending: PendingLoginStore;
  readonly #now: () => number;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #audit: AuditRecorder;
  readonly #hasher: AuditHasher;
  #metadata: Promise<{ metadata: ProviderMetadata; jwks: JWTVerifyGetKey }> | undefined;

  constructor(config: OidcConfig, options: OidcRelyingPartyOptions) {
    this.config = resolveOidcConfig(config);
    this.#now = options.now ?? Date.now;
    this.#pending =
      options.pending ??
      new MemoryPendingLoginStore({ maxEntries: this.config.maxPendingLogins, now: this.#now });
    this.#dispatcher = options.dispatcher;
    this.#audit = options.audit;
    this.#hasher = options.auditHasher;
  }

  /** The provider's metadata, loaded once (and again after a failed attempt). */
  async discover(): Promise<ProviderMetadata> {
    return (await this.#load()).metadata;
  }

  #load(): Promise<{ metadata: ProviderMetadata; jwks: JWTVerifyGetKey }> {
    this.#metadata ??= this.#fetchMetadata().catch((err: unknown) => {
      this.#metadata = undefined;
      throw err;
    });
    return this.#metadata;
  }

  async #fetchMetadata(): Promise<{ metadata: ProviderMetadata; jwks: JWTVerifyGetKey }> {
    const url = `${this.config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const response = await providerRequest(
      url,
      { method: 'GET', headers: { accept: 'application/json' } },
      { timeoutMs: this.config.requestTimeoutMs, dispatcher: this.#dispatcher },
    );
    const doc = response.json;
    if (response.status !== 200 || !isRecord(doc)) {
      throw new OidcError('oidc_discovery_failed', `discovery answered ${response.status}`);
    }
    // OIDC Discovery §4.3: the document must name exactly the configured issuer (mix-up defence).
    if (doc['issuer'] !== this.config.issuer) throw new OidcError('oidc_discovery_failed', 'issuer mismatch');
    const endpoint = (name: string): string => {
      try {
        return checkEndpointUrl(doc[name], name).href;
      } catch (err) {
        throw new OidcError('oidc_discovery_failed', `${name} missing or insecure`, { cause: err });
      }
    };
    const methods = doc['code_challenge_methods_supported'];
    if (methods !== undefined && !(Array.isArray(methods) && methods.includes('S256'))) {
      throw new OidcError('oidc_discovery_failed', 'provider does not support PKCE S256');
    }
    const metadata: ProviderMetadata = {
      issuer: this.config.issuer,
      authorizationEndpoint: endpoint('authorization_endpoint'),
      tokenEndpoint: endpoint('token_endpoint'),
      jwksUri: endpoint('jwks_uri'),
      ...(this.config.useUserinfo ? { userinfoEndpoint: endpoint('userinfo_endpoint') } : {}),
    };
    const dispatcher = this.#dispatcher;
    const jwks = createRemoteJWKSet(new URL(metadata.jwksUri), {
      timeoutDuration: this.config.requestTimeoutMs,
      cooldownDuration: this.config.jwksCooldownMs,
      ...(dispatcher === undefined
        ? {}
        : {
            [customFetch]: ((resource: string, init: Parameters<FetchImplementation>[1]) =>
              undiciFetch(resource, {
                method: init.method,
                redirect: init.redirect,
                signal: init.signal,
                headers: Object.fromEntries(init.headers),
                dispatcher,
              })) as unknown as FetchImplementation,
          }),
    });
    return { metadata, jwks };
  }

  /** The redirect URI to use: the first registered one by default, or an allowed loopback URI (CLI). */
  #redirectUri(requested: string | undefined): string {
    if (requested === undefined) {
      const first = this.config.redirectUris[0];
      if (first === undefined)
        throw new OidcError('oidc_redirect_uri_not_allowed', 'no default redirect URI');
      return first;
    }
    if (this.config.redirectUris.includes(requested)) return requested;
    let url: URL;
    try {
      url = new URL(requested);
    } catch {
      throw new OidcError('oidc_redirect_uri_not_allowed', 'not a URL');
    }
    // RFC 8252 §7.3 / §8.3: loopback IP literals (not `localhost`, which DNS or hosts files could redirect).
    const loopback =
      url.protocol === 'http:' &&
      (url.hostname === '127.0.0.1' || url.hostname === '[::1]') &&
      url.port !== '' &&
      url.username === '' &&
      url.password === '' &&
      url.search === '' &&
      url.hash === '' &&
      this.config.loopbackRedirectPaths.includes(url.pathname);
    if (!loopback) throw new OidcError('oidc_redirect_uri_not_allowed', 'redirect URI not registered');
    return url.href;
  }

  /** Starts a login: fresh state, nonce and PKCE verifier, kept server side until the callback or expiry. */
  async startLogin(options: { redirectUri?: string } = {}): Promise<StartedLogin> {
    const redirectUri = this.#redirectUri(options.redirectUri);
    const { metadata } = await this.#load();
    const state = randomToken();
    const nonce = randomToken();
    const codeVerifier = randomToken();
    const createdAt = this.#now();
    const expiresAt = createdAt + this.config.loginTtlMs;
    await this.#pending.put(state, { nonce, codeVerifier, redirectUri, createdAt, expiresAt });
    const url = new URL(metadata.authorizationEndpoint);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.config.clientId);
    url.searchParams.set('redirect_uri', redirectUri);
    url.searchParams.set('scope', this.config.scopes.join(' '));
    url.searchParams.set('state', state);
    url.searchParams.set('nonce', nonce);
    url.searchParams.set('code_challenge', pkceChallenge(codeVerifier));
    url.searchParams.set('code_challenge_method', 'S256');
    if (this.config.maxAgeSeconds !== undefined)
      url.searchParams.set('max_age', String(this.config.maxAgeSeconds));
    return { authorizationUrl: url.href, state, expiresAt };
  }

  /**
   * Completes a login from the provider's redirect (`iss`: the RFC 9207 parameter, when the provider sent one):
   * consumes the pending state (once, whatever happens next),
   * exchanges the code with the PKCE verifier, validates the ID token, maps groups to roles. Audited
   * (`identity.oidc.login`); fails when the audit record cannot be written.
   */
  async completeLogin(
    input: { code: string; state: string; iss?: string | undefined },
    context: OidcRequestContext = {},
  ): Promise<OidcIdentity> {
    const started = this.#now();
    let identity: OidcIdentity | undefined;
    try {
      identity = await this.#complete(input);
    } catch (err) {
      const error =
        err instanceof OidcError
          ? err
          : new OidcError('oidc_provider_unavailable', 'unexpected', { cause: err });
      await this.#record(
        context,
        started,
        error.code === 'oidc_no_role' ? 'denied' : 'failure',
        undefined,
        error,
      );
      throw error;
    }
    await this.#record(context, started, 'success', identity);
    return identity;
  }

  async #record(
    context: OidcRequestContext,
    started: number,
    outcome: 'success' | 'failure' | 'denied',
    identity: OidcIdentity | undefined,
    error?: OidcError,
  ): Promise<void> {
    await this.#audit.record({
      action: 'identity.oidc.login',
      principal: {
        id:
          identity === undefined
            ? 'anonymous'
            : `oidc:${this.#hasher.hash(`${identity.issuer}\n${identity.subject}`)}`,
        authMethod: 'oidc',
      },
      resource: `oidc-issuer:${this.config.issuer}`,
      outcome,
      ...(error === undefined ? {} : { reason: `${error.code}:${error.reason}` }),
      ...(context.requestId === undefined ? {} : { requestId: context.requestId }),
      ...(context.sourceIp === undefined ? {} : { sourceIp: context.sourceIp }),
      ...(context.userAgent === undefined ? {} : { userAgent: context.userAgent }),
      latencyMs: Math.max(0, this.#now() - started),
      ...(identity === undefined ? {} : { details: { roles: identity.roles.join(' ') } }),
    });
  }

  async #complete(input: { code: string; state: string; iss?: string | undefined }): Promise<OidcIdentity> {
    if (typeof input.state !== 'string' || !STATE_PATTERN.test(input.state)) {
      throw new OidcError('oidc_login_state_invalid', 'malformed state');
    }
    if (typeof input.code !== 'string' || input.code.length === 0 || input.code.length > MAX_CODE_LENGTH) {
      throw new OidcError('oidc_token_exchange_failed', 'malformed code');
    }
    const pending = await this.#pending.take(input.state, this.#now());
    if (pending === undefined)
      throw new OidcError('oidc_login_state_invalid', 'unknown, used or expired state');
    // RFC 9207: a provider that names itself in the redirect must be the one this login was sent to (mix-up).
    if (input.iss !== undefined && input.iss !== this.config.issuer) {
      throw new OidcError('oidc_idp_error', 'iss parameter mismatch');
    }
    const { metadata } = await this.#load();
    const tokens = await this.#exchange(metadata, input.code, pending.codeVerifier, pending.redirectUri);
    const claims = await this.validateIdToken(tokens.idToken, {
      nonce: pending.nonce,
      accessToken: tokens.accessToken,
    });
    let merged: Record<string, unknown> = claims;
    if (this.config.useUserinfo) {
      if (tokens.accessToken === undefined) throw new OidcError('oidc_userinfo_invalid', 'no access token');
      const userinfo = await this.#userinfo(metadata, tokens.accessToken);
      // OIDC Core §5.3.2: the UserInfo `sub` must be the ID token's, or the response is not about this user.
      if (userinfo['sub'] !== claims.sub) throw new OidcError('oidc_userinfo_invalid', 'sub mismatch');
      merged = { ...userinfo, ...claims };
    }
    return this.identityFromClaims(merged);
  }

  async #exchange(
    metadata: ProviderMetadata,
    code: string,
    codeVerifier: string,
    redirectUri: string,
  ): Promise<{ idToken: string; accessToken: string | undefined }> {
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: codeVerifier,
    });
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const secret = this.config.clientSecret;
    if (this.config.tokenEndpointAuthMethod === 'client_secret_basic' && secret !== undefined) {
      // RFC 6749 §2.3.1: each part form-urlencoded before base64.
      const user = `${encodeURIComponent(this.config.clientId)}:${encodeURIComponent(secret)}`;
      headers['authorization'] = `Basic ${Buffer.from(user).toString('base64')}`;
    } else {
      form.set('client_id', this.config.clientId);
      if (this.config.tokenEndpointAuthMethod === 'client_secret_post' && secret !== undefined) {
        form.set('client_secret', secret);
      }
    }
    const response = await providerRequest(
      metadata.tokenEndpoint,
      { method: 'POST', headers, body: form.toString() },
      { timeoutMs: this.config.requestTimeoutMs, dispatcher: this.#dispatcher },
    );
    const body = response.json;
    if (response.status >= 500) {
      throw new OidcError('oidc_provider_unavailable', `token endpoint answered ${response.status}`);
    }
    if (response.status !== 200 || !isRecord(body)) {
      const error = isRecord(body) && typeof body['error'] === 'string' ? body['error'] : '';
      // Only a well-formed OAuth error code goes into the reason; anything else could echo request data.
      const code = /^[a-z_]{1,64}$/.test(error) ? error : 'unknown';
      throw new OidcError('oidc_token_exchange_failed', `token endpoint ${response.status} ${code}`);
    }
    const idToken = body['id_token'];
    if (typeof idToken !== 'string' || idToken.length > MAX_TOKEN_LENGTH) {
      throw new OidcError('oidc_token_exchange_failed', 'no id_token in the token response');
    }
    const accessToken = body['access_token'];
    if (
      accessToken !== undefined &&
      (typeof accessToken !== 'string' || accessToken.length > MAX_TOKEN_LENGTH)
    ) {
      throw new OidcError('oidc_token_exchange_failed', 'malformed access_token');
    }
    const tokenType = body['token_type'];
    if (
      accessToken !== undefined &&
      (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer')
    ) {
      throw new OidcError('oidc_token_exchange_failed', 'unsupported token_type');
    }
    return { idToken, accessToken };
  }

  async #userinfo(metadata: ProviderMetadata, accessToken: string): Promise<Record<string, unknown>> {
    const endpoint = metadata.userinfoEndpoint;
    if (endpoint === undefined) throw new OidcError('oidc_userinfo_invalid', 'no userinfo endpoint');
    const response = await providerRequest(
      endpoint,
      { method: 'GET', headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } },
      { timeoutMs: this.config.requestTimeoutMs, dispatcher: this.#dispatcher },
    );
    if (response.status >= 500)
      throw new OidcError('oidc_provider_unavailable', `userinfo ${response.status}`);
    if (response.status !== 200 || !isRecord(response.json)) {
      throw new OidcError('oidc_userinfo_invalid', `userinfo ${response.status}`);
    }
    return response.json;
  }

  /**
   * Validates an ID token (OIDC Core §3.1.3.7): signature by a key of the provider's JWKS with an allowed
   * asymmetric algorithm, `iss`, `aud` containing the client id, `azp` when there are several audiences (or
   * when present), `exp`/`iat` with the configured skew, `nonce`, `at_hash` when both it and the access token
   * are there, and `auth_time` when `max_age` was requested.
   */
  async validateIdToken(
    idToken: string,
    expected: { nonce: string; accessToken?: string | undefined },
  ): Promise<JWTPayload & { sub: string }> {
    const { jwks } = await this.#load();
    const now = this.#now();
    let payload: JWTPayload;
    let alg: string;
    try {
      if (typeof idToken !== 'string' || idToken.length > MAX_TOKEN_LENGTH)
        throw new joseErrors.JWTInvalid('size');
      const verified = await jwtVerify(idToken, jwks, {
        issuer: this.config.issuer,
        audience: this.config.clientId,
        algorithms: [...this.config.algorithms],
        clockTolerance: this.config.clockSkewSeconds,
        currentDate: new Date(now),
        requiredClaims: ['sub', 'iat', 'exp'],
      });
      payload = verified.payload;
      alg = verified.protectedHeader.alg;
    } catch (err) {
      if (isTransportFailure(err)) {
        throw new OidcError('oidc_provider_unavailable', 'JWKS unavailable', { cause: err });
      }
      throw new OidcError('oidc_id_token_invalid', joseReason(err), { cause: err });
    }
    const fail = (reason: string): never => {
      throw new OidcError('oidc_id_token_invalid', reason);
    };
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255) fail('sub');
    if (typeof payload.iat !== 'number' || payload.iat * 1000 > now + this.config.clockSkewSeconds * 1000) {
      fail('iat');
    }
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    const azp = payload['azp'];
    if ((audiences.length > 1 || azp !== undefined) && azp !== this.config.clientId) fail('azp');
    const nonce = payload['nonce'];
    if (typeof nonce !== 'string' || !equalStrings(nonce, expected.nonce)) fail('nonce');
    const claimedAtHash = payload['at_hash'];
    if (claimedAtHash !== undefined && expected.accessToken !== undefined) {
      const computed = atHash(expected.accessToken, alg);
      if (
        typeof claimedAtHash !== 'string' ||
        computed === undefined ||
        !equalStrings(claimedAtHash, computed)
      ) {
        fail('at_hash');
      }
    }
    const authTime = payload['auth_time'];
    if (authTime !== undefined && (typeof authTime !== 'number' || !Number.isFinite(authTime)))
      fail('auth_time');
    if (this.config.maxAgeSeconds !== undefined) {
      if (typeof authTime !== 'number') fail('auth_time');
      else if ((authTime + this.config.maxAgeSeconds + this.config.clockSkewSeconds) * 1000 < now)
        fail('max_age');
    }
    return payload as JWTPayload & { sub: string };
  }

  /**
   * Validates a JWT access token (RFC 9068) issued by the provider for Warden's API: signature via the JWKS,
   * `typ` (so that an ID token cannot be replayed as an access token), `iss`, `aud` = the configured audience,
   * `exp`/`iat`.
   */
  async validateAccessToken(token: string): Promise<ValidatedAccessToken> {
    const expected = this.config.accessToken;
    if (expected === undefined)
      throw new OidcError('oidc_config_invalid', 'access token validation not configured');
    const { jwks } = await this.#load();
    let payload: JWTPayload;
    try {
      if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH)
        throw new joseErrors.JWTInvalid('size');
      const verified = await jwtVerify(token, jwks, {
        issuer: this.config.issuer,
        audience: expected.audience,
        algorithms: [...this.config.algorithms],
        clockTolerance: this.config.clockSkewSeconds,
        currentDate: new Date(this.#now()),
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      const typ = verified.protectedHeader.typ?.toLowerCase();
      if (typ === undefined || !expected.types.some((t) => t.toLowerCase() === typ)) {
        throw new OidcError('oidc_access_token_invalid', 'typ');
      }
      payload = verified.payload;
    } catch (err) {
      if (err instanceof OidcError) throw err;
      if (isTransportFailure(err)) {
        throw new OidcError('oidc_provider_unavailable', 'JWKS unavailable', { cause: err });
      }
      throw new OidcError('oidc_access_token_invalid', joseReason(err), { cause: err });
    }
    const scope = payload['scope'];
    if (scope !== undefined && typeof scope !== 'string')
      throw new OidcError('oidc_access_token_invalid', 'scope');
    const clientId = payload['client_id'];
    return {
      subject: payload.sub as string,
      ...(typeof clientId === 'string' ? { clientId } : {}),
      scopes: scope === undefined ? [] : scope.split(' ').filter((s) => s !== ''),
      expiresAt: (payload.exp as number) * 1000,
      claims: payload,
    };
  }

  /** Maps validated claims to an identity: groups from the configured claim, roles from the mapping table. */
  identityFromClaims(claims: Record<string, unknown>): OidcIdentity {
    const subject = claims['sub'];
    if (typeof subject !== 'string' || subject.length === 0)
      throw new OidcError('oidc_claims_invalid', 'sub');
    let node: unknown = claims;
    for (const segment of this.config.groupsClaim) {
      node = isRecord(node) && Object.hasOwn(node, segment) ? node[segment] : undefined;
    }
    const groups = stringList(node, 'groups');
    const roles = [...new Set(groups.flatMap((g) => this.config.roleMapping.get(g) ?? []))].sort();
    if (roles.length === 0 && this.config.denyWhenNoRole)
      throw new OidcError('oidc_no_role', 'no mapped role');
    const email = optionalString(claims, 'email');
    const emailVerified = claims['email_verified'];
    const name = optionalString(claims, 'name');
    const acr = optionalString(claims, 'acr');
    const authTime = claims['auth_time'];
    return {
      issuer: this.config.issuer,
      subject,
      ...(email === undefined ? {} : { email }),
      ...(typeof emailVerified === 'boolean' ? { emailVerified } : {}),
      ...(name === undefined ? {} : { name }),
      groups,
      roles,
      amr: stringList(claims['amr'], 'amr'),
      ...(acr === undefined ? {} : { acr }),
      ...(typeof authTime === 'number' ? { authTime: Math.trunc(authTime * 1000) } : {}),
    };
  }
}
