import { randomInt } from 'node:crypto';
import { StoreConflictError } from '../store/index.ts';
import type { Store } from '../store/index.ts';
import { IdentityExistsError, IdentityNotFoundError, InvalidIdentityRequestError } from './errors.ts';
import type { IdentityDB } from './schema.ts';

/**
 * The directory: users, service accounts, API keys, IdP role mappings, refresh-token families and the revocation
 * lists, over the store face (SQLite or PostgreSQL). It validates names and shapes and enforces the atomic
 * transitions (compare-and-set of the TOTP step and the recovery codes, single use of a refresh token, single
 * redemption of the bootstrap token); policy (who may do what, throttling, audit) is the service's.
 */

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._@+-]{0,127}$/;
export const CLIENT_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const ROLE_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;
/** IdP group names are the IdP's: any printable text without control characters, 1 to 256 characters. */
export const GROUP_PATTERN = /^[^\p{Cc}\p{Cs}]{1,256}$/u;
const MAX_LIST = 64;
const MAX_TEXT = 256;

export type UserSource = 'local' | 'federated';
export type ClientAuthMethod = 'client_secret' | 'private_key_jwt' | 'tls_client_auth';
export const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = [
  'client_secret',
  'private_key_jwt',
  'tls_client_auth',
];

export interface UserRecord {
  readonly username: string;
  /** `user:<username>`: the principal id in tokens, Cedar and the audit trail. */
  readonly principalId: string;
  readonly source: UserSource;
  readonly issuer: string | null;
  readonly subject: string | null;
  readonly displayName: string;
  readonly hasPassword: boolean;
  readonly mfaEnrolled: boolean;
  readonly mfaEnrolledAt: number | null;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  readonly disabled: boolean;
  readonly epoch: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly lastLoginAt: number | null;
}

/** The credential columns, only for the service's verification paths; never returned by an API. */
export interface UserCredentials {
  readonly passwordHash: string | null;
  readonly totpSecret: string | null;
  readonly totpPending: string | null;
  readonly totpLastStep: number | null;
  readonly recoveryHashes: readonly string[] | null;
}

