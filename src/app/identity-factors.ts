import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { inspect } from 'node:util';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditHasher, AuditRecorder } from '../audit/index.ts';
import {
  DEFAULT_MFA_AMR_VALUES,
  GROUP_PATTERN,
  IdentityAuditUnavailableError,
  IdentityError,
  IdentityExistsError,
  OidcError,
  OidcRelyingParty,
  ROLE_PATTERN,
  SqlWebAuthnCredentialStore,
  USERNAME_PATTERN,
  WebAuthnError,
  WebAuthnService,
  loadOidcClientSecret,
  mfaAgeSeconds,
  oidcMfaAt,
  parsePrincipalId,
  resolveOidcConfig,
} from '../identity/index.ts';
import type {
  IdentityService,
  OidcConfig,
  OidcIdentity,
  OidcRequestContext,
  TokenEndpointAuthMethod,
  UserRecord,
  UserVerificationPolicy,
  WebAuthnAuthenticationResult,
  WebAuthnConfig,
  WebAuthnRequestContext,
  WebAuthnSchema,
} from '../identity/index.ts';
import type { Principal } from '../kms/index.ts';
import { authOidcRoutes, webauthnRoutes } from '../server/index.ts';
import type { LoginSession } from '../server/index.ts';
import { openStore } from '../store/index.ts';
import type { Store, StoreConfig } from '../store/index.ts';
import type { IdentityRuntime } from './identity.ts';

/**
 * The second half of Warden's identity: login through the enterprise OpenID provider and security keys
 * (WebAuthn) as a second factor, wired onto the identity service. Configured by the `identityFactors` section of
 * the config file and `WARDEN_OIDC_*` / `WARDEN_WEBAUTHN*` variables (docs/identity-oidc-webauthn.md).
 */

/** A secret read from the environment: never serialised or printed with the configuration it belongs to. */
export class SecretText {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'SecretText([redacted])';
  }
}

export interface OidcFactorConfig {
  readonly issuer: string;
  readonly clientId: string;
  /** The client secret: a 0600 file, or the value of WARDEN_OIDC_CLIENT_SECRET. Absent: a public client. */
  readonly clientSecret?: { readonly file: string } | SecretText;
  readonly tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  readonly redirectUris: readonly string[];
  readonly loopbackRedirectPaths?: readonly string[];
  readonly scopes?: readonly string[];
  readonly groupsClaim?: string;
  /** IdP group → Warden roles (each a Warden role name). */
  readonly roleMappings: Readonly<Record<string, readonly string[]>>;
  readonly denyWhenNoRole?: boolean;
  readonly maxAgeSeconds?: number;
  readonly useUserinfo?: boolean;
  readonly clockSkewSeconds?: number;
  readonly loginTtlSeconds?: number;
  /** `amr` values that count as a second factor at the provider (default `mfa hwk otp sms sc`). */
  readonly mfaAmrValues: readonly string[];
}

export interface WebAuthnFactorConfig {
  /** Default: the host name of the public URL. */
  readonly rpId?: string;
  readonly rpName: string;
  /** Default: the origin of the public URL. */
  readonly origins?: readonly string[];
  readonly userVerification?: UserVerificationPolicy;
  readonly attestation?: 'none' | 'direct';
  readonly challengeTtlMs?: number;
  /** A user who already has a second factor adds another key only with MFA this recent (default 900 s). */
  readonly addKeyMfaMaxAgeSeconds: number;
}

export interface IdentityFactorsConfig {
  /** Absent: OIDC login is off. */
  readonly oidc?: OidcFactorConfig;
  /** Absent: security keys are off (they are on unless switched off). */
  readonly webauthn?: WebAuthnFactorConfig;
}

export class IdentityFactorsConfigError extends Error {
  override readonly name = 'IdentityFactorsConfigError';
  readonly code = 'config_error';
}

function fail(path: string, reason: string): never {
  throw new IdentityFactorsConfigError(`identityFactors.${path}: ${reason}`);
}

