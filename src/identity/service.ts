import { createHash } from 'node:crypto';
import type { AuditEvent, AuditRecorder } from '../audit/index.ts';
import { constantTimeEqual, InvalidInputError, randomBytes, wipe } from '../crypto/index.ts';
import type { MacKey } from '../crypto/index.ts';
import type { KmsService, Principal } from '../kms/index.ts';
import type { Store } from '../store/index.ts';
import {
  AuthThrottle,
  createApiKey as createApiKeyMaterial,
  generateRecoveryCodes,
  generateTotpSecret,
  hashPassword,
  needsRehash,
  PASSWORD_HASH_PARAMS,
  touch,
  totpProvisioningUri,
  totpSecretToBase32,
  verifyApiKey,
  verifyPassword,
  verifyRecoveryCode,
  verifyTotp,
} from './credentials/index.ts';
import type { ApiKeyRecord, PasswordHashParams } from './credentials/index.ts';
import {
  checkClientId,
  checkRoles,
  checkUsername,
  Directory,
  parsePrincipalId,
  USERNAME_PATTERN,
} from './directory.ts';
import type {
  ClientAuthMethod,
  NewUser,
  PrincipalStatus,
  ServiceAccountRecord,
  StoredApiKey,
  UserPatch,
  UserRecord,
} from './directory.ts';
import {
  BootstrapUnavailableError,
  IdentityAuditUnavailableError,
  IdentityError,
  IdentityForbiddenError,
  IdentityNotFoundError,
  InvalidCredentialsError,
  InvalidIdentityRequestError,
  MfaRequiredError,
  ThrottledError,
} from './errors.ts';
import { AuthorizationServer, normalizeDn, PUBLIC_CLIENT_ID } from './oauth.ts';
import type { RequestInfo, SessionOptions, SessionTokens } from './oauth.ts';
import { IDENTITY_MIGRATIONS } from './schema.ts';
import type { IdentityDB } from './schema.ts';
import type { SecretSealer } from './secrets.ts';
import { IDENTITY_SYSTEM_PRINCIPAL, KmsTokenKeys } from './tokens.ts';

/** Local passwords: at least this many characters (NIST SP 800-63B allows 8; Warden guards keys). */
export const MIN_PASSWORD_LENGTH = 12;
const MAX_AUTHORIZATION_LENGTH = 8192;

export interface AuthenticateInput {
  readonly authorization?: string | undefined;
  /** The TLS client certificate (DER), as verified by the TLS layer. */
  readonly clientCertificate?: Buffer | undefined;
  readonly sourceIp: string;
  readonly userAgent?: string | undefined;
  readonly requestId?: string | undefined;
}

export interface Authenticated {
  readonly principal: Principal;
  readonly via: 'jwt' | 'api-key';
  /** A session of a privileged user without MFA: it may only enrol MFA. */
  readonly mfaEnrolmentOnly: boolean;
  /** The API key's id, when authenticated by one. */
  readonly apiKeyId?: string;
}

export interface LoginInput extends RequestInfo {
  readonly username: string;
  readonly password: string;
  readonly totpCode?: string | undefined;
  readonly recoveryCode?: string | undefined;
}

export interface CreateUserInput {
  readonly username: string;
  /** Local users only; absent: the user cannot log in with a password (e.g. federated). */
  readonly password?: string;
  readonly displayName?: string;
  readonly roles?: readonly string[];
  readonly groups?: readonly string[];
}

export interface CreateServiceAccountInput {
  readonly clientId: string;
  readonly authMethod: ClientAuthMethod;
  readonly description?: string;
  readonly roles?: readonly string[];
  /** private_key_jwt: a JWKS document, or one public key in SPKI PEM. */
  readonly jwks?: { keys: Record<string, unknown>[] };
  readonly publicKeyPem?: string;
  /** tls_client_auth: exactly one of these. */
  readonly tlsSubjectDn?: string;
  readonly tlsSpkiSha256?: string;
}

export interface NewApiKeyInput {
  /** Principal id of the owner; default the actor. */
  readonly owner?: string;
  readonly name?: string;
  /** Role names the key carries; it acts with those its owner still holds. */
  readonly scopes: readonly string[];
  readonly ttlSeconds?: number;
}

/** An API key as listed: never the hash. */
export type ApiKeyInfo = Omit<StoredApiKey, 'hash'>;

export interface IdentityServiceOptions {
  /** Warden's main store; `IdentityService.open` applies the `identity/...` migrations. */
  readonly store: Store<IdentityDB>;
  readonly kms: KmsService;
  /** The KMS key that signs access tokens: `ecdsa-p256` (ES256) or `ed25519` (EdDSA). */
  readonly signingKeyName: string;
  /** Server key for keyed hashes (API keys, recovery codes, refresh tokens, client secrets). */
  readonly macKey: MacKey;
  /** Encrypts TOTP seeds (`kmsSecretSealer` or `localSecretSealer`). */
  readonly sealer: SecretSealer;
  readonly audit: AuditRecorder;
  readonly issuer: string;
  readonly audience?: string;
  readonly accessTokenTtlSeconds?: number;
  readonly refreshTokenTtlSeconds?: number;
  readonly sessionMaxSeconds?: number;
  /** The bootstrap admin token (one-time, see `redeemBootstrap`). */
  readonly bootstrapToken?: string;
  /** `env` part of API keys (`wdn_<env>_…`); default `live`. */
  readonly apiKeyEnv?: string;
  readonly throttle?: AuthThrottle;
  /** The principal the service acts as towards the KMS; default `system:identity` with role `key-user`. */
  readonly kmsPrincipal?: Principal;
  /** Password hashing cost (tests lower it); default PASSWORD_HASH_PARAMS. */
  readonly passwordHashParams?: Partial<PasswordHashParams>;
  readonly totpIssuer?: string;
  /**
   * Second factors kept outside the directory (security keys): a user who has one may enrol TOTP only from a
   * session that passed MFA, so a stolen password cannot add the thief's authenticator.
   */
  readonly otherMfaFactors?: (principalId: string) => Promise<boolean>;
  readonly now?: () => number;
}

