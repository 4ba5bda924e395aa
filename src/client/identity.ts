import { createPrivateKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type {
  ApiKeyInfo,
  ClientAuthMethod,
  CreateServiceAccountInput,
  CreateUserInput,
  NewApiKeyInput,
  ServiceAccountPatch,
  ServiceAccountRecord,
  SessionTokens,
  TokenResponse,
  UserPatch,
  UserRecord,
} from '../identity/index.ts';
import { KmsClientError } from './errors.ts';
import type { WardenHttp } from './http.ts';

/**
 * Warden's identity API (`/v1/auth/...`, `/v1/identities/...`, `/oauth/...`) and the token providers that keep a
 * `WardenHttp` authenticated: client credentials for services, a rotating refresh token for login sessions.
 */

/** The public OAuth client of Warden's CLI and console (login sessions refresh and revoke as this client). */
export const PUBLIC_CLIENT_ID = 'warden';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

// ---- shapes (the server's JSON schemas) ---------------------------------------------------------------------

// The token answers are the authorization server's own types: `POST /oauth/token`, and a login session.
export type { SessionTokens, TokenResponse };

// Users, service accounts, API keys and request bodies are the identity service's own types: the routes pass
// the bodies through and answer the records, less the epoch the server keeps to invalidate tokens.
export type UserInfo = Omit<UserRecord, 'epoch'>;
export type { ApiKeyInfo, ClientAuthMethod };
export type ServiceAccountInfo = Omit<ServiceAccountRecord, 'epoch'>;

export interface CreatedApiKey {
  /** The key itself (`wdn_<env>_…`): shown once, never retrievable again. */
  readonly key: string;
  readonly info: ApiKeyInfo;
}

export interface RoleMapping {
  readonly group: string;
  readonly roles: readonly string[];
}

export interface LoginRequest {
  readonly username: string;
  readonly password: string;
  readonly totpCode?: string;
  readonly recoveryCode?: string;
}

export interface BootstrapRequest {
  /** The one-time bootstrap token of the server's data directory. */
  readonly token: string;
  readonly username: string;
  readonly password: string;
  readonly displayName?: string;
}

/** `password` absent: the user has no password (federated login only). */
export type CreateUserRequest = CreateUserInput;
export type UpdateUserRequest = UserPatch;
export type CreateServiceAccountRequest = CreateServiceAccountInput;

export interface CreatedServiceAccount {
  readonly account: ServiceAccountInfo;
  /** client_secret accounts: the secret, shown once. */
  readonly clientSecret?: string;
}

/** Secrets and keys change through their own calls (`rotateClientSecret`), never through an update. */
export type UpdateServiceAccountRequest = Pick<ServiceAccountPatch, 'description' | 'roles' | 'disabled'>;
/** `owner` absent: the caller's own key; `ttlSeconds` 60 s to 366 days, default 90 days. */
export type CreateApiKeyRequest = NewApiKeyInput;

/** RFC 7662 introspection: `{active:false}` or the token's claims. */
export interface Introspection {
  readonly active: boolean;
  readonly [claim: string]: unknown;
}

/**
 * How a confidential client authenticates at the token, revocation and introspection endpoints: a client secret
 * (HTTP Basic by default, or in the form), a private key (RFC 7523 `private_key_jwt`), or `tls` (RFC 8705
 * `tls_client_auth`: the client certificate configured on the `WardenHttp`).
 */
export type ClientCredentials =
  | {
      readonly clientId: string;
      readonly clientSecret: string;
      readonly method?: 'client_secret_basic' | 'client_secret_post';
    }
  | {
      readonly clientId: string;
      /** PKCS#8 PEM or a private `KeyObject`: EC P-256/P-384, Ed25519, or RSA (2048 bits or more). */
      readonly privateKey: string | KeyObject;
      /** Default from the key: ES256, ES384, EdDSA, or RS256 for RSA. */
      readonly algorithm?: string;
      readonly keyId?: string;
    }
  | { readonly clientId: string; readonly tls: true };

// ---- the client ---------------------------------------------------------------------------------------------

const enc = encodeURIComponent;

/** Warden's identity API. Calls that authenticate themselves (login, bootstrap, OAuth) send no bearer token. */
export class IdentityClient {
  readonly #http: WardenHttp;
  #metadata: Promise<Record<string, unknown>> | undefined;

  constructor(http: WardenHttp) {
    this.#http = http;
  }

  /** A list route's `items`. */
  async #items<T>(path: string): Promise<T[]> {
    return (await this.#http.json<{ items: T[] }>('GET', path)).items;
  }

  // ---- login, bootstrap, self-service -------------------------------------------------------------------

  /** Local login. A user with MFA and no second factor gets `KmsClientError` code `mfa_required` (401). */
  async login(request: LoginRequest): Promise<SessionTokens> {
    return (await this.#http.request<SessionTokens>('POST', '/v1/auth/login', request, { anonymous: true }))
      .body;
  }

  /** Redeems the one-time bootstrap token: creates the first administrator, who must then enrol MFA. */
  async redeemBootstrap(request: BootstrapRequest): Promise<UserInfo> {
    return (await this.#http.request<UserInfo>('POST', '/v1/auth/bootstrap', request, { anonymous: true }))
      .body;
  }

  /** Starts TOTP enrolment for the caller: the secret and its `otpauth://` URI, shown once. */
  async beginTotpEnrolment(): Promise<{ secret: string; uri: string }> {
    return this.#http.json('POST', '/v1/auth/mfa/totp');
  }

  /** Confirms TOTP enrolment with a first code; returns the recovery codes, shown once. */
  async confirmTotpEnrolment(code: string): Promise<{ recoveryCodes: string[] }> {
    return this.#http.json('POST', '/v1/auth/mfa/totp/verify', { code });
  }

  async listOwnApiKeys(): Promise<ApiKeyInfo[]> {
    return this.#items<ApiKeyInfo>('/v1/auth/api-keys');
  }

  /** An API key for the caller (not callable with an API key). */
  async createOwnApiKey(request: Omit<CreateApiKeyRequest, 'owner'>): Promise<CreatedApiKey> {
    return this.#http.json('POST', '/v1/auth/api-keys', request);
  }

  async revokeOwnApiKey(id: string): Promise<void> {
    await this.#http.request('DELETE', `/v1/auth/api-keys/${enc(id)}`);
  }

  // ---- users ----------------------------------------------------------------------------------------------

  async listUsers(): Promise<UserInfo[]> {
    return this.#items<UserInfo>('/v1/identities/users');
  }

  async createUser(request: CreateUserRequest): Promise<UserInfo> {
    return this.#http.json('POST', '/v1/identities/users', request);
  }

  async getUser(username: string): Promise<UserInfo> {
    return this.#http.json('GET', `/v1/identities/users/${enc(username)}`);
  }

  /** Disabling ends every live token of the user at once; re-enabling does not revive them. */
  async updateUser(username: string, request: UpdateUserRequest): Promise<UserInfo> {
    return this.#http.json('PATCH', `/v1/identities/users/${enc(username)}`, request);
  }

  /** Sets a user's password (ends their sessions). */
  async setPassword(username: string, password: string): Promise<void> {
    await this.#http.request('POST', `/v1/identities/users/${enc(username)}/password`, { password });
  }

  /** Removes a user's MFA (lost device); ends their sessions. */
  async resetMfa(username: string): Promise<void> {
    await this.#http.request('POST', `/v1/identities/users/${enc(username)}/mfa/reset`);
  }

  async deleteUser(username: string): Promise<void> {
    await this.#http.request('DELETE', `/v1/identities/users/${enc(username)}`);
  }

  // ---- service accounts -----------------------------------------------------------------------------------

  async listServiceAccounts(): Promise<ServiceAccountInfo[]> {
    return this.#items<ServiceAccountInfo>('/v1/identities/service-accounts');
  }

  async createServiceAccount(request: CreateServiceAccountRequest): Promise<CreatedServiceAccount> {
    return this.#http.json('POST', '/v1/identities/service-accounts', request);
  }

  async getServiceAccount(clientId: string): Promise<ServiceAccountInfo> {
    return this.#http.json('GET', `/v1/identities/service-accounts/${enc(clientId)}`);
  }

  async updateServiceAccount(
    clientId: string,
    request: UpdateServiceAccountRequest,
  ): Promise<ServiceAccountInfo> {
    return this.#http.json('PATCH', `/v1/identities/service-accounts/${enc(clientId)}`, request);
  }

  /** A new client secret (shown once); tokens issued under the old one stop working. */
  async rotateClientSecret(clientId: string): Promise<{ clientSecret: string }> {
    return this.#http.json('POST', `/v1/identities/service-accounts/${enc(clientId)}/secret`);
  }

  async deleteServiceAccount(clientId: string): Promise<void> {
    await this.#http.request('DELETE', `/v1/identities/service-accounts/${enc(clientId)}`);
  }

  // ---- API keys (administration) --------------------------------------------------------------------------

  async listApiKeys(owner?: string): Promise<ApiKeyInfo[]> {
    const query = owner === undefined ? '' : `?owner=${enc(owner)}`;
    return this.#items<ApiKeyInfo>(`/v1/identities/api-keys${query}`);
  }

  async createApiKey(request: CreateApiKeyRequest): Promise<CreatedApiKey> {
    return this.#http.json('POST', '/v1/identities/api-keys', request);
  }

  async getApiKey(id: string): Promise<ApiKeyInfo> {
    return this.#http.json('GET', `/v1/identities/api-keys/${enc(id)}`);
  }

  async revokeApiKey(id: string): Promise<void> {
    await this.#http.request('DELETE', `/v1/identities/api-keys/${enc(id)}`);
  }

  // ---- role mappings --------------------------------------------------------------------------------------

  async listRoleMappings(): Promise<RoleMapping[]> {
    return this.#items<RoleMapping>('/v1/identities/role-mappings');
  }

  /** Maps an IdP group to Warden roles (replacing its previous mapping). */
  async putRoleMapping(group: string, roles: readonly string[]): Promise<void> {
    await this.#http.request('PUT', `/v1/identities/role-mappings/${enc(group)}`, { roles });
  }

  async deleteRoleMapping(group: string): Promise<void> {
    await this.#http.request('DELETE', `/v1/identities/role-mappings/${enc(group)}`);
  }

  // ---- OAuth ----------------------------------------------------------------------------------------------

  /** RFC 8414 metadata (cached for the life of this client). */
  async metadata(): Promise<Record<string, unknown>> {
    this.#metadata ??= this.#http
      .request('GET', '/.well-known/oauth-authorization-server', undefined, { anonymous: true })
      .then((r) => r.body);
    try {
      return await this.#metadata;
    } catch (err) {
      this.#metadata = undefined;
      throw err;
    }
  }

  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return (
      await this.#http.request<{ keys: Record<string, unknown>[] }>(
        'GET',
        '/.well-known/jwks.json',
        undefined,
        {
          anonymous: true,
        },
      )
    ).body;
  }

  /** `grant_type=client_credentials`; `scope`: a subset of the client's roles (default all of them). */
  async clientCredentials(
    credentials: ClientCredentials,
    scope?: string | readonly string[],
  ): Promise<TokenResponse> {
    const form: Record<string, string> = { grant_type: 'client_credentials' };
    if (scope !== undefined) form.scope = typeof scope === 'string' ? scope : scope.join(' ');
    return this.#oauth<TokenResponse>('/oauth/token', form, credentials);
  }

  /**
   * `grant_type=refresh_token`. The presented refresh token is spent: store the new one from the answer (presenting
   * a spent one again revokes the whole session). Login sessions refresh as the public client (the default).
   */
  async refresh(refreshToken: string, credentials?: ClientCredentials): Promise<TokenResponse> {
    return this.#oauth<TokenResponse>(
      '/oauth/token',
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      credentials,
    );
  }

  /**
   * RFC 7009: a refresh token ends its whole session (and the session's access tokens); an access token is
   * denied until it expires. Succeeds whether or not the server knew the token.
   */
  async revoke(
    token: string,
    options: { credentials?: ClientCredentials; hint?: 'access_token' | 'refresh_token' } = {},
  ): Promise<void> {
    const form: Record<string, string> = { token };
    if (options.hint !== undefined) form.token_type_hint = options.hint;
    await this.#oauth('/oauth/revoke', form, options.credentials);
  }

  /** RFC 7662, for confidential clients: a client sees its own tokens, an `admin`/`security-admin` one all. */
  async introspect(token: string, credentials: ClientCredentials): Promise<Introspection> {
    return this.#oauth<Introspection>('/oauth/introspect', { token }, credentials);
  }

  /** The URL a client assertion names as its audience: the server's token endpoint. */
  async tokenEndpoint(): Promise<string> {
    const endpoint = (await this.metadata()).token_endpoint;
    if (typeof endpoint !== 'string') {
      throw new KmsClientError('invalid_response', 200, 'the server metadata has no token_endpoint');
    }
    return endpoint;
  }

  async #oauth<T>(path: string, form: Record<string, string>, credentials?: ClientCredentials): Promise<T> {
    const headers: Record<string, string> = {};
    const body = { ...form };
    if (credentials === undefined) {
      body.client_id = PUBLIC_CLIENT_ID;
    } else if ('clientSecret' in credentials) {
      if (credentials.method === 'client_secret_post') {
        body.client_id = credentials.clientId;
        body.client_secret = credentials.clientSecret;
      } else {
        // RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding.
        const pair = `${formEncode(credentials.clientId)}:${formEncode(credentials.clientSecret)}`;
        headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
      }
    } else if ('privateKey' in credentials) {
      body.client_id = credentials.clientId;
      body.client_assertion_type = CLIENT_ASSERTION_TYPE;
      body.client_assertion = await clientAssertion(credentials, await this.tokenEndpoint());
    } else {
      body.client_id = credentials.clientId;
    }
    return (await this.#http.request<T>('POST', path, body, { form: true, anonymous: true, headers })).body;
  }
}