type Json = Record<string, unknown>;

function record(value: unknown, path: string, keys: readonly string[]): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'must be an object');
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) fail(`${path}.${key}`, 'is not a known setting');
  }
  return value as Json;
}

function text(value: unknown, path: string, max = 2048): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || /[\p{Cc}]/u.test(value)) {
    fail(path, `must be a non-empty string of at most ${max} characters`);
  }
  return value;
}

function texts(value: unknown, path: string, max = 64): string[] {
  if (!Array.isArray(value) || value.length > max) fail(path, `must be a list of at most ${max} strings`);
  return (value as unknown[]).map((v, i) => text(v, `${path}[${i}]`));
}

function flag(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') fail(path, 'must be true or false');
  return value;
}

function integer(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(path, `must be an integer from ${min} to ${max}`);
  }
  return value;
}

function optional<T>(value: unknown, parse: (v: unknown) => T): T | undefined {
  return value === undefined ? undefined : parse(value);
}

/** `a,b , c` → [a, b, c]; empty items dropped. */
function list(value: string): string[] {
  return value
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function roleMappingsOf(value: unknown, path: string): Record<string, readonly string[]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'must be an object');
  const raw = value as Json;
  const out: Record<string, readonly string[]> = Object.create(null) as Record<string, readonly string[]>;
  const groups = Object.keys(raw);
  if (groups.length > 1000) fail(path, 'at most 1000 groups');
  for (const group of groups) {
    if (!GROUP_PATTERN.test(group)) fail(path, 'group names are 1 to 256 printable characters');
    const roles = texts(raw[group], `${path}[${JSON.stringify(group)}]`);
    for (const role of roles) {
      if (!ROLE_PATTERN.test(role))
        fail(`${path}[${JSON.stringify(group)}]`, `roles must match ${ROLE_PATTERN.source}`);
    }
    out[group] = Object.freeze([...new Set(roles)]);
  }
  return out;
}

const OIDC_KEYS = [
  'issuer',
  'clientId',
  'clientSecretFile',
  'tokenEndpointAuthMethod',
  'redirectUris',
  'loopbackRedirectPaths',
  'scopes',
  'groupsClaim',
  'roleMappings',
  'denyWhenNoRole',
  'maxAgeSeconds',
  'useUserinfo',
  'clockSkewSeconds',
  'loginTtlSeconds',
  'mfaAmrValues',
] as const;
const WEBAUTHN_KEYS = [
  'enabled',
  'rpId',
  'rpName',
  'origins',
  'userVerification',
  'attestation',
  'challengeTtlMs',
  'addKeyMfaMaxAgeSeconds',
] as const;