export interface ServiceAccountRecord {
  readonly clientId: string;
  /** `service:<clientId>`. */
  readonly principalId: string;
  readonly description: string;
  readonly authMethod: ClientAuthMethod;
  readonly hasSecret: boolean;
  /** Registered public keys (private_key_jwt), a JWKS document. */
  readonly jwks: { keys: Record<string, unknown>[] } | null;
  readonly tlsSubjectDn: string | null;
  /** base64url SHA-256 of the certificate's SubjectPublicKeyInfo (tls_client_auth). */
  readonly tlsSpkiSha256: string | null;
  readonly roles: readonly string[];
  readonly disabled: boolean;
  readonly epoch: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface StoredApiKey {
  readonly id: string;
  readonly env: string;
  readonly hash: string;
  readonly scopes: readonly string[];
  readonly owner: string;
  readonly name: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
}

export interface TokenFamily {
  readonly id: string;
  readonly principalId: string;
  readonly clientId: string;
  readonly scope: string;
  readonly amr: readonly string[];
  readonly authTime: number;
  readonly mfaAt: number | null;
  readonly epoch: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly revokedAt: number | null;
  /** The network the session logged in from (`loginNetwork`), for step-up on a new network. */
  readonly loginNetwork: string | null;
}

/** What `authenticate` needs to know about a principal on every request (cached for about a second). */
export interface PrincipalStatus {
  readonly kind: 'user' | 'service';
  readonly disabled: boolean;
  readonly epoch: number;
  /** Effective roles: the principal's own plus those its groups map to. */
  readonly roles: readonly string[];
  readonly groups: readonly string[];
}

function invalid(message: string): never {
  throw new InvalidIdentityRequestError(message);
}

export function checkUsername(username: unknown): string {
  if (typeof username !== 'string' || !USERNAME_PATTERN.test(username))
    invalid(`username must match ${USERNAME_PATTERN.source}`);
  return username;
}

export function checkClientId(clientId: unknown): string {
  if (typeof clientId !== 'string' || !CLIENT_ID_PATTERN.test(clientId))
    invalid(`client id must match ${CLIENT_ID_PATTERN.source}`);
  return clientId;
}

export function checkRoles(roles: unknown): string[] {
  if (!Array.isArray(roles) || roles.length > MAX_LIST) invalid(`at most ${MAX_LIST} roles`);
  for (const r of roles as unknown[]) {
    if (typeof r !== 'string' || !ROLE_PATTERN.test(r))
      invalid(`each role must match ${ROLE_PATTERN.source}`);
  }
  return [...new Set(roles as string[])].sort();
}

export function checkGroups(groups: unknown): string[] {
  if (!Array.isArray(groups) || groups.length > MAX_LIST) invalid(`at most ${MAX_LIST} groups`);
  for (const g of groups as unknown[]) {
    if (typeof g !== 'string' || !GROUP_PATTERN.test(g))
      invalid('each group must be 1 to 256 printable characters');
  }
  return [...new Set(groups as string[])].sort();
}

function checkText(text: unknown, what: string): string {
  if (typeof text !== 'string' || text.length > MAX_TEXT || /\p{Cc}/u.test(text))
    invalid(`${what} must be at most ${MAX_TEXT} printable characters`);
  return text;
}

function list(json: string | null): string[] {
  if (json === null) return [];
  const parsed: unknown = JSON.parse(json);
  return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : [];
}

/** Denies a session (`sid:<family>`) or access token (`jti:<id>`) until it would have expired anyway. */
async function deny(db: Store<IdentityDB>['db'] | IdentityTransaction, id: string, expiresAt: number) {
  await db
    .insertInto('identity_denylist')
    .values({ id, expires_at: expiresAt })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
}

async function insertRefreshToken(
  trx: IdentityTransaction,
  familyId: string,
  token: { id: string; hash: string; expiresAt: number },
  createdAt: number,
) {
  await trx
    .insertInto('identity_refresh_tokens')
    .values({
      id: token.id,
      family_id: familyId,
      hash: token.hash,
      created_at: createdAt,
      expires_at: token.expiresAt,
      used_at: null,
    })
    .execute();
}

type UserRow = IdentityDB['identity_users'];
type ServiceRow = IdentityDB['identity_service_accounts'];
type ApiKeyRow = IdentityDB['identity_api_keys'];
type FamilyRow = IdentityDB['identity_token_families'];

export const userPrincipalId = (username: string): string => `user:${username}`;
export const servicePrincipalId = (clientId: string): string => `service:${clientId}`;

/** `user:alice` → `{kind:'user', name:'alice'}`; anything else → undefined. */
export function parsePrincipalId(id: string): { kind: 'user' | 'service'; name: string } | undefined {
  if (id.startsWith('user:')) {
    const name = id.slice(5);
    return USERNAME_PATTERN.test(name) ? { kind: 'user', name } : undefined;
  }
  if (id.startsWith('service:')) {
    const name = id.slice(8);
    return CLIENT_ID_PATTERN.test(name) ? { kind: 'service', name } : undefined;
  }
  return undefined;
}

function toUser(row: UserRow): UserRecord {
  return {
    username: row.username,
    principalId: userPrincipalId(row.username),
    source: row.source === 'federated' ? 'federated' : 'local',
    issuer: row.issuer,
    subject: row.subject,
    displayName: row.display_name,
    hasPassword: row.password_hash !== null,
    mfaEnrolled: row.totp_secret !== null,
    mfaEnrolledAt: row.totp_enrolled_at,
    groups: list(row.groups),
    roles: list(row.roles),
    disabled: row.disabled === 1,
    epoch: row.epoch,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastLoginAt: row.last_login_at,
  };
}

function toService(row: ServiceRow): ServiceAccountRecord {
  return {
    clientId: row.client_id,
    principalId: servicePrincipalId(row.client_id),
    description: row.description,
    authMethod: row.auth_method as ClientAuthMethod,
    hasSecret: row.secret_hash !== null,
    jwks: row.jwks === null ? null : (JSON.parse(row.jwks) as { keys: Record<string, unknown>[] }),
    tlsSubjectDn: row.tls_subject_dn,
    tlsSpkiSha256: row.tls_spki_sha256,
    roles: list(row.roles),
    disabled: row.disabled === 1,
    epoch: row.epoch,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toApiKey(row: ApiKeyRow): StoredApiKey {
  return {
    id: row.id,
    env: row.env,
    hash: row.hash,
    scopes: list(row.scopes),
    owner: row.owner,
    name: row.name,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

function toFamily(row: FamilyRow): TokenFamily {
  return {
    id: row.id,
    principalId: row.principal_id,
    clientId: row.client_id,
    scope: row.scope,
    amr: list(row.amr),
    authTime: row.auth_time,
    mfaAt: row.mfa_at,
    epoch: row.epoch,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    loginNetwork: row.login_network,
  };
}

/**
 * The first epoch of a new principal: random rather than 1, so that a principal deleted and then created again
 * under the same name does not match the tokens issued to the one deleted (a client-credentials token has no
 * session whose revocation would catch it). Bumps add 1; 2^48 leaves room below 2^53.
 */
function firstEpoch(): number {
  return randomInt(1, 2 ** 48);
}

/** The columns of a new user's row after its name and origin: validated, no MFA yet, a first epoch. */
function newUserColumns(input: NewUser, now: number) {
  return {
    display_name: checkText(input.displayName ?? '', 'display name'),
    password_hash: input.passwordHash ?? null,
    totp_secret: null,
    totp_pending: null,
    totp_last_step: null,
    totp_enrolled_at: null,
    recovery_hashes: null,
    groups: JSON.stringify(checkGroups(input.groups ?? [])),
    roles: JSON.stringify(checkRoles(input.roles ?? [])),
    disabled: 0 as const,
    epoch: firstEpoch(),
    created_at: now,
    updated_at: now,
    last_login_at: null,
  };
}

export interface NewUser {
  readonly username: string;
  readonly displayName?: string;
  readonly source?: UserSource;
  readonly issuer?: string;
  readonly subject?: string;
  readonly passwordHash?: string;
  readonly roles?: readonly string[];
  readonly groups?: readonly string[];
}

export interface UserPatch {
  readonly displayName?: string;
  readonly roles?: readonly string[];
  readonly groups?: readonly string[];
  readonly disabled?: boolean;
}

export interface NewServiceAccount {
  readonly clientId: string;
  readonly description?: string;
  readonly authMethod: ClientAuthMethod;
  readonly secretHash?: string;
  readonly jwks?: { keys: Record<string, unknown>[] };
  readonly tlsSubjectDn?: string;
  readonly tlsSpkiSha256?: string;
  readonly roles?: readonly string[];
}

export interface ServiceAccountPatch {
  readonly description?: string;
  readonly roles?: readonly string[];
  readonly disabled?: boolean;
  readonly secretHash?: string;
  readonly jwks?: { keys: Record<string, unknown>[] };
}

export type RefreshOutcome =
  | { readonly ok: true; readonly family: TokenFamily }
  | { readonly ok: false; readonly reason: 'unknown' | 'mismatch' | 'expired' | 'revoked' | 'reused' };

export class Directory {
  readonly #store: Store<IdentityDB>;
  readonly #now: () => number;

  constructor(store: Store<IdentityDB>, now: () => number = Date.now) {
    this.#store = store;
    this.#now = now;
  }

  get store(): Store<IdentityDB> {
    return this.#store;
  }

  // ---- users ----------------------------------------------------------------------------------------------

  async createUser(input: NewUser): Promise<UserRecord> {
    const now = this.#now();
    const source = input.source ?? 'local';
    if ((source === 'federated') !== (input.issuer !== undefined && input.subject !== undefined))
      invalid('a federated user has an issuer and a subject; a local user has neither');
    const row: UserRow = {
      username: checkUsername(input.username),
      source,
      issuer: input.issuer === undefined ? null : checkText(input.issuer, 'issuer'),
      subject: input.subject === undefined ? null : checkText(input.subject, 'subject'),
      ...newUserColumns(input, now),
    };
    try {
      await this.#store.db.insertInto('identity_users').values(row).execute();
    } catch (err) {
      if (err instanceof StoreConflictError) throw new IdentityExistsError('user');
      throw err;
    }
    return toUser(row);
  }

  async getUser(username: string): Promise<UserRecord | undefined> {
    const row = await this.#userRow(username);
    return row === undefined ? undefined : toUser(row);
  }

  async getUserWithCredentials(
    username: string,
  ): Promise<{ user: UserRecord; credentials: UserCredentials } | undefined> {
    const row = await this.#userRow(username);
    if (row === undefined) return undefined;
    return {
      user: toUser(row),
      credentials: {
        passwordHash: row.password_hash,
        totpSecret: row.totp_secret,
        totpPending: row.totp_pending,
        totpLastStep: row.totp_last_step === null ? null : row.totp_last_step,
        recoveryHashes: row.recovery_hashes === null ? null : list(row.recovery_hashes),
      },
    };
  }

  async findFederatedUser(issuer: string, subject: string): Promise<UserRecord | undefined> {
    const row = await this.#store.db
      .selectFrom('identity_users')
      .selectAll()
      .where('issuer', '=', issuer)
      .where('subject', '=', subject)
      .executeTakeFirst();
    return row === undefined ? undefined : toUser(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    const rows = await this.#store.db.selectFrom('identity_users').selectAll().orderBy('username').execute();
    return rows.map(toUser);
  }

  /** Disabling (or changing roles) bumps the epoch, which invalidates every token issued before. */
  async updateUser(username: string, patch: UserPatch): Promise<UserRecord> {
    checkUsername(username);
    const values: Partial<UserRow> = { updated_at: this.#now() };
    if (patch.displayName !== undefined) values.display_name = checkText(patch.displayName, 'display name');
    if (patch.roles !== undefined) values.roles = JSON.stringify(checkRoles(patch.roles));
    if (patch.groups !== undefined) values.groups = JSON.stringify(checkGroups(patch.groups));
    if (patch.disabled !== undefined) values.disabled = patch.disabled ? 1 : 0;
    await this.#updateUser(username, values, patch.disabled === true);
    const user = await this.getUser(username);
    if (user === undefined) throw new IdentityNotFoundError('user');
    return user;
  }

  /** Deletes the user, their API keys and their token families (revoking the families' live tokens). */
  async deleteUser(username: string): Promise<void> {
    checkUsername(username);
    await this.#deletePrincipal(userPrincipalId(username), async (trx) =>
      Number(
        (await trx.deleteFrom('identity_users').where('username', '=', username).executeTakeFirst())
          .numDeletedRows,
      ),
    );
    await this.#store.scrub(['identity_users', 'identity_api_keys', 'identity_refresh_tokens']);
  }

  async setPasswordHash(username: string, passwordHash: string, bumpEpoch: boolean): Promise<void> {
    await this.#updateUser(username, { password_hash: passwordHash, updated_at: this.#now() }, bumpEpoch);
  }

  async setTotpPending(username: string, sealed: string | null): Promise<void> {
    await this.#updateUser(username, { totp_pending: sealed, updated_at: this.#now() }, false);
  }

  /** Moves the pending seed to the enrolled one, only if the pending seed is still the one verified. */
  async confirmTotp(
    username: string,
    pending: string,
    step: number,
    recoveryHashes: readonly string[],
  ): Promise<boolean> {
    const now = this.#now();
    const result = await this.#store.db
      .updateTable('identity_users')
      .set({
        totp_secret: pending,
        totp_pending: null,
        totp_last_step: step,
        totp_enrolled_at: now,
        recovery_hashes: JSON.stringify(recoveryHashes),
        updated_at: now,
      })
      .where('username', '=', username)
      .where('totp_pending', '=', pending)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Removes MFA (admin reset) and ends the user's sessions. */
  async clearMfa(username: string): Promise<void> {
    await this.#updateUser(
      username,
      {
        totp_secret: null,
        totp_pending: null,
        totp_last_step: null,
        totp_enrolled_at: null,
        recovery_hashes: null,
        updated_at: this.#now(),
      },
      true,
    );
  }

  /** Compare-and-set of the last accepted TOTP step: false when a concurrent login spent it first. */
  async spendTotpStep(username: string, previous: number | null, step: number): Promise<boolean> {
    let query = this.#store.db
      .updateTable('identity_users')
      .set({ totp_last_step: step })
      .where('username', '=', username);
    query =
      previous === null
        ? query.where('totp_last_step', 'is', null)
        : query.where('totp_last_step', '=', previous);
    return Number((await query.executeTakeFirst()).numUpdatedRows) === 1;
  }

  /** Compare-and-set of the recovery-code list: false when a concurrent login changed it first. */
  async replaceRecoveryHashes(
    username: string,
    previous: readonly string[],
    next: readonly string[],
  ): Promise<boolean> {
    const result = await this.#store.db
      .updateTable('identity_users')
      .set({ recovery_hashes: JSON.stringify(next), updated_at: this.#now() })
      .where('username', '=', username)
      .where('recovery_hashes', '=', JSON.stringify(previous))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async recordLogin(username: string, at: number): Promise<void> {
    await this.#store.db
      .updateTable('identity_users')
      .set({ last_login_at: at })
      .where('username', '=', username)
      .execute();
  }

  /** Bumping the epoch invalidates every token issued to the user before. */
  async #updateUser(username: string, values: Partial<UserRow>, bumpEpoch: boolean): Promise<void> {
    const result = await this.#store.db
      .updateTable('identity_users')
      .set((eb) => ({ ...values, ...(bumpEpoch ? { epoch: eb('epoch', '+', 1) } : {}) }))
      .where('username', '=', username)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) throw new IdentityNotFoundError('user');
  }

  async #userRow(username: string): Promise<UserRow | undefined> {
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username)) return undefined;
    return this.#store.db
      .selectFrom('identity_users')
      .selectAll()
      .where('username', '=', username)
      .executeTakeFirst();
  }

  // ---- service accounts -----------------------------------------------------------------------------------

  async createServiceAccount(input: NewServiceAccount): Promise<ServiceAccountRecord> {
    const now = this.#now();
    if (!CLIENT_AUTH_METHODS.includes(input.authMethod)) invalid('unknown client authentication method');
    const row: ServiceRow = {
      client_id: checkClientId(input.clientId),
      description: checkText(input.description ?? '', 'description'),
      auth_method: input.authMethod,
      secret_hash: input.secretHash ?? null,
      jwks: input.jwks === undefined ? null : JSON.stringify(input.jwks),
      tls_subject_dn: input.tlsSubjectDn ?? null,
      tls_spki_sha256: input.tlsSpkiSha256 ?? null,
      roles: JSON.stringify(checkRoles(input.roles ?? [])),
      disabled: 0,
      epoch: firstEpoch(),
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.db.insertInto('identity_service_accounts').values(row).execute();
    } catch (err) {
      if (err instanceof StoreConflictError) throw new IdentityExistsError('service account');
      throw err;
    }
    return toService(row);
  }

  async getServiceAccount(
    clientId: string,
  ): Promise<(ServiceAccountRecord & { secretHash: string | null }) | undefined> {
    if (typeof clientId !== 'string' || !CLIENT_ID_PATTERN.test(clientId)) return undefined;
    const row = await this.#store.db
      .selectFrom('identity_service_accounts')
      .selectAll()
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    return row === undefined ? undefined : { ...toService(row), secretHash: row.secret_hash };
  }

  async listServiceAccounts(): Promise<ServiceAccountRecord[]> {
    const rows = await this.#store.db
      .selectFrom('identity_service_accounts')
      .selectAll()
      .orderBy('client_id')
      .execute();
    return rows.map(toService);
  }

  async updateServiceAccount(clientId: string, patch: ServiceAccountPatch): Promise<ServiceAccountRecord> {
    checkClientId(clientId);
    const values: Partial<ServiceRow> = { updated_at: this.#now() };
    if (patch.description !== undefined) values.description = checkText(patch.description, 'description');
    if (patch.roles !== undefined) values.roles = JSON.stringify(checkRoles(patch.roles));
    if (patch.disabled !== undefined) values.disabled = patch.disabled ? 1 : 0;
    if (patch.secretHash !== undefined) values.secret_hash = patch.secretHash;
    if (patch.jwks !== undefined) values.jwks = JSON.stringify(patch.jwks);
    // A new secret or key set, like disabling, ends every token issued under the old one.
    const bump = patch.disabled === true || patch.secretHash !== undefined || patch.jwks !== undefined;
    const result = await this.#store.db
      .updateTable('identity_service_accounts')
      .set((eb) => ({ ...values, ...(bump ? { epoch: eb('epoch', '+', 1) } : {}) }))
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) throw new IdentityNotFoundError('service account');
    const account = await this.getServiceAccount(clientId);
    if (account === undefined) throw new IdentityNotFoundError('service account');
    return account;
  }

  async deleteServiceAccount(clientId: string): Promise<void> {
    checkClientId(clientId);
    await this.#deletePrincipal(servicePrincipalId(clientId), async (trx) =>
      Number(
        (
          await trx
            .deleteFrom('identity_service_accounts')
            .where('client_id', '=', clientId)
            .executeTakeFirst()
        ).numDeletedRows,
      ),
    );
  }

  async #deletePrincipal(
    principalId: string,
    remove: (trx: IdentityTransaction) => Promise<number>,
  ): Promise<void> {
    const now = this.#now();
    await this.#store.transaction(async (trx) => {
      if ((await remove(trx)) !== 1) {
        throw new IdentityNotFoundError(principalId.startsWith('user:') ? 'user' : 'service account');
      }
      await trx.deleteFrom('identity_api_keys').where('owner', '=', principalId).execute();
      const families = await trx
        .selectFrom('identity_token_families')
        .select(['id', 'expires_at'])
        .where('principal_id', '=', principalId)
        .where('revoked_at', 'is', null)
        .execute();
      for (const f of families) await deny(trx, `sid:${f.id}`, f.expires_at);
      await trx
        .updateTable('identity_token_families')
        .set({ revoked_at: now, revoked_reason: 'principal_deleted' })
        .where('principal_id', '=', principalId)
        .where('revoked_at', 'is', null)
        .execute();
    });
  }