/**
 * Warden's identity service: the directory, the token service, local login with MFA, API keys, and
 * `authenticate` — the one call the HTTP layer makes per request. Every credential check is constant-time where
 * it compares secrets, throttled per principal and per address, and fails closed; logins, token grants and
 * administrative changes are audited (an audit failure withholds the result).
 */
export class IdentityService {
  readonly directory: Directory;
  readonly oauth: AuthorizationServer;
  readonly throttle: AuthThrottle;
  readonly #mac: MacKey;
  readonly #sealer: SecretSealer;
  readonly #audit: AuditRecorder;
  readonly #bootstrapHash: Buffer | undefined;
  readonly #apiKeyEnv: string;
  readonly #passwordParams: PasswordHashParams;
  readonly #totpIssuer: string;
  readonly #now: () => number;
  readonly #dummyPasswordHash: string;
  readonly #otherMfaFactors: ((principalId: string) => Promise<boolean>) | undefined;

  private constructor(options: IdentityServiceOptions, dummyPasswordHash: string) {
    this.#now = options.now ?? Date.now;
    this.#otherMfaFactors = options.otherMfaFactors;
    this.directory = new Directory(options.store, this.#now);
    this.throttle = options.throttle ?? new AuthThrottle({ now: this.#now });
    this.#mac = options.macKey;
    this.#sealer = options.sealer;
    this.#audit = options.audit;
    this.#apiKeyEnv = options.apiKeyEnv ?? 'live';
    this.#passwordParams = { ...PASSWORD_HASH_PARAMS, ...options.passwordHashParams };
    this.#totpIssuer = options.totpIssuer ?? 'Warden';
    this.#bootstrapHash =
      options.bootstrapToken === undefined
        ? undefined
        : createHash('sha256').update(options.bootstrapToken).digest();
    this.#dummyPasswordHash = dummyPasswordHash;
    this.oauth = new AuthorizationServer({
      directory: this.directory,
      keys: new KmsTokenKeys({
        kms: options.kms,
        keyName: options.signingKeyName,
        principal: options.kmsPrincipal ?? IDENTITY_SYSTEM_PRINCIPAL,
        now: this.#now,
      }),
      macKey: options.macKey,
      audit: options.audit,
      throttle: this.throttle,
      issuer: options.issuer,
      ...(options.audience === undefined ? {} : { audience: options.audience }),
      ...(options.accessTokenTtlSeconds === undefined
        ? {}
        : { accessTokenTtlSeconds: options.accessTokenTtlSeconds }),
      ...(options.refreshTokenTtlSeconds === undefined
        ? {}
        : { refreshTokenTtlSeconds: options.refreshTokenTtlSeconds }),
      ...(options.sessionMaxSeconds === undefined ? {} : { sessionMaxSeconds: options.sessionMaxSeconds }),
      introspectApiKey: (token) => this.#introspectApiKey(token),
      now: this.#now,
    });
  }

  /** Migrates the store (`identity/...`) and builds the service. */
  static async open(options: IdentityServiceOptions): Promise<IdentityService> {
    await options.store.migrate(IDENTITY_MIGRATIONS);
    // Unknown usernames are verified against this, so a login costs one argon2id whether the user exists or not.
    const dummy = await hashPassword(randomBytes(24).toString('base64url'), options.passwordHashParams);
    return new IdentityService(options, dummy);
  }

  // ---- per-request authentication -----------------------------------------------------------------------

  /**
   * The caller behind an `Authorization: Bearer …` header: a Warden access token (JWT) or an API key (`wdn_…`).
   * Undefined for anything that does not verify. Throws ThrottledError when the source address has failed too
   * often, and the store's or KMS's errors when they are unavailable (fail closed).
   */
  async authenticate(input: AuthenticateInput): Promise<Principal | undefined> {
    return (await this.authenticateDetailed(input))?.principal;
  }

  async authenticateDetailed(input: AuthenticateInput): Promise<Authenticated | undefined> {
    const header = input.authorization;
    if (typeof header !== 'string' || header.length > MAX_AUTHORIZATION_LENGTH) return undefined;
    const m = /^Bearer ([\x21-\x7e]+)$/i.exec(header);
    const decision = this.throttle.check({ address: input.sourceIp });
    if (!decision.allowed) throw new ThrottledError(decision.retryAfterSeconds);
    if (m === null) return this.#bearerFailure(input, 'malformed', undefined);
    const token = m[1] ?? '';
    if (token.startsWith('wdn_')) return this.#authenticateApiKey(token, input);
    const verified = await this.oauth.verifyAccessToken(token, {
      clientCertificate: input.clientCertificate,
    });
    if (!verified.ok) return this.#bearerFailure(input, verified.reason, undefined);
    return {
      principal: withRequest(verified.principal, input),
      via: 'jwt',
      mfaEnrolmentOnly: verified.mfaEnrolmentOnly,
    };
  }

  async #authenticateApiKey(token: string, input: AuthenticateInput): Promise<Authenticated | undefined> {
    const active = await this.#activeApiKey(token);
    if (!active.ok) return this.#bearerFailure(input, active.reason, active.keyId);
    const { key, status } = active;
    const principal: Principal = {
      id: key.owner,
      kind: status.kind,
      roles: status.roles.filter((r) => key.scopes.includes(r)),
      authMethod: 'api-key',
      ...(status.kind === 'user' ? { groups: status.groups } : {}),
    };
    return {
      principal: withRequest(principal, input),
      via: 'api-key',
      mfaEnrolmentOnly: false,
      apiKeyId: key.id,
    };
  }

  /**
   * RFC 7662 claims of an active API key for a resource server (the gateway): its owner, the roles it acts with
   * now, the owner's groups. Undefined for anything not active (unknown, revoked, expired, owner disabled).
   * Not throttled here: client authentication at the introspection endpoint already throttles the caller.
   */
  async #introspectApiKey(token: string): Promise<Record<string, unknown> | undefined> {
    const active = await this.#activeApiKey(token);
    if (!active.ok) return undefined;
    const { key, status } = active;
    return {
      active: true,
      token_type: 'api_key',
      sub: key.owner,
      iss: this.oauth.issuer,
      exp: Math.floor(key.expiresAt / 1000),
      roles: status.roles.filter((r) => key.scopes.includes(r)),
      ...(status.kind === 'user' ? { groups: status.groups } : {}),
    };
  }

  /**
   * An API key that verifies (checksum, keyed hash, not revoked or expired) and whose owner is enabled, with the
   * owner's current status; its last use is recorded. Otherwise the reason, for the audit trail.
   */
  async #activeApiKey(
    token: string,
  ): Promise<
    | { ok: true; key: StoredApiKey; status: PrincipalStatus }
    | { ok: false; reason: string; keyId: string | undefined }
  > {
    const now = this.#now();
    let stored: StoredApiKey | undefined;
    const result = await verifyApiKey(
      this.#mac,
      token,
      async (id) => {
        stored = await this.directory.getApiKey(id);
        return stored === undefined ? undefined : toCredentialRecord(stored);
      },
      { now: new Date(now) },
    );
    if (!result.ok || stored === undefined) {
      return {
        ok: false,
        reason: `api_key_${result.ok ? 'unknown' : result.reason}`,
        keyId: result.ok ? undefined : result.id,
      };
    }
    const key: StoredApiKey = stored;
    // Undefined for an owner that does not parse or no longer exists.
    const status = await this.directory.principalStatus(key.owner, await this.directory.roleMappings());
    if (status === undefined || status.disabled) {
      return { ok: false, reason: 'api_key_owner_unavailable', keyId: key.id };
    }
    const touched = touch(result.record, new Date(now));
    if (touched.persist) await this.directory.touchApiKey(key.id, touched.lastUsedAt.getTime());
    return { ok: true, key, status };
  }