function oidcFrom(section: unknown, env: NodeJS.ProcessEnv): OidcFactorConfig | undefined {
  const file = section === undefined ? {} : record(section, 'oidc', OIDC_KEYS);
  const envJson = (name: string): unknown => {
    const value = env[name];
    if (value === undefined) return undefined;
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return fail(`oidc (${name})`, 'must be a JSON object');
    }
  };
  const pick = (key: (typeof OIDC_KEYS)[number], name: string, parse?: (v: string) => unknown): unknown => {
    const value = env[name];
    if (value !== undefined) return parse === undefined ? value : parse(value);
    return file[key];
  };
  const issuer = pick('issuer', 'WARDEN_OIDC_ISSUER');
  const secretValue = env['WARDEN_OIDC_CLIENT_SECRET'];
  const secretFile = pick('clientSecretFile', 'WARDEN_OIDC_CLIENT_SECRET_FILE');
  if (issuer === undefined) {
    const stray = Object.keys(file).length > 0 || Object.keys(env).some((k) => k.startsWith('WARDEN_OIDC_'));
    if (stray) fail('oidc.issuer', 'is required when OIDC is configured');
    return undefined;
  }
  if (secretValue !== undefined && secretFile !== undefined) {
    fail(
      'oidc.clientSecretFile',
      'give the client secret in a file or in WARDEN_OIDC_CLIENT_SECRET, not both',
    );
  }
  if (secretValue !== undefined && (secretValue.length === 0 || /[\r\n]/.test(secretValue))) {
    fail('oidc (WARDEN_OIDC_CLIENT_SECRET)', 'the client secret is empty or spans lines');
  }
  const roleMappings = pick('roleMappings', 'WARDEN_OIDC_ROLE_MAPPINGS', () =>
    envJson('WARDEN_OIDC_ROLE_MAPPINGS'),
  );
  if (roleMappings === undefined) fail('oidc.roleMappings', 'is required (IdP group → Warden roles)');
  const method = file['tokenEndpointAuthMethod'];
  const config: OidcFactorConfig = {
    issuer: text(issuer, 'oidc.issuer'),
    clientId: text(pick('clientId', 'WARDEN_OIDC_CLIENT_ID'), 'oidc.clientId', 512),
    ...(secretValue !== undefined
      ? { clientSecret: new SecretText(secretValue) }
      : secretFile !== undefined
        ? { clientSecret: { file: text(secretFile, 'oidc.clientSecretFile') } }
        : {}),
    ...(method === undefined
      ? {}
      : {
          tokenEndpointAuthMethod: ['client_secret_basic', 'client_secret_post', 'none'].includes(
            method as string,
          )
            ? (method as TokenEndpointAuthMethod)
            : fail('oidc.tokenEndpointAuthMethod', 'must be client_secret_basic, client_secret_post or none'),
        }),
    redirectUris: texts(pick('redirectUris', 'WARDEN_OIDC_REDIRECT_URIS', list) ?? [], 'oidc.redirectUris'),
    ...optionalField(
      'loopbackRedirectPaths',
      pick('loopbackRedirectPaths', 'WARDEN_OIDC_LOOPBACK_PATHS', list),
      (v) => texts(v, 'oidc.loopbackRedirectPaths'),
    ),
    ...optionalField('scopes', pick('scopes', 'WARDEN_OIDC_SCOPES', list), (v) => texts(v, 'oidc.scopes')),
    ...optionalField('groupsClaim', pick('groupsClaim', 'WARDEN_OIDC_GROUPS_CLAIM'), (v) =>
      text(v, 'oidc.groupsClaim', 256),
    ),
    roleMappings: roleMappingsOf(roleMappings, 'oidc.roleMappings'),
    ...optionalField('denyWhenNoRole', file['denyWhenNoRole'], (v) => flag(v, 'oidc.denyWhenNoRole')),
    ...optionalField('maxAgeSeconds', file['maxAgeSeconds'], (v) =>
      integer(v, 'oidc.maxAgeSeconds', 1, 365 * 86400),
    ),
    ...optionalField('useUserinfo', file['useUserinfo'], (v) => flag(v, 'oidc.useUserinfo')),
    ...optionalField('clockSkewSeconds', file['clockSkewSeconds'], (v) =>
      integer(v, 'oidc.clockSkewSeconds', 0, 300),
    ),
    ...optionalField('loginTtlSeconds', file['loginTtlSeconds'], (v) =>
      integer(v, 'oidc.loginTtlSeconds', 1, 3600),
    ),
    mfaAmrValues: optional(file['mfaAmrValues'], (v) => texts(v, 'oidc.mfaAmrValues', 16)) ?? [
      ...DEFAULT_MFA_AMR_VALUES,
    ],
  };
  // The relying party's own checks (URLs, scopes, claim path, algorithms), now rather than at the first login.
  try {
    resolveOidcConfig(relyingPartyConfig(config, config.clientSecret === undefined ? undefined : 'x'));
  } catch (err) {
    if (err instanceof OidcError) fail('oidc', err.reason);
    throw err;
  }
  return config;
}

function optionalField<K extends string, T>(
  key: K,
  value: unknown,
  parse: (v: unknown) => T,
): { [P in K]?: T } {
  return (value === undefined ? {} : { [key]: parse(value) }) as { [P in K]?: T };
}