  // ---- status (hot path) ----------------------------------------------------------------------------------

  async principalStatus(
    principalId: string,
    mappings: ReadonlyMap<string, readonly string[]>,
  ): Promise<PrincipalStatus | undefined> {
    const parsed = parsePrincipalId(principalId);
    if (parsed === undefined) return undefined;
    if (parsed.kind === 'user') {
      const row = await this.#store.db
        .selectFrom('identity_users')
        .select(['disabled', 'epoch', 'roles', 'groups'])
        .where('username', '=', parsed.name)
        .executeTakeFirst();
      if (row === undefined) return undefined;
      const groups = list(row.groups);
      const roles = new Set(list(row.roles));
      for (const g of groups) for (const r of mappings.get(g) ?? []) roles.add(r);
      return {
        kind: 'user',
        disabled: row.disabled === 1,
        epoch: row.epoch,
        roles: [...roles].sort(),
        groups,
      };
    }
    const row = await this.#store.db
      .selectFrom('identity_service_accounts')
      .select(['disabled', 'epoch', 'roles'])
      .where('client_id', '=', parsed.name)
      .executeTakeFirst();
    if (row === undefined) return undefined;
    return {
      kind: 'service',
      disabled: row.disabled === 1,
      epoch: row.epoch,
      roles: list(row.roles),
      groups: [],
    };
  }

