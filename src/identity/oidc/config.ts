import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { OidcError } from './errors.ts';

/** How the relying party authenticates to the token endpoint. `none`: a public client (PKCE only). */
export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none';

export interface OidcConfig {
  /** The issuer identifier, exactly as the provider's discovery document and ID tokens state it. */
  readonly issuer: string;
  readonly clientId: string;
  /** Required unless `tokenEndpointAuthMethod` is `none`; see `loadOidcClientSecret`. */
  readonly clientSecret?: string;
  /** Default `client_secret_basic` (or `none` without a secret). */
  readonly tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  /** Redirect URIs registered at the provider (the console's callback). Exact match. */
  readonly redirectUris: readonly string[];
  /**
   * RFC 8252 §7.3 loopback redirects for the CLI: `http://127.0.0.1:<any port><path>` or `http://[::1]:...`,
   * with `path` one of these (default none: loopback redirects refused). The provider must allow them too
   * (a "native" client).
   */
  readonly loopbackRedirectPaths?: readonly string[];
  /** Requested scopes; `openid` is always included. Default `openid email profile`. */
  readonly scopes?: readonly string[];
  /** Claim holding the groups (dotted path for nested claims, e.g. `realm_access.roles`). Default `groups`. */
  readonly groupsClaim?: string;
  /** IdP group → Warden roles. A group absent from the table grants nothing. */
  readonly roleMapping: Readonly<Record<string, readonly string[]>>;
  /** Refuse the login when no role maps (default true). */
  readonly denyWhenNoRole?: boolean;
  /** Accepted ID/access token signature algorithms (asymmetric only). */
  readonly algorithms?: readonly string[];
  /** Tolerated clock difference with the provider, seconds (default 60, at most 300). */
  readonly clockSkewSeconds?: number;
  /** Lifetime of a started login, seconds (default 600). */
  readonly loginTtlSeconds?: number;
  /** Sent as `max_age`: the provider re-authenticates older sessions and must report `auth_time`. */
  readonly maxAgeSeconds?: number;
  /** Also fetch the UserInfo endpoint and merge its claims (providers that keep groups out of the ID token). */
  readonly useUserinfo?: boolean;
  /** Validation of JWT access tokens (RFC 9068) presented to Warden's API. */
  readonly accessToken?: {
    /** Warden's resource identifier, required in `aud`. */
    readonly audience: string;
    /** Accepted `typ` headers (default `at+jwt`, `application/at+jwt`). */
    readonly types?: readonly string[];
  };
  /** Logins in progress held at once (default 10,000); beyond it, new logins are refused until some expire. */
  readonly maxPendingLogins?: number;
  /** Timeout of each request to the provider, milliseconds (default 10,000). */
  readonly requestTimeoutMs?: number;
  /** Minimum interval between JWKS reloads triggered by an unknown `kid`, milliseconds (default 30,000). */
  readonly jwksCooldownMs?: number;
}

export const DEFAULT_OIDC_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