function webauthnFrom(section: unknown, env: NodeJS.ProcessEnv): WebAuthnFactorConfig | undefined {
  if (section === false) return undefined;
  const file = section === undefined || section === true ? {} : record(section, 'webauthn', WEBAUTHN_KEYS);
  const switch_ = env['WARDEN_WEBAUTHN'];
  if (switch_ !== undefined && !['on', 'off'].includes(switch_))
    fail('webauthn (WARDEN_WEBAUTHN)', 'must be on or off');
  const enabled =
    switch_ === undefined
      ? (optional(file['enabled'], (v) => flag(v, 'webauthn.enabled')) ?? true)
      : switch_ === 'on';
  if (!enabled) return undefined;
  const rpId = env['WARDEN_WEBAUTHN_RP_ID'] ?? file['rpId'];
  const origins =
    env['WARDEN_WEBAUTHN_ORIGINS'] === undefined ? file['origins'] : list(env['WARDEN_WEBAUTHN_ORIGINS']);
  const uv = file['userVerification'];
  const attestation = file['attestation'];
  const config: WebAuthnFactorConfig = {
    rpName: optional(file['rpName'], (v) => text(v, 'webauthn.rpName', 64)) ?? 'Warden',
    ...optionalField('rpId', rpId, (v) => text(v, 'webauthn.rpId', 253)),
    ...optionalField('origins', origins, (v) => texts(v, 'webauthn.origins', 16)),
    ...optionalField('userVerification', uv, (v) =>
      v === 'required' || v === 'preferred' || v === 'discouraged'
        ? v
        : fail('webauthn.userVerification', 'must be required, preferred or discouraged'),
    ),
    ...optionalField('attestation', attestation, (v) =>
      v === 'none' || v === 'direct' ? v : fail('webauthn.attestation', 'must be none or direct'),
    ),
    ...optionalField('challengeTtlMs', file['challengeTtlMs'], (v) =>
      integer(v, 'webauthn.challengeTtlMs', 10_000, 600_000),
    ),
    addKeyMfaMaxAgeSeconds:
      optional(file['addKeyMfaMaxAgeSeconds'], (v) =>
        integer(v, 'webauthn.addKeyMfaMaxAgeSeconds', 1, 86_400),
      ) ?? 900,
  };
  if (config.rpId !== undefined && config.origins !== undefined) {
    // Validates rpId and origins now (the service checks them; the credential store is not consulted here).
    try {
      new WebAuthnService(webauthnServiceConfig(config, 'https://invalid.invalid'), {
        credentials: unusedCredentials,
        audit: { record: () => Promise.resolve(), close: () => Promise.resolve() },
      });
    } catch (err) {
      if (err instanceof WebAuthnError) fail('webauthn', err.message);
      throw err;
    }
  }
  return config;
}

/**
 * The `identityFactors` section of the config file (`undefined` when absent) overlaid by the environment:
 * `WARDEN_OIDC_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET` or `_CLIENT_SECRET_FILE`, `_REDIRECT_URIS`,
 * `_LOOPBACK_PATHS`, `_SCOPES` (comma- or space-separated lists), `_GROUPS_CLAIM`, `_ROLE_MAPPINGS` (JSON), and
 * `WARDEN_WEBAUTHN` (`on`|`off`), `WARDEN_WEBAUTHN_RP_ID`, `WARDEN_WEBAUTHN_ORIGINS`. Throws
 * `IdentityFactorsConfigError` (code `config_error`) for anything invalid; never includes a secret in a message.
 */
export function identityFactorsConfigFrom(file: unknown, env: NodeJS.ProcessEnv): IdentityFactorsConfig {
  const section = file === undefined ? {} : record(file, '', ['oidc', 'webauthn']);
  const oidc = oidcFrom(section['oidc'], env);
  const webauthn = webauthnFrom(section['webauthn'], env);
  return {
    ...(oidc === undefined ? {} : { oidc }),
    ...(webauthn === undefined ? {} : { webauthn }),
  };
}