  // ---- API keys -------------------------------------------------------------------------------------------

  async insertApiKey(key: StoredApiKey): Promise<void> {
    await this.#store.db
      .insertInto('identity_api_keys')
      .values({
        id: key.id,
        env: key.env,
        hash: key.hash,
        scopes: JSON.stringify(key.scopes),
        owner: key.owner,
        name: checkText(key.name, 'name'),
        created_at: key.createdAt,
        expires_at: key.expiresAt,
        last_used_at: key.lastUsedAt,
        revoked_at: key.revokedAt,
      })
      .execute();
  }

  async getApiKey(id: string): Promise<StoredApiKey | undefined> {
    const row = await this.#store.db
      .selectFrom('identity_api_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : toApiKey(row);
  }

  async listApiKeys(owner?: string): Promise<StoredApiKey[]> {
    let query = this.#store.db.selectFrom('identity_api_keys').selectAll();
    if (owner !== undefined) query = query.where('owner', '=', owner);
    return (await query.orderBy('created_at').orderBy('id').execute()).map(toApiKey);
  }

  async revokeApiKey(id: string): Promise<boolean> {
    const result = await this.#store.db
      .updateTable('identity_api_keys')
      .set({ revoked_at: this.#now() })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async touchApiKey(id: string, at: number): Promise<void> {
    await this.#store.db
      .updateTable('identity_api_keys')
      .set({ last_used_at: at })
      .where('id', '=', id)
      .execute();
  }

  // ---- role mappings --------------------------------------------------------------------------------------

  async putRoleMapping(group: string, roles: readonly string[]): Promise<void> {
    const [name] = checkGroups([group]);
    const value = JSON.stringify(checkRoles(roles));
    const now = this.#now();
    await this.#store.db
      .insertInto('identity_role_mappings')
      .values({ group_name: name ?? group, roles: value, updated_at: now })
      .onConflict((oc) => oc.column('group_name').doUpdateSet({ roles: value, updated_at: now }))
      .execute();
  }

  async deleteRoleMapping(group: string): Promise<void> {
    const result = await this.#store.db
      .deleteFrom('identity_role_mappings')
      .where('group_name', '=', group)
      .executeTakeFirst();
    if (Number(result.numDeletedRows) !== 1) throw new IdentityNotFoundError('role mapping');
  }

  async roleMappings(): Promise<Map<string, readonly string[]>> {
    const rows = await this.#store.db
      .selectFrom('identity_role_mappings')
      .selectAll()
      .orderBy('group_name')
      .execute();
    return new Map(rows.map((r) => [r.group_name, list(r.roles)]));
  }

  // ---- refresh-token families -----------------------------------------------------------------------------

  async createFamily(
    family: TokenFamily,
    firstToken: { id: string; hash: string; expiresAt: number },
  ): Promise<void> {
    await this.#store.transaction(async (trx) => {
      await trx
        .insertInto('identity_token_families')
        .values({
          id: family.id,
          principal_id: family.principalId,
          client_id: family.clientId,
          scope: family.scope,
          amr: JSON.stringify(family.amr),
          auth_time: family.authTime,
          mfa_at: family.mfaAt,
          epoch: family.epoch,
          created_at: family.createdAt,
          expires_at: family.expiresAt,
          revoked_at: null,
          revoked_reason: null,
          login_network: family.loginNetwork,
        })
        .execute();
      await insertRefreshToken(trx, family.id, firstToken, family.createdAt);
    });
  }

  /**
   * Spends refresh token `id` and stores its successor, atomically. A token presented a second time means it
   * was copied: the whole family is revoked (and its access tokens denied) and `reused` returned. The hash is
   * checked with `matches` (constant time) before anything is written, so a guessed id cannot revoke a family.
   */
  async rotateRefreshToken(
    id: string,
    matches: (storedHash: string) => boolean,
    successor: { id: string; hash: string; expiresAt: number },
    clientId: string,
  ): Promise<RefreshOutcome> {
    const now = this.#now();
    let outcome: RefreshOutcome = { ok: false, reason: 'unknown' };
    let reused: { familyId: string; expiresAt: number } | undefined;
    await this.#store.transaction(async (trx) => {
      reused = undefined;
      const token = await trx
        .selectFrom('identity_refresh_tokens')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      if (token === undefined) {
        matches('');
        outcome = { ok: false, reason: 'unknown' };
        return;
      }
      if (!matches(token.hash)) {
        outcome = { ok: false, reason: 'mismatch' };
        return;
      }
      const family = await trx
        .selectFrom('identity_token_families')
        .selectAll()
        .where('id', '=', token.family_id)
        .executeTakeFirst();
      if (family === undefined || family.client_id !== clientId) {
        outcome = { ok: false, reason: 'mismatch' };
        return;
      }
      if (family.revoked_at !== null) {
        outcome = { ok: false, reason: 'revoked' };
        return;
      }
      if (token.used_at !== null) {
        reused = { familyId: family.id, expiresAt: family.expires_at };
        outcome = { ok: false, reason: 'reused' };
        return;
      }
      if (!(now < token.expires_at) || !(now < family.expires_at)) {
        outcome = { ok: false, reason: 'expired' };
        return;
      }
      const spent = await trx
        .updateTable('identity_refresh_tokens')
        .set({ used_at: now })
        .where('id', '=', id)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(spent.numUpdatedRows) !== 1) {
        reused = { familyId: family.id, expiresAt: family.expires_at };
        outcome = { ok: false, reason: 'reused' };
        return;
      }
      const expiresAt = Math.min(successor.expiresAt, family.expires_at);
      await insertRefreshToken(trx, family.id, { ...successor, expiresAt }, now);
      outcome = { ok: true, family: toFamily(family) };
    });
    // Revoked in its own transaction: the reuse must stick even though the refresh itself is refused.
    if (reused !== undefined) await this.revokeFamily(reused.familyId, 'refresh_token_reuse');
    return outcome;
  }

  async getFamilyOfRefreshToken(id: string): Promise<{ family: TokenFamily; hash: string } | undefined> {
    const row = await this.#store.db
      .selectFrom('identity_refresh_tokens')
      .innerJoin('identity_token_families', 'identity_token_families.id', 'identity_refresh_tokens.family_id')
      .selectAll('identity_token_families')
      .select('identity_refresh_tokens.hash as token_hash')
      .where('identity_refresh_tokens.id', '=', id)
      .executeTakeFirst();
    if (row === undefined) return undefined;
    const { token_hash, ...family } = row;
    return { family: toFamily(family), hash: token_hash };
  }

  async getFamily(id: string): Promise<TokenFamily | undefined> {
    const row = await this.#store.db
      .selectFrom('identity_token_families')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : toFamily(row);
  }

  /** Revokes a family: its refresh tokens stop working and its access tokens are denied until they expire. */
  async revokeFamily(id: string, reason: string): Promise<void> {
    const now = this.#now();
    await this.#store.transaction(async (trx) => {
      const family = await trx
        .selectFrom('identity_token_families')
        .select(['expires_at', 'revoked_at'])
        .where('id', '=', id)
        .executeTakeFirst();
      if (family === undefined || family.revoked_at !== null) return;
      await trx
        .updateTable('identity_token_families')
        .set({ revoked_at: now, revoked_reason: reason })
        .where('id', '=', id)
        .execute();
      await deny(trx, `sid:${id}`, family.expires_at);
    });
  }

  // ---- denylist, replay cache, meta -----------------------------------------------------------------------

  async denyAccessToken(jti: string, expiresAt: number): Promise<void> {
    await deny(this.#store.db, `jti:${jti}`, expiresAt);
  }

  async activeDenylist(now: number): Promise<Set<string>> {
    const rows = await this.#store.db
      .selectFrom('identity_denylist')
      .select('id')
      .where('expires_at', '>', now)
      .execute();
    return new Set(rows.map((r) => r.id));
  }

  /** Records a client-assertion id; false if it was already spent (a replay). */
  async spendAssertionId(id: string, expiresAt: number): Promise<boolean> {
    try {
      await this.#store.db
        .insertInto('identity_assertion_jtis')
        .values({ id, expires_at: expiresAt })
        .execute();
      return true;
    } catch (err) {
      if (err instanceof StoreConflictError) return false;
      throw err;
    }
  }

  /** Deletes expired denylist entries, spent assertion ids, and refresh tokens of expired families. */
  async purgeExpired(now: number): Promise<void> {
    await this.#store.transaction(async (trx) => {
      await trx.deleteFrom('identity_denylist').where('expires_at', '<=', now).execute();
      await trx.deleteFrom('identity_assertion_jtis').where('expires_at', '<=', now).execute();
      const expired = trx.selectFrom('identity_token_families').select('id').where('expires_at', '<=', now);
      await trx.deleteFrom('identity_refresh_tokens').where('family_id', 'in', expired).execute();
      await trx.deleteFrom('identity_token_families').where('expires_at', '<=', now).execute();
    });
  }

  async getMeta(name: string): Promise<string | undefined> {
    const row = await this.#store.db
      .selectFrom('identity_meta')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirst();
    return row?.value;
  }

  /**
   * Runs `fn` in the same transaction that inserts meta row `name`; false (and nothing done) if the row exists.
   * This is what makes the bootstrap redemption happen once, across processes.
   */
  async onceMeta(
    name: string,
    value: string,
    fn: (trx: IdentityTransaction) => Promise<void>,
  ): Promise<boolean> {
    try {
      await this.#store.transaction(async (trx) => {
        await trx.insertInto('identity_meta').values({ name, value, updated_at: this.#now() }).execute();
        await fn(trx);
      });
      return true;
    } catch (err) {
      if (err instanceof StoreConflictError && /identity_meta/.test(err.constraint ?? 'identity_meta'))
        return false;
      throw err;
    }
  }

  /** Inserts a user inside a caller's transaction (bootstrap). */
  async insertUserIn(trx: IdentityTransaction, input: NewUser): Promise<void> {
    await trx
      .insertInto('identity_users')
      .values({
        username: checkUsername(input.username),
        source: 'local',
        issuer: null,
        subject: null,
        ...newUserColumns(input, this.#now()),
      })
      .execute();
  }
}

export type IdentityTransaction = Parameters<Parameters<Store<IdentityDB>['transaction']>[0]>[0];