function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

/** RFC 7523 client assertion: iss = sub = client id, aud = the token endpoint, random jti, 60 s lifetime. */
async function clientAssertion(
  credentials: Extract<ClientCredentials, { privateKey: unknown }>,
  audience: string,
): Promise<string> {
  let key: KeyObject;
  try {
    key =
      typeof credentials.privateKey === 'string'
        ? createPrivateKey({ key: credentials.privateKey, format: 'pem' })
        : credentials.privateKey;
  } catch {
    throw new KmsClientError('invalid_options', 0, 'the private key is not a PKCS#8 PEM private key');
  }
  if (key.type !== 'private') throw new KmsClientError('invalid_options', 0, 'a private key is required');
  const alg = credentials.algorithm ?? algorithmOf(key);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg, ...(credentials.keyId === undefined ? {} : { kid: credentials.keyId }) })
    .setIssuer(credentials.clientId)
    .setSubject(credentials.clientId)
    .setAudience(audience)
    .setJti(randomBytes(16).toString('base64url'))
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(key);
}

function algorithmOf(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'rsa') return 'RS256';
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
  }
  throw new KmsClientError(
    'invalid_options',
    0,
    'unsupported private key type (EC P-256/P-384, Ed25519, RSA)',
  );
}

// ---- token providers ----------------------------------------------------------------------------------------