function relyingPartyConfig(config: OidcFactorConfig, clientSecret: string | undefined): OidcConfig {
  return {
    issuer: config.issuer,
    clientId: config.clientId,
    ...(clientSecret === undefined ? {} : { clientSecret }),
    ...(config.tokenEndpointAuthMethod === undefined
      ? {}
      : { tokenEndpointAuthMethod: config.tokenEndpointAuthMethod }),
    redirectUris: config.redirectUris,
    ...(config.loopbackRedirectPaths === undefined
      ? {}
      : { loopbackRedirectPaths: config.loopbackRedirectPaths }),
    ...(config.scopes === undefined ? {} : { scopes: config.scopes }),
    ...(config.groupsClaim === undefined ? {} : { groupsClaim: config.groupsClaim }),
    roleMapping: config.roleMappings,
    ...(config.denyWhenNoRole === undefined ? {} : { denyWhenNoRole: config.denyWhenNoRole }),
    ...(config.maxAgeSeconds === undefined ? {} : { maxAgeSeconds: config.maxAgeSeconds }),
    ...(config.useUserinfo === undefined ? {} : { useUserinfo: config.useUserinfo }),
    ...(config.clockSkewSeconds === undefined ? {} : { clockSkewSeconds: config.clockSkewSeconds }),
    ...(config.loginTtlSeconds === undefined ? {} : { loginTtlSeconds: config.loginTtlSeconds }),
  };
}

function webauthnServiceConfig(config: WebAuthnFactorConfig, publicUrl: string): WebAuthnConfig {
  const url = new URL(publicUrl);
  return {
    rpId: config.rpId ?? url.hostname,
    rpName: config.rpName,
    origins: config.origins ?? [url.origin],
    ...(config.userVerification === undefined ? {} : { userVerification: config.userVerification }),
    ...(config.attestation === undefined ? {} : { attestation: config.attestation }),
    ...(config.challengeTtlMs === undefined ? {} : { challengeTtlMs: config.challengeTtlMs }),
  };
}

/** Only for validating a configuration: the service's constructor never touches its store. */
const unusedCredentials = {} as ConstructorParameters<typeof WebAuthnService>[1]['credentials'];

// ---- runtime ------------------------------------------------------------------------------------------------

export interface IdentityFactorsOptions {
  readonly identity: IdentityRuntime;
  readonly config: IdentityFactorsConfig;
  /** Where the security keys are kept: its own SQLite file (`webauthn.db`), or Warden's PostgreSQL database. */
  readonly store: StoreConfig;
  readonly audit: AuditRecorder;
  /** The audit log's keyed hasher (available once the KMS is unsealed). */
  readonly hasher: () => Promise<AuditHasher>;
  /** The URL clients reach Warden at; read at the first WebAuthn ceremony (the server listens by then). */
  readonly publicUrl: () => string;
  readonly log: (line: string) => void;
  /** The Cedar check of a self-service request (`selfServiceAuthorizer`): adding a security key is one. */
  readonly authorizeSelf: (request: FastifyRequest, principal: Principal) => Promise<void>;
}

export interface IdentityFactors {
  readonly routes: ((app: FastifyInstance) => void)[];
  /** Whether the principal has a registered security key (the identity service's `otherMfaFactors`). */
  hasSecurityKey(principalId: string): Promise<boolean>;
  close(): Promise<void>;
}

class LoginTicketError extends IdentityError {
  constructor() {
    super('invalid_login_ticket', 401, 'the login is unknown or expired; sign in again');
  }
}

/**
 * Opens OIDC login and security keys as configured and returns their route modules for `createKmsServer`.
 * Objects that need the unsealed KMS (the audit hasher) or the listening address (the WebAuthn origin) are built
 * at their first use; until the identity service is open, the routes answer 503 `sealed` like the rest.
 */