  async #bearerFailure(
    input: AuthenticateInput,
    reason: string,
    keyId: string | undefined,
  ): Promise<undefined> {
    this.throttle.recordFailure({ address: input.sourceIp });
    // A failed bearer is already refused; an audit outage must not turn it into anything else.
    await this.#audit
      .record({
        action: 'identity.authenticate',
        principal: { id: 'anonymous', authMethod: 'bearer' },
        resource: keyId === undefined ? 'token' : `api-key:${keyId}`,
        outcome: 'failure',
        reason,
        ...requestFields(input),
      })
      .catch(() => undefined);
    return undefined;
  }

  // ---- local login ----------------------------------------------------------------------------------------

  /**
   * Username and password, plus a TOTP code or a recovery code when the user has MFA. Throttled per user and per
   * address; every outcome audited. A privileged user without MFA gets a session that may only enrol MFA.
   */
  async login(input: LoginInput): Promise<SessionTokens> {
    const started = performance.now();
    const username = typeof input.username === 'string' ? input.username.normalize('NFKC').toLowerCase() : '';
    const known = USERNAME_PATTERN.test(username);
    const subject = { ...(known ? { principal: `user:${username}` } : {}), ...address(input) };
    const actor = { id: known ? `user:${username}` : 'anonymous', authMethod: 'password' };
    const audit = (outcome: AuditEvent['outcome'], reason?: string, details?: AuditEvent['details']) =>
      this.#record(input, {
        action: 'identity.login',
        principal: actor,
        resource: known ? `user:${username}` : 'user:?',
        outcome,
        ...(reason === undefined ? {} : { reason }),
        ...(details === undefined ? {} : { details }),
        latencyMs: Math.round(performance.now() - started),
      });
    const decision = this.throttle.check(subject);
    if (!decision.allowed) {
      await audit('denied', 'throttled');
      throw new ThrottledError(decision.retryAfterSeconds);
    }
    const fail = async (reason: string): Promise<never> => {
      this.throttle.recordFailure(subject);
      await audit('failure', reason);
      throw new InvalidCredentialsError();
    };
    const found = known ? await this.directory.getUserWithCredentials(username) : undefined;
    const hash = found?.credentials.passwordHash ?? this.#dummyPasswordHash;
    const passwordOk = await verifyPassword(typeof input.password === 'string' ? input.password : '', hash);
    if (found === undefined || found.credentials.passwordHash === null) return fail('unknown_user');
    if (!passwordOk) return fail('bad_password');
    const { user, credentials } = found;
    if (user.disabled) return fail('disabled');

    let mfaAt: number | undefined;
    let amr = ['pwd'];
    let authMethod = 'password';
    if (credentials.totpSecret !== null) {
      if (input.totpCode !== undefined) {
        const secret = await this.#sealer.open(credentials.totpSecret, totpContext(user.username));
        let result: ReturnType<typeof verifyTotp>;
        try {
          result = verifyTotp({
            secret,
            code: input.totpCode,
            lastUsedStep: credentials.totpLastStep,
            unixSeconds: this.#now() / 1000,
          });
        } finally {
          wipe(secret);
        }
        if (!result.ok) return fail(`totp_${result.reason}`);
        if (!(await this.directory.spendTotpStep(user.username, credentials.totpLastStep, result.step))) {
          return fail('totp_replayed');
        }
        amr = ['pwd', 'otp', 'mfa'];
        authMethod = 'password+totp';
      } else if (input.recoveryCode !== undefined) {
        const hashes = credentials.recoveryHashes ?? [];
        const result = verifyRecoveryCode(this.#mac, input.recoveryCode, hashes);
        if (!result.ok) return fail('recovery_code_invalid');
        if (!(await this.directory.replaceRecoveryHashes(user.username, hashes, result.remaining))) {
          return fail('recovery_code_replayed');
        }
        amr = ['pwd', 'mfa'];
        authMethod = 'password+recovery-code';
      } else {
        await audit('failure', 'mfa_required');
        throw new MfaRequiredError();
      }
      mfaAt = this.#now();
    }
    if (needsRehash(credentials.passwordHash ?? hash, this.#passwordParams)) {
      await this.directory.setPasswordHash(user.username, await this.#hashPassword(input.password), false);
    }
    this.throttle.recordSuccess(subject);
    await this.directory.recordLogin(user.username, this.#now());
    const tokens = await this.oauth.issueSession(user, {
      amr,
      authMethod,
      ...(mfaAt === undefined ? {} : { mfaAt }),
      ...requestInfo(input),
    });
    await audit('success', undefined, {
      mfa: mfaAt !== undefined,
      mfaEnrolmentOnly: tokens.mfa_enrolment_required,
      method: authMethod,
    });
    return tokens;
  }

  /** Tokens for a user authenticated elsewhere (OIDC login, WebAuthn); audited as `identity.session`. */
  async issueSession(user: UserRecord, options: SessionOptions): Promise<SessionTokens> {
    const tokens = await this.oauth.issueSession(user, options);
    await this.#record(options, {
      action: 'identity.session',
      principal: { id: user.principalId, authMethod: options.authMethod },
      resource: user.principalId,
      outcome: 'success',
      details: { mfa: options.mfaAt !== undefined, mfaEnrolmentOnly: tokens.mfa_enrolment_required },
    });
    return tokens;
  }

  // ---- MFA enrolment --------------------------------------------------------------------------------------

  async #requireStepUpIfOtherFactor(actor: Principal, principalId: string): Promise<void> {
    if (actor.mfaAt !== undefined || this.#otherMfaFactors === undefined) return;
    if (await this.#otherMfaFactors(principalId)) {
      throw new IdentityError(
        'mfa_step_up_required',
        403,
        'a security key is registered: step up with it before enrolling another factor',
      );
    }
  }

  /** Starts TOTP enrolment for the calling user: the secret and `otpauth://` URI, shown once. */
  async beginTotpEnrolment(actor: Principal): Promise<{ secret: string; uri: string }> {
    const user = await this.#selfUser(actor);
    await this.#requireStepUpIfOtherFactor(actor, user.principalId);
    if (user.mfaEnrolled)
      throw new IdentityError(
        'mfa_already_enrolled',
        409,
        'MFA is already enrolled; an administrator can reset it',
      );
    const secret = generateTotpSecret();
    try {
      await this.directory.setTotpPending(
        user.username,
        await this.#sealer.seal(secret, totpContext(user.username)),
      );
      await this.#record(actor.request ?? {}, {
        action: 'identity.mfa.begin',
        principal: { id: actor.id, authMethod: actor.authMethod },
        resource: user.principalId,
        outcome: 'success',
      });
      return {
        secret: totpSecretToBase32(secret),
        uri: totpProvisioningUri({ secret, issuer: this.#totpIssuer, accountName: user.username }),
      };
    } finally {
      wipe(secret);
    }
  }

  /** Confirms enrolment with a first code; returns the recovery codes (shown once). */
  async confirmTotpEnrolment(actor: Principal, code: string): Promise<{ recoveryCodes: readonly string[] }> {
    const user = await this.#selfUser(actor);
    await this.#requireStepUpIfOtherFactor(actor, user.principalId);
    const found = await this.directory.getUserWithCredentials(user.username);
    const pending = found?.credentials.totpPending ?? null;
    const event = {
      action: 'identity.mfa.confirm',
      principal: { id: actor.id, authMethod: actor.authMethod },
      resource: user.principalId,
    };
    if (pending === null) {
      await this.#record(actor.request ?? {}, {
        ...event,
        outcome: 'failure',
        reason: 'no_pending_enrolment',
      });
      throw new InvalidIdentityRequestError('no MFA enrolment is in progress');
    }
    const secret = await this.#sealer.open(pending, totpContext(user.username));
    let result: ReturnType<typeof verifyTotp>;
    try {
      result = verifyTotp({ secret, code, lastUsedStep: null, unixSeconds: this.#now() / 1000 });
    } finally {
      wipe(secret);
    }
    if (!result.ok) {
      await this.#record(actor.request ?? {}, {
        ...event,
        outcome: 'failure',
        reason: `totp_${result.reason}`,
      });
      // The caller is authenticated; the code only proves the authenticator was set up right.
      throw new IdentityError(
        'invalid_totp_code',
        400,
        'the code does not match: enter the current code of the authenticator you just set up (check its clock)',
      );
    }
    const recovery = generateRecoveryCodes(this.#mac);
    if (!(await this.directory.confirmTotp(user.username, pending, result.step, recovery.hashes))) {
      throw new InvalidIdentityRequestError('the MFA enrolment changed meanwhile; start again');
    }
    await this.#record(actor.request ?? {}, { ...event, outcome: 'success' });
    return { recoveryCodes: recovery.codes };
  }

  /** Administrator: removes a user's MFA (lost device) and ends their sessions. */
  async resetMfa(actor: Principal, username: string): Promise<void> {
    await this.directory.clearMfa(checkUsername(username));
    this.oauth.invalidate(`user:${username}`);
    await this.#adminEvent(actor, 'identity.mfa.reset', `user:${username}`);
  }

  async #selfUser(actor: Principal): Promise<UserRecord> {
    const parsed = parsePrincipalId(actor.id);
    if (parsed?.kind !== 'user') throw new IdentityForbiddenError('only users enrol MFA');
    const user = await this.directory.getUser(parsed.name);
    if (user === undefined || user.disabled) throw new IdentityNotFoundError('user');
    return user;
  }

  // ---- bootstrap ------------------------------------------------------------------------------------------

  /**
   * Redeems the bootstrap admin token: creates the first administrator with the given password and makes the
   * token useless forever (across processes: the redemption is a row inserted in the same transaction).
   */
  async redeemBootstrap(
    input: { token: string; username: string; password: string; displayName?: string },
    request: RequestInfo = {},
  ): Promise<UserRecord> {
    const subject = address(request);
    const decision = this.throttle.check(subject);
    if (!decision.allowed) throw new ThrottledError(decision.retryAfterSeconds);
    const event = {
      action: 'identity.bootstrap',
      principal: { id: 'bootstrap-admin', authMethod: 'bootstrap-token' },
      resource: 'bootstrap',
    };
    const presented = createHash('sha256')
      .update(typeof input.token === 'string' ? input.token : '')
      .digest();
    const tokenOk = this.#bootstrapHash !== undefined && constantTimeEqual(presented, this.#bootstrapHash);
    if (!tokenOk || (await this.isBootstrapRedeemed())) {
      this.throttle.recordFailure(subject);
      await this.#record(request, {
        ...event,
        outcome: 'failure',
        reason: tokenOk ? 'already_redeemed' : 'bad_token',
      });
      throw new BootstrapUnavailableError();
    }
    const username = checkUsername(input.username);
    const passwordHash = await this.#hashPassword(input.password);
    const newUser: NewUser = {
      username,
      passwordHash,
      roles: ['admin'],
      ...(input.displayName === undefined ? {} : { displayName: input.displayName }),
    };
    const done = await this.directory.onceMeta('bootstrap', 'redeemed', (trx) =>
      this.directory.insertUserIn(trx, newUser),
    );
    if (!done) {
      await this.#record(request, { ...event, outcome: 'failure', reason: 'already_redeemed' });
      throw new BootstrapUnavailableError();
    }
    await this.#record(request, { ...event, outcome: 'success', details: { user: `user:${username}` } });
    const user = await this.directory.getUser(username);
    if (user === undefined) throw new IdentityNotFoundError('user');
    return user;
  }

  /** True once the bootstrap token has been redeemed: the server must then stop accepting it as a bearer. */
  async isBootstrapRedeemed(): Promise<boolean> {
    return (await this.directory.getMeta('bootstrap')) !== undefined;
  }

  // ---- users ----------------------------------------------------------------------------------------------

  async createUser(actor: Principal, input: CreateUserInput): Promise<UserRecord> {
    const passwordHash = input.password === undefined ? undefined : await this.#hashPassword(input.password);
    const user = await this.directory.createUser({
      username: checkUsername(input.username),
      ...(passwordHash === undefined ? {} : { passwordHash }),
      ...(input.displayName === undefined ? {} : { displayName: input.displayName }),
      roles: input.roles ?? [],
      groups: input.groups ?? [],
    });
    await this.#adminEvent(actor, 'identity.user.create', user.principalId, { roles: user.roles.join(' ') });
    return user;
  }

  listUsers(): Promise<UserRecord[]> {
    return this.directory.listUsers();
  }

  async getUser(username: string): Promise<UserRecord> {
    const user = await this.directory.getUser(username);
    if (user === undefined) throw new IdentityNotFoundError('user');
    return user;
  }

  /** Role, group and display-name changes; `disabled: true` ends every live token of the user at once. */
  async updateUser(actor: Principal, username: string, patch: UserPatch): Promise<UserRecord> {
    const user = await this.directory.updateUser(username, patch);
    this.oauth.invalidate(user.principalId);
    const action =
      patch.disabled === true
        ? 'identity.user.disable'
        : patch.disabled === false
          ? 'identity.user.enable'
          : 'identity.user.update';
    await this.#adminEvent(actor, action, user.principalId);
    return user;
  }

  async setPassword(actor: Principal, username: string, password: string): Promise<void> {
    await this.directory.setPasswordHash(checkUsername(username), await this.#hashPassword(password), true);
    this.oauth.invalidate(`user:${username}`);
    await this.#adminEvent(actor, 'identity.user.password', `user:${username}`);
  }

  async deleteUser(actor: Principal, username: string): Promise<void> {
    await this.directory.deleteUser(checkUsername(username));
    this.oauth.invalidate(`user:${username}`);
    await this.#adminEvent(actor, 'identity.user.delete', `user:${username}`);
  }

  /** Finds or creates a federated user and refreshes their IdP groups (for OIDC login). */
  async upsertFederatedUser(input: {
    issuer: string;
    subject: string;
    username: string;
    displayName?: string;
    groups: readonly string[];
  }): Promise<UserRecord> {
    const existing = await this.directory.findFederatedUser(input.issuer, input.subject);
    if (existing !== undefined) {
      if (existing.groups.join('\0') === [...new Set(input.groups)].sort().join('\0')) return existing;
      const updated = await this.directory.updateUser(existing.username, { groups: input.groups });
      this.oauth.invalidate(updated.principalId);
      return updated;
    }
    return this.directory.createUser({
      username: input.username,
      source: 'federated',
      issuer: input.issuer,
      subject: input.subject,
      groups: input.groups,
      ...(input.displayName === undefined ? {} : { displayName: input.displayName }),
    });
  }

  // ---- service accounts -----------------------------------------------------------------------------------

  /** Creates a service account; for `client_secret` returns the secret, shown once. */
  async createServiceAccount(
    actor: Principal,
    input: CreateServiceAccountInput,
  ): Promise<{ account: ServiceAccountRecord; clientSecret?: string }> {
    const clientId = checkClientId(input.clientId);
    if (clientId === PUBLIC_CLIENT_ID)
      throw new InvalidIdentityRequestError(`the client id ${PUBLIC_CLIENT_ID} is reserved`);
    let clientSecret: string | undefined;
    const credential: Partial<Parameters<Directory['createServiceAccount']>[0]> = {};
    if (input.authMethod === 'client_secret') {
      clientSecret = newClientSecret();
      Object.assign(credential, { secretHash: this.oauth.clientSecretHash(clientId, clientSecret) });
    } else if (input.authMethod === 'private_key_jwt') {
      Object.assign(credential, { jwks: await checkJwks(input.jwks, input.publicKeyPem) });
    } else {
      // tls_client_auth (the directory refuses any other method)
      Object.assign(credential, checkTlsBinding(input.tlsSubjectDn, input.tlsSpkiSha256));
    }
    const account = await this.directory.createServiceAccount({
      clientId,
      authMethod: input.authMethod,
      roles: checkRoles(input.roles ?? []),
      ...(input.description === undefined ? {} : { description: input.description }),
      ...credential,
    });
    await this.#adminEvent(actor, 'identity.service_account.create', account.principalId, {
      method: account.authMethod,
      roles: account.roles.join(' '),
    });
    return clientSecret === undefined ? { account } : { account, clientSecret };
  }

  listServiceAccounts(): Promise<ServiceAccountRecord[]> {
    return this.directory.listServiceAccounts();
  }

  async getServiceAccount(clientId: string): Promise<ServiceAccountRecord> {
    const account = await this.directory.getServiceAccount(clientId);
    if (account === undefined) throw new IdentityNotFoundError('service account');
    const { secretHash: _omitted, ...rest } = account;
    return rest;
  }

  async updateServiceAccount(
    actor: Principal,
    clientId: string,
    patch: { description?: string; roles?: readonly string[]; disabled?: boolean },
  ): Promise<ServiceAccountRecord> {
    const account = await this.directory.updateServiceAccount(clientId, patch);
    this.oauth.invalidate(account.principalId);
    const action =
      patch.disabled === true
        ? 'identity.service_account.disable'
        : patch.disabled === false
          ? 'identity.service_account.enable'
          : 'identity.service_account.update';
    await this.#adminEvent(actor, action, account.principalId);
    return account;
  }

  /** A new client secret (shown once); tokens issued under the old one stop working. */
  async rotateClientSecret(actor: Principal, clientId: string): Promise<{ clientSecret: string }> {
    const existing = await this.getServiceAccount(clientId);
    if (existing.authMethod !== 'client_secret')
      throw new InvalidIdentityRequestError('the client does not use a secret');
    const clientSecret = newClientSecret();
    await this.directory.updateServiceAccount(clientId, {
      secretHash: this.oauth.clientSecretHash(clientId, clientSecret),
    });
    this.oauth.invalidate(existing.principalId);
    await this.#adminEvent(actor, 'identity.service_account.rotate_secret', existing.principalId);
    return { clientSecret };
  }

  async deleteServiceAccount(actor: Principal, clientId: string): Promise<void> {
    await this.directory.deleteServiceAccount(clientId);
    this.oauth.invalidate(`service:${clientId}`);
    await this.#adminEvent(actor, 'identity.service_account.delete', `service:${clientId}`);
  }

  // ---- API keys -------------------------------------------------------------------------------------------

  /**
   * Creates an API key for `owner` (default: the actor). Its scopes are role names the owner holds — and, when
   * the actor creates a key for itself, roles the actor's own credential carries — so a key never grants more
   * than the session that made it. The key is returned once.
   */
  async createApiKey(actor: Principal, input: NewApiKeyInput): Promise<{ key: string; info: ApiKeyInfo }> {
    const owner = input.owner ?? actor.id;
    const status = await this.directory.principalStatus(owner, await this.directory.roleMappings());
    if (status === undefined || status.disabled)
      throw new IdentityNotFoundError(owner.startsWith('service:') ? 'service account' : 'user');
    let scopes: string[];
    try {
      scopes = checkRoles(input.scopes);
    } catch (err) {
      if (err instanceof InvalidIdentityRequestError)
        throw new InvalidIdentityRequestError('each scope must be a role name');
      throw err;
    }
    if (scopes.length === 0) throw new InvalidIdentityRequestError('an API key needs at least one scope');
    const allowed = owner === actor.id ? status.roles.filter((r) => actor.roles.includes(r)) : status.roles;
    if (scopes.some((s) => !allowed.includes(s))) {
      throw new IdentityForbiddenError('an API key may only carry roles its owner holds');
    }
    let created: ReturnType<typeof createApiKeyMaterial>;
    try {
      created = createApiKeyMaterial(this.#mac, {
        env: this.#apiKeyEnv,
        scopes,
        ...(input.ttlSeconds === undefined ? {} : { ttlSeconds: input.ttlSeconds }),
        now: new Date(this.#now()),
      });
    } catch (err) {
      if (err instanceof InvalidInputError) throw new InvalidIdentityRequestError(err.message);
      throw err;
    }
    const stored: StoredApiKey = {
      id: created.record.id,
      env: created.record.env,
      hash: created.record.hash,
      scopes: created.record.scopes,
      owner,
      name: input.name ?? '',
      createdAt: created.record.createdAt.getTime(),
      expiresAt: created.record.expiresAt.getTime(),
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.directory.insertApiKey(stored);
    await this.#adminEvent(actor, 'identity.api_key.create', `api-key:${stored.id}`, {
      owner,
      scopes: scopes.join(' '),
      expiresAt: stored.expiresAt,
    });
    const { hash: _hash, ...info } = stored;
    return { key: created.key, info };
  }

  async listApiKeys(owner?: string): Promise<ApiKeyInfo[]> {
    return (await this.directory.listApiKeys(owner)).map(({ hash: _hash, ...info }) => info);
  }

  async getApiKey(id: string): Promise<ApiKeyInfo> {
    const key =
      typeof id === 'string' && /^[0-9A-Za-z]{16}$/.test(id) ? await this.directory.getApiKey(id) : undefined;
    if (key === undefined) throw new IdentityNotFoundError('API key');
    const { hash: _hash, ...info } = key;
    return info;
  }

  /** Revokes a key; `owner` restricts it to that owner's keys (self-service). */
  async revokeApiKey(actor: Principal, id: string, owner?: string): Promise<void> {
    const key = await this.getApiKey(id);
    if (owner !== undefined && key.owner !== owner) throw new IdentityNotFoundError('API key');
    await this.directory.revokeApiKey(key.id);
    await this.#adminEvent(actor, 'identity.api_key.revoke', `api-key:${key.id}`, { owner: key.owner });
  }

  // ---- role mappings --------------------------------------------------------------------------------------

  async putRoleMapping(actor: Principal, group: string, roles: readonly string[]): Promise<void> {
    await this.directory.putRoleMapping(group, roles);
    this.oauth.invalidate();
    await this.#adminEvent(actor, 'identity.role_mapping.put', 'role-mapping', {
      roles: checkRoles(roles).join(' '),
    });
  }

  async listRoleMappings(): Promise<{ group: string; roles: readonly string[] }[]> {
    return [...(await this.directory.roleMappings())].map(([group, roles]) => ({ group, roles }));
  }

  async deleteRoleMapping(actor: Principal, group: string): Promise<void> {
    await this.directory.deleteRoleMapping(group);
    this.oauth.invalidate();
    await this.#adminEvent(actor, 'identity.role_mapping.delete', 'role-mapping');
  }

  /** Deletes expired revocation entries, assertion ids and token families; run it periodically. */
  async purgeExpired(): Promise<void> {
    await this.directory.purgeExpired(this.#now());
    this.throttle.prune();
  }

  // ---- helpers --------------------------------------------------------------------------------------------

  async #hashPassword(password: unknown): Promise<string> {
    if (
      typeof password !== 'string' ||
      [...new Intl.Segmenter().segment(password)].length < MIN_PASSWORD_LENGTH
    ) {
      throw new InvalidIdentityRequestError(`a password needs at least ${MIN_PASSWORD_LENGTH} characters`);
    }
    try {
      return await hashPassword(password, this.#passwordParams);
    } catch (err) {
      if (err instanceof InvalidInputError)
        throw new InvalidIdentityRequestError('the password is not acceptable');
      throw err;
    }
  }

  async #adminEvent(
    actor: Principal,
    action: string,
    resource: string,
    details?: Readonly<Record<string, string | number | boolean>>,
  ): Promise<void> {
    await this.#record(
      {
        ...(actor.request?.id === undefined ? {} : { requestId: actor.request.id }),
        ...(actor.request?.sourceIp === undefined ? {} : { sourceIp: actor.request.sourceIp }),
        ...(actor.request?.userAgent === undefined ? {} : { userAgent: actor.request.userAgent }),
      },
      {
        action,
        principal: { id: actor.id, authMethod: actor.authMethod },
        resource,
        outcome: 'success',
        ...(details === undefined ? {} : { details }),
      },
    );
  }

  async #record(
    request: RequestInfo | { id?: string; sourceIp?: string; userAgent?: string },
    event: AuditEvent,
  ): Promise<void> {
    try {
      await this.#audit.record({ ...event, ...requestFields(normalizeRequest(request)) });
    } catch {
      throw new IdentityAuditUnavailableError();
    }
  }
}