/**
 * A failure to obtain an access token (client credentials refused, session revoked or expired, principal
 * disabled). `code` is the server's OAuth error (`invalid_client`, `invalid_grant`, ...) or the transport's;
 * it is a `KmsClientError`, so a `WardenHttp` call whose token provider fails rejects with it.
 */
export class TokenProviderError extends KmsClientError {
  constructor(code: string, status: number, message: string) {
    super(code, status, message);
    this.name = 'TokenProviderError';
  }
}

/** A `WardenHttp` `token` option that renews its token itself. */
export interface TokenProvider {
  (): Promise<string>;
  /** Forgets the cached token: the next call fetches a new one (e.g. after a 401). */
  invalidate(): void;
}

interface CachedToken {
  readonly token: string;
  /** Epoch ms at which the token expires. */
  readonly expiresAt: number;
  /** Epoch ms from which a new one is fetched. */
  readonly renewAt: number;
}

const DEFAULT_RENEW_BEFORE_SECONDS = 60;

/**
 * Caches one token and renews it `renewBeforeSeconds` before expiry (at most half its lifetime before, so a
 * short-lived token is not renewed on every call). Concurrent callers share one fetch. A transient failure
 * (no answer, 5xx) while the cached token is still valid returns that token; anything else throws a
 * `TokenProviderError` and drops the cache.
 */