export async function openIdentityFactors(options: IdentityFactorsOptions): Promise<IdentityFactors> {
  const { identity, config, audit, log } = options;
  const routes: ((app: FastifyInstance) => void)[] = [];
  let store: Store<WebAuthnSchema> | undefined;
  let hasSecurityKey = (_principalId: string): Promise<boolean> => Promise.resolve(false);
  try {
    if (config.oidc !== undefined) {
      const oidc = config.oidc;
      const secret =
        oidc.clientSecret === undefined
          ? undefined
          : oidc.clientSecret instanceof SecretText
            ? oidc.clientSecret.reveal()
            : await loadOidcClientSecret({ file: oidc.clientSecret.file });
      const rpConfig = relyingPartyConfig(oidc, secret);
      resolveOidcConfig(rpConfig);
      const relyingParty = lazy(
        async () => new OidcRelyingParty(rpConfig, { audit, auditHasher: await options.hasher() }),
      );
      routes.push((app) => {
        authOidcRoutes(app, {
          oidc: forwardAsync<OidcRelyingParty>(relyingParty),
          issueSession: (claims, context) => oidcSession(identity.current(), claims, context, oidc, audit),
        });
      });
    }
    if (config.webauthn !== undefined) {
      const factor = config.webauthn;
      store = await openStore<WebAuthnSchema>(options.store);
      const credentials = await SqlWebAuthnCredentialStore.open(store);
      hasSecurityKey = async (principalId) => (await credentials.listForUser(principalId)).length > 0;
      const service = lazy(() => {
        try {
          return Promise.resolve(
            new WebAuthnService(webauthnServiceConfig(factor, options.publicUrl()), { credentials, audit }),
          );
        } catch (err) {
          log(`security keys unavailable: ${err instanceof Error ? err.message : String(err)}`);
          return Promise.reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      if (factor.rpId !== undefined && factor.origins !== undefined) await service();
      const webauthn = forwardAsync<WebAuthnService>(service);
      routes.push((app) => {
        webauthnRoutes(app, {
          webauthn,
          userOf: async (request) => {
            const ids = identity.current();
            const { principal, user } = await sessionUser(ids, request);
            await options.authorizeSelf(request, principal);
            const hasFactor =
              user.mfaEnrolled || (await credentials.listForUser(user.principalId)).length > 0;
            // A stolen password must not be enough to add the thief's key next to the owner's second factor.
            if (hasFactor && !recentMfa(principal, factor.addKeyMfaMaxAgeSeconds)) {
              throw new IdentityError(
                'mfa_step_up_required',
                403,
                'pass your second factor again before adding a security key',
              );
            }
            return {
              id: user.principalId,
              name: user.username,
              displayName: user.displayName || user.username,
            };
          },
          pendingLogin: async (ticket) => {
            const verified = await identity.current().oauth.verifyAccessToken(ticket);
            if (!verified.ok || verified.principal.kind !== 'user') return undefined;
            return { userId: verified.principal.id };
          },
          completeLogin: (ticket, result, context) =>
            stepUpSession(identity.current(), ticket, result, context),
        });
      });
    }
  } catch (err) {
    await store?.close();
    throw err;
  }
  return {
    routes,
    hasSecurityKey: (principalId) => hasSecurityKey(principalId),
    async close() {
      await store?.close();
    },
  };
}

/** One instance built on first use; a failed build is retried by the next caller. */
function lazy<T>(build: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= build().catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}

/** A stand-in whose every method awaits the real instance, for route modules registered before it exists. */
function forwardAsync<T extends object>(get: () => Promise<T>): T {
  return new Proxy({} as T, {
    // Not thenable: awaiting the stand-in itself must not call into the instance.
    get: (_target, property) =>
      property === 'then'
        ? undefined
        : async (...args: unknown[]) => {
            const target = await get();
            const method = Reflect.get(target, property, target) as (...a: unknown[]) => unknown;
            return method.apply(target, args);
          },
  });
}

// ---- OIDC ---------------------------------------------------------------------------------------------------

/**
 * `amr` for the session: `fed` (a federated login, which refreshed tokens report), the provider's values, and
 * `mfa` exactly when Warden counts the login as MFA: the token service derives the session's MFA time from it.
 */
function sessionAmr(amr: readonly string[], mfa: boolean): string[] {
  const rest = amr.filter((a) => a !== 'mfa' && a !== 'fed').slice(0, 6);
  return mfa ? ['fed', ...rest, 'mfa'] : ['fed', ...rest];
}

async function oidcSession(
  service: IdentityService,
  claims: OidcIdentity,
  context: OidcRequestContext,
  config: OidcFactorConfig,
  audit: AuditRecorder,
): Promise<LoginSession> {
  const user = await provisionFederatedUser(service, claims, config.roleMappings, context, audit);
  const reported = oidcMfaAt(claims, config.mfaAmrValues);
  // A provider clock ahead of ours must not make an MFA look younger than it is.
  const mfaAt = reported === undefined ? undefined : Math.min(reported, Date.now());
  return service.issueSession(user, {
    amr: sessionAmr(claims.amr, mfaAt !== undefined),
    ...(mfaAt === undefined ? {} : { mfaAt }),
    authMethod: 'oidc',
    ...context,
  });
}

const MAX_DIRECTORY_GROUPS = 64;

/**
 * The user of an OIDC identity, by (issuer, subject): created on the first login, its groups and roles brought
 * in line with the provider's at every login. Roles are those the configured mapping gives the provider's groups.
 */
async function provisionFederatedUser(
  service: IdentityService,
  claims: OidcIdentity,
  mapped: Readonly<Record<string, readonly string[]>>,
  context: OidcRequestContext,
  audit: AuditRecorder,
): Promise<UserRecord> {
  const groups = directoryGroups(claims, mapped);
  const displayName = claims.name?.replace(/[\p{Cc}\p{Cf}]/gu, '').slice(0, 256);
  const input = {
    issuer: claims.issuer,
    subject: claims.subject,
    groups,
    ...(displayName === undefined || displayName === '' ? {} : { displayName }),
  };
  const existing = await service.directory.findFederatedUser(claims.issuer, claims.subject);
  let user: UserRecord;
  if (existing !== undefined) {
    user = await service.upsertFederatedUser({ ...input, username: existing.username });
  } else {
    const candidates = [preferredUsername(claims), fallbackUsername(claims)].filter((u) => u !== undefined);
    user = await createFederated(service, input, candidates);
  }
  const roles = [...new Set(claims.roles)].sort();
  const changed = [...user.roles].sort().join(' ') !== roles.join(' ');
  if (changed) {
    user = await service.directory.updateUser(user.username, { roles });
    service.oauth.invalidate(user.principalId);
  }
  if (existing === undefined || changed) {
    try {
      await audit.record({
        action: 'identity.oidc.provision',
        principal: { id: user.principalId, authMethod: 'oidc' },
        resource: user.principalId,
        outcome: 'success',
        details: { created: existing === undefined, roles: roles.join(' ') },
        ...(context.requestId === undefined ? {} : { requestId: context.requestId }),
        ...(context.sourceIp === undefined ? {} : { sourceIp: context.sourceIp }),
        ...(context.userAgent === undefined ? {} : { userAgent: context.userAgent.slice(0, 256) }),
      });
    } catch {
      throw new IdentityAuditUnavailableError();
    }
  }
  return user;
}

async function createFederated(
  service: IdentityService,
  input: { issuer: string; subject: string; groups: readonly string[]; displayName?: string },
  candidates: readonly string[],
): Promise<UserRecord> {
  for (const username of candidates) {
    try {
      return await service.upsertFederatedUser({ ...input, username });
    } catch (err) {
      if (!(err instanceof IdentityExistsError)) throw err;
      // The same person logging in twice at once: the other login created the user.
      const raced = await service.directory.findFederatedUser(input.issuer, input.subject);
      if (raced !== undefined) return service.upsertFederatedUser({ ...input, username: raced.username });
    }
  }
  throw new IdentityExistsError('user');
}

/** The verified e-mail address as the username, when it is one; never used to link to an existing account. */
function preferredUsername(claims: OidcIdentity): string | undefined {
  if (claims.emailVerified !== true || claims.email === undefined) return undefined;
  const email = claims.email.normalize('NFKC').toLowerCase();
  return USERNAME_PATTERN.test(email) ? email : undefined;
}

/** Stable per (issuer, subject) and free of personal data. */
function fallbackUsername(claims: OidcIdentity): string {
  const digest = createHash('sha256').update(`${claims.issuer}\n${claims.subject}`).digest('hex');
  return `oidc-${digest.slice(0, 24)}`;
}

/**
 * The directory keeps at most 64 groups (Cedar `Group` parents, directory role mappings): those the configured
 * mapping uses first, then the others in the provider's order.
 */
function directoryGroups(
  claims: OidcIdentity,
  mapped: Readonly<Record<string, readonly string[]>>,
): string[] {
  const valid = [...new Set(claims.groups)].filter((g) => GROUP_PATTERN.test(g));
  const used = valid.filter((g) => Object.hasOwn(mapped, g));
  const others = valid.filter((g) => !Object.hasOwn(mapped, g));
  return [...used, ...others].slice(0, MAX_DIRECTORY_GROUPS);
}

// ---- WebAuthn -----------------------------------------------------------------------------------------------

function verifiedClientCertificate(request: FastifyRequest): Buffer | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
  const certificate = socket.getPeerCertificate();
  return Buffer.isBuffer(certificate.raw) && certificate.raw.length > 0 ? certificate.raw : undefined;
}

/** The user behind a request's bearer: a Warden session (JWT), including an MFA-enrolment-only one. */
async function sessionUser(
  service: IdentityService,
  request: FastifyRequest,
): Promise<{ principal: Principal; user: UserRecord }> {
  const userAgent = request.headers['user-agent'];
  const found = await service.authenticateDetailed({
    authorization: request.headers.authorization,
    clientCertificate: verifiedClientCertificate(request),
    sourceIp: request.ip,
    requestId: request.id,
    ...(userAgent === undefined ? {} : { userAgent }),
  });
  // API keys are long-lived automation credentials: a second factor belongs to a person's session.
  if (found === undefined || found.via !== 'jwt' || found.principal.kind !== 'user') {
    throw new IdentityError('unauthenticated', 401, 'a signed-in user session is required');
  }
  const user = await activeUser(service, found.principal.id);
  if (user === undefined)
    throw new IdentityError('unauthenticated', 401, 'a signed-in user session is required');
  return { principal: found.principal, user };
}

async function activeUser(service: IdentityService, principalId: string): Promise<UserRecord | undefined> {
  const parsed = parsePrincipalId(principalId);
  if (parsed?.kind !== 'user') return undefined;
  const user = await service.directory.getUser(parsed.name);
  return user === undefined || user.disabled ? undefined : user;
}

function recentMfa(principal: Principal, maxAgeSeconds: number): boolean {
  const age = mfaAgeSeconds(principal);
  return age !== undefined && age < maxAgeSeconds;
}

/**
 * The session after a security key verified on top of the session in `ticket` (password login, OIDC login or an
 * earlier session, possibly MFA-enrolment-only): the same user, `amr` = first factors + the key's + `mfa`,
 * `mfaAt` = when the key verified.
 */
async function stepUpSession(
  service: IdentityService,
  ticket: string,
  result: WebAuthnAuthenticationResult,
  context: WebAuthnRequestContext,
): Promise<LoginSession> {
  const verified = await service.oauth.verifyAccessToken(ticket);
  if (!verified.ok || verified.principal.id !== result.userId) throw new LoginTicketError();
  const user = await activeUser(service, result.userId);
  if (user === undefined) throw new LoginTicketError();
  const first = (verified.claims.amr ?? []).filter((a) => a !== 'mfa');
  return service.issueSession(user, {
    amr: [...first, ...result.amr, 'mfa'],
    mfaAt: result.mfaAt,
    authMethod: 'webauthn',
    ...context,
  });
}