export interface ResolvedOidcConfig {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  readonly redirectUris: readonly string[];
  readonly loopbackRedirectPaths: readonly string[];
  readonly scopes: readonly string[];
  readonly groupsClaim: readonly string[];
  readonly roleMapping: ReadonlyMap<string, readonly string[]>;
  readonly denyWhenNoRole: boolean;
  readonly algorithms: readonly string[];
  readonly clockSkewSeconds: number;
  readonly loginTtlMs: number;
  readonly maxAgeSeconds: number | undefined;
  readonly useUserinfo: boolean;
  readonly accessToken: { readonly audience: string; readonly types: readonly string[] } | undefined;
  readonly maxPendingLogins: number;
  readonly requestTimeoutMs: number;
  readonly jwksCooldownMs: number;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export function isLoopbackHost(hostname: string): boolean {
  if (LOOPBACK_NAMES.has(hostname)) return true;
  return isIP(hostname) === 4 && hostname.startsWith('127.');
}

function invalid(reason: string): never {
  throw new OidcError('oidc_config_invalid', reason);
}

/**
 * An endpoint the relying party talks to: https, or plain http only on a loopback address (a provider run on
 * the same host for development and tests). No credentials or fragments in the URL.
 */
export function checkEndpointUrl(value: unknown, what: string): URL {
  if (typeof value !== 'string') return invalid(`${what} is missing`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return invalid(`${what} is not a URL`);
  }
  if (url.username !== '' || url.password !== '' || url.hash !== '') {
    return invalid(`${what} must not contain credentials or a fragment`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url;
  return invalid(`${what} must use https (plain http only on a loopback address)`);
}

function positiveInt(value: number | undefined, fallback: number, max: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0 || v > max) invalid(`${what} must be an integer from 1 to ${max}`);
  return v;
}

const CLAIM_SEGMENT = /^[A-Za-z0-9_:./-]{1,128}$/;

/** Checks a configuration once, at startup, and fills the defaults. */
export function resolveOidcConfig(config: OidcConfig): ResolvedOidcConfig {
  const issuerUrl = checkEndpointUrl(config.issuer, 'issuer');
  if (issuerUrl.search !== '') invalid('issuer must not have a query');
  if (typeof config.clientId !== 'string' || config.clientId.length === 0 || config.clientId.length > 512) {
    invalid('clientId is required');
  }
  const method =
    config.tokenEndpointAuthMethod ?? (config.clientSecret === undefined ? 'none' : 'client_secret_basic');
  if (!['client_secret_basic', 'client_secret_post', 'none'].includes(method)) {
    invalid('tokenEndpointAuthMethod is not supported');
  }
  if (method !== 'none' && (typeof config.clientSecret !== 'string' || config.clientSecret.length === 0)) {
    invalid('clientSecret is required for a confidential client');
  }
  const redirectUris = config.redirectUris.map((uri) => checkEndpointUrl(uri, 'redirect URI').href);
  const loopbackRedirectPaths = (config.loopbackRedirectPaths ?? []).map((path) => {
    if (!/^\/[A-Za-z0-9._~/-]{0,200}$/.test(path)) invalid('loopback redirect paths must be absolute paths');
    return path;
  });
  if (redirectUris.length === 0 && loopbackRedirectPaths.length === 0)
    invalid('no redirect URI is configured');
  const scopes = [...new Set(['openid', ...(config.scopes ?? ['email', 'profile'])])];
  if (scopes.some((s) => !/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/.test(s))) invalid('a scope is malformed');
  const groupsClaim = (config.groupsClaim ?? 'groups').split('.');
  if (groupsClaim.some((s) => !CLAIM_SEGMENT.test(s) || s === '__proto__'))
    invalid('groupsClaim is malformed');
  const roleMapping = new Map<string, readonly string[]>();
  for (const [group, roles] of Object.entries(config.roleMapping)) {
    const list: unknown = roles;
    if (!Array.isArray(list)) invalid('roleMapping values must be lists of role names');
    const names = (list as unknown[]).filter(
      (r): r is string => typeof r === 'string' && /^[a-z0-9][a-z0-9._-]{0,63}$/.test(r),
    );
    if (names.length !== list.length) invalid('roleMapping values must be lists of role names');
    roleMapping.set(group, Object.freeze(names));
  }
  const algorithms = [...(config.algorithms ?? DEFAULT_OIDC_ALGORITHMS)];
  // Symmetric algorithms would make the client secret a token-signing key; `none` is no signature at all.
  if (algorithms.length === 0 || algorithms.some((a) => a === 'none' || a.startsWith('HS'))) {
    invalid('algorithms must be a non-empty list of asymmetric signature algorithms');
  }
  const clockSkewSeconds = config.clockSkewSeconds ?? 60;
  if (!Number.isSafeInteger(clockSkewSeconds) || clockSkewSeconds < 0 || clockSkewSeconds > 300) {
    invalid('clockSkewSeconds must be an integer from 0 to 300');
  }
  const accessToken =
    config.accessToken === undefined
      ? undefined
      : {
          audience:
            typeof config.accessToken.audience === 'string' && config.accessToken.audience.length > 0
              ? config.accessToken.audience
              : invalid('accessToken.audience is required'),
          types: [...(config.accessToken.types ?? ['at+jwt', 'application/at+jwt'])],
        };
  return Object.freeze({
    issuer: config.issuer,
    clientId: config.clientId,
    clientSecret: method === 'none' ? undefined : config.clientSecret,
    tokenEndpointAuthMethod: method,
    redirectUris,
    loopbackRedirectPaths,
    scopes,
    groupsClaim,
    roleMapping,
    denyWhenNoRole: config.denyWhenNoRole ?? true,
    algorithms,
    clockSkewSeconds,
    loginTtlMs: positiveInt(config.loginTtlSeconds, 600, 3600, 'loginTtlSeconds') * 1000,
    maxAgeSeconds:
      config.maxAgeSeconds === undefined
        ? undefined
        : positiveInt(config.maxAgeSeconds, 0, 365 * 86400, 'maxAgeSeconds'),
    useUserinfo: config.useUserinfo ?? false,
    accessToken,
    maxPendingLogins: positiveInt(config.maxPendingLogins, 10_000, 1_000_000, 'maxPendingLogins'),
    requestTimeoutMs: positiveInt(config.requestTimeoutMs, 10_000, 120_000, 'requestTimeoutMs'),
    jwksCooldownMs: config.jwksCooldownMs ?? 30_000,
  });
}

/**
 * The client secret, from an environment variable or a file (never from the command line). A file must not be
 * readable by group or others; one trailing newline is removed.
 */
export async function loadOidcClientSecret(source: {
  readonly env?: string;
  readonly file?: string;
  readonly environment?: NodeJS.ProcessEnv;
}): Promise<string> {
  if ((source.env === undefined) === (source.file === undefined)) {
    invalid('give exactly one of env or file for the client secret');
  }
  let secret: string | undefined;
  if (source.env !== undefined) {
    secret = (source.environment ?? process.env)[source.env];
    if (secret === undefined) invalid('the client secret environment variable is not set');
  } else if (source.file !== undefined) {
    const info = await stat(source.file).catch((err: unknown) => {
      throw new OidcError('oidc_config_invalid', 'the client secret file cannot be read', { cause: err });
    });
    if ((info.mode & 0o077) !== 0) invalid('the client secret file must not be readable by group or others');
    secret = (await readFile(source.file, 'utf8')).replace(/\r?\n$/, '');
  }
  if (secret === undefined || secret.length === 0 || /[\r\n]/.test(secret))
    invalid('the client secret is empty');
  return secret;
}