function renewingProvider(
  fetchToken: () => Promise<{ token: string; expiresIn: number }>,
  now: () => number,
  renewBeforeSeconds: number,
  initial?: CachedToken,
): TokenProvider {
  let cached = initial;
  let pending: Promise<CachedToken> | undefined;
  const renew = (): Promise<CachedToken> => {
    pending ??= (async () => {
      try {
        const started = now();
        const { token, expiresIn } = await fetchToken();
        const lifetime = Math.max(0, expiresIn) * 1000;
        const before = Math.min(renewBeforeSeconds * 1000, lifetime / 2);
        cached = { token, expiresAt: started + lifetime, renewAt: started + lifetime - before };
        return cached;
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
  const provider = async (): Promise<string> => {
    const current = cached;
    if (current !== undefined && now() < current.renewAt) return current.token;
    try {
      return (await renew()).token;
    } catch (err) {
      const e = err instanceof KmsClientError ? err : undefined;
      const transient = e !== undefined && (e.status === 0 || e.status >= 500);
      if (transient && current !== undefined && now() < current.expiresAt && cached === current) {
        return current.token;
      }
      if (cached === current) cached = undefined;
      if (e === undefined) throw err;
      throw e instanceof TokenProviderError ? e : new TokenProviderError(e.code, e.status, e.message);
    }
  };
  return Object.assign(provider, {
    invalidate: () => {
      cached = undefined;
    },
  });
}

export interface ClientCredentialsProviderOptions {
  /** Transport to the Warden server (its own token, if any, is not sent to the token endpoint). */
  readonly http: WardenHttp;
  readonly clientId: string;
  /** Exactly one of `clientSecret`, `privateKey` (private_key_jwt) or `tls` (the transport's client certificate). */
  readonly clientSecret?: string;
  readonly privateKey?: string | KeyObject;
  readonly algorithm?: string;
  readonly keyId?: string;
  readonly tls?: boolean;
  /** Roles to ask for (a subset of the account's); default all of them. */
  readonly scope?: string | readonly string[];
  /** Renew this long before expiry (default 60 s, at most half the token's lifetime). */
  readonly renewBeforeSeconds?: number;
  /** Clock in epoch ms (tests). */
  readonly now?: () => number;
}

/**
 * A `WardenHttp` token provider for a service account: OAuth client credentials, fetched on first use and
 * renewed before expiry, one fetch shared by concurrent callers.
 *
 *   const http = new WardenHttp({ address, ca, token: clientCredentialsTokenProvider({ http: tokenHttp, clientId, clientSecret }) });
 */
export function clientCredentialsTokenProvider(options: ClientCredentialsProviderOptions): TokenProvider {
  const methods = [
    options.clientSecret !== undefined,
    options.privateKey !== undefined,
    options.tls === true,
  ].filter(Boolean).length;
  if (methods !== 1) {
    throw new KmsClientError('invalid_options', 0, 'give exactly one of clientSecret, privateKey or tls');
  }
  const credentials: ClientCredentials =
    options.clientSecret !== undefined
      ? { clientId: options.clientId, clientSecret: options.clientSecret }
      : options.privateKey !== undefined
        ? {
            clientId: options.clientId,
            privateKey: options.privateKey,
            ...(options.algorithm === undefined ? {} : { algorithm: options.algorithm }),
            ...(options.keyId === undefined ? {} : { keyId: options.keyId }),
          }
        : { clientId: options.clientId, tls: true };
  const client = new IdentityClient(options.http);
  return renewingProvider(
    async () => {
      const response = await client.clientCredentials(credentials, options.scope);
      return { token: response.access_token, expiresIn: response.expires_in };
    },
    options.now ?? Date.now,
    options.renewBeforeSeconds ?? DEFAULT_RENEW_BEFORE_SECONDS,
  );
}

/** A login session as a client keeps it (the CLI's session file holds this plus the server address). */
export interface Session {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** Epoch ms at which the access token expires. */
  readonly expiresAt: number;
  readonly scope: string;
}

/** A session from the server's token answer, timed from `now` (epoch ms). */
export function sessionFrom(tokens: TokenResponse, now: number = Date.now()): Session {
  if (tokens.refresh_token === undefined) {
    throw new KmsClientError('invalid_response', 200, 'the server returned no refresh token');
  }
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    expiresAt: now + tokens.expires_in * 1000,
    scope: tokens.scope,
  };
}

export interface SessionProviderOptions {
  /** Transport to the Warden server that issued the session. */
  readonly http: WardenHttp;
  /**
   * Called with every renewed session before its access token is used. Refresh tokens rotate: the previous one
   * is spent, so persist this one (presenting a spent refresh token again revokes the session). A rejection
   * fails the call.
   */
  readonly onRefresh?: (session: Session) => void | Promise<void>;
  readonly renewBeforeSeconds?: number;
  readonly now?: () => number;
}

/**
 * A `WardenHttp` token provider for a login session: uses the access token until shortly before it expires,
 * then the refresh token (as the public `warden` client), keeping the rotated refresh token.
 */
export function sessionTokenProvider(session: Session, options: SessionProviderOptions): TokenProvider {
  const now = options.now ?? Date.now;
  const renewBefore = options.renewBeforeSeconds ?? DEFAULT_RENEW_BEFORE_SECONDS;
  const client = new IdentityClient(options.http);
  let current = session;
  const lifetime = Math.max(0, session.expiresAt - now());
  return renewingProvider(
    async () => {
      const started = now();
      const renewed = sessionFrom(await client.refresh(current.refreshToken), started);
      current = renewed;
      await options.onRefresh?.(renewed);
      return { token: renewed.accessToken, expiresIn: (renewed.expiresAt - started) / 1000 };
    },
    now,
    renewBefore,
    {
      token: session.accessToken,
      expiresAt: session.expiresAt,
      renewAt: session.expiresAt - Math.min(renewBefore * 1000, lifetime / 2),
    },
  );
}