function normalizeRequest(
  r: RequestInfo | { id?: string; sourceIp?: string; userAgent?: string },
): RequestInfo {
  const withId = r as { id?: string; requestId?: string; sourceIp?: string; userAgent?: string };
  const requestId = withId.requestId ?? withId.id;
  return {
    ...(requestId === undefined ? {} : { requestId }),
    ...(withId.sourceIp === undefined ? {} : { sourceIp: withId.sourceIp }),
    ...(withId.userAgent === undefined ? {} : { userAgent: withId.userAgent }),
  };
}

function requestFields(r: {
  requestId?: string | undefined;
  sourceIp?: string | undefined;
  userAgent?: string | undefined;
}): Partial<AuditEvent> {
  return {
    ...(r.requestId === undefined ? {} : { requestId: r.requestId }),
    ...(r.sourceIp === undefined ? {} : { sourceIp: r.sourceIp }),
    ...(r.userAgent === undefined ? {} : { userAgent: r.userAgent.slice(0, 256) }),
  };
}

function requestInfo(r: RequestInfo): RequestInfo {
  return normalizeRequest(r);
}

function address(r: { sourceIp?: string | undefined }): { address?: string } {
  return r.sourceIp === undefined ? {} : { address: r.sourceIp };
}

function withRequest(principal: Principal, input: AuthenticateInput): Principal {
  return {
    ...principal,
    request: {
      ...(input.requestId === undefined ? {} : { id: input.requestId }),
      sourceIp: input.sourceIp,
      ...(input.userAgent === undefined ? {} : { userAgent: input.userAgent }),
    },
  };
}

function totpContext(username: string): string {
  return `warden/identity/totp/${username}`;
}

function toCredentialRecord(key: StoredApiKey): ApiKeyRecord {
  return {
    id: key.id,
    env: key.env,
    hash: key.hash,
    scopes: key.scopes,
    createdAt: new Date(key.createdAt),
    expiresAt: new Date(key.expiresAt),
    lastUsedAt: key.lastUsedAt === null ? null : new Date(key.lastUsedAt),
    revokedAt: key.revokedAt === null ? null : new Date(key.revokedAt),
  };
}

/** `wcs_` + 43 base64url characters (256 bits): high entropy, so a keyed hash suffices (no slow hash). */
function newClientSecret(): string {
  return `wcs_${randomBytes(32).toString('base64url')}`;
}

const JWK_ALLOWED_KTY = new Set(['EC', 'OKP', 'RSA']);

async function checkJwks(
  jwks: { keys: Record<string, unknown>[] } | undefined,
  pem: string | undefined,
): Promise<{ keys: Record<string, unknown>[] }> {
  const { createPublicKey } = await import('node:crypto');
  if ((jwks === undefined) === (pem === undefined)) {
    throw new InvalidIdentityRequestError('private_key_jwt needs either a JWKS or a public key PEM');
  }
  let keys: Record<string, unknown>[];
  if (pem !== undefined) {
    // createPublicKey would take a private key and derive its public half: a private key sent by mistake is
    // refused, so its owner learns it left their machine instead of having it silently accepted.
    if (/PRIVATE KEY-----/.test(pem)) {
      throw new InvalidIdentityRequestError('a private key was given: register the public key (SPKI PEM)');
    }
    try {
      const key = createPublicKey({ key: pem, format: 'pem' });
      keys = [key.export({ format: 'jwk' })];
    } catch {
      throw new InvalidIdentityRequestError('the public key is not a valid SPKI PEM');
    }
  } else {
    if (jwks === undefined || !Array.isArray(jwks.keys) || jwks.keys.length === 0 || jwks.keys.length > 10) {
      throw new InvalidIdentityRequestError('a JWKS needs 1 to 10 keys');
    }
    keys = jwks.keys;
  }
  const out: Record<string, unknown>[] = [];
  for (const raw of keys as unknown[]) {
    const k = raw as Record<string, unknown> | null;
    if (
      k === null ||
      typeof k !== 'object' ||
      !JWK_ALLOWED_KTY.has(k['kty'] as string) ||
      'd' in k ||
      'p' in k ||
      'k' in k
    ) {
      throw new InvalidIdentityRequestError('JWKS keys must be public EC, OKP or RSA keys');
    }
    try {
      const key = createPublicKey({ key: k, format: 'jwk' });
      if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
        throw new Error('short');
    } catch {
      throw new InvalidIdentityRequestError('a JWKS key is not a valid public key');
    }
    out.push(k);
  }
  return { keys: out };
}

function checkTlsBinding(
  dn: string | undefined,
  spki: string | undefined,
): { tlsSubjectDn?: string; tlsSpkiSha256?: string } {
  if ((dn === undefined) === (spki === undefined)) {
    throw new InvalidIdentityRequestError(
      'tls_client_auth needs exactly one of a subject DN or an SPKI SHA-256',
    );
  }
  if (spki !== undefined) {
    if (!/^[A-Za-z0-9_-]{43}$/.test(spki))
      throw new InvalidIdentityRequestError('the SPKI SHA-256 must be 43 base64url characters');
    return { tlsSpkiSha256: spki };
  }
  try {
    return { tlsSubjectDn: normalizeDn(dn ?? '') };
  } catch {
    throw new InvalidIdentityRequestError('the subject DN is not a valid distinguished name');
  }
}
