import type { Kysely } from 'kysely';
import { columnTypes, flagCheck } from '../store/index.ts';
import type { EpochMillis, Flag, Migration, StoreDialect } from '../store/index.ts';

/**
 * The identity service's tables, in Warden's main store. Lists (roles, groups, scopes, recovery-code hashes,
 * JWKS) are JSON text, which reads back the same on both dialects. No column holds a secret in clear: passwords
 * are argon2id PHC strings, TOTP seeds are sealed (SecretSealer), recovery codes, API keys, client secrets and
 * refresh tokens are keyed hashes.
 */
export interface IdentityDB {
  identity_users: {
    username: string;
    source: string;
    issuer: string | null;
    subject: string | null;
    display_name: string;
    password_hash: string | null;
    totp_secret: string | null;
    totp_pending: string | null;
    totp_last_step: number | null;
    totp_enrolled_at: EpochMillis | null;
    recovery_hashes: string | null;
    groups: string;
    roles: string;
    disabled: Flag;
    epoch: number;
    created_at: EpochMillis;
    updated_at: EpochMillis;
    last_login_at: EpochMillis | null;
  };
  identity_service_accounts: {
    client_id: string;
    description: string;
    auth_method: string;
    secret_hash: string | null;
    jwks: string | null;
    tls_subject_dn: string | null;
    tls_spki_sha256: string | null;
    roles: string;
    disabled: Flag;
    epoch: number;
    created_at: EpochMillis;
    updated_at: EpochMillis;
  };
  identity_api_keys: {
    id: string;
    env: string;
    hash: string;
    scopes: string;
    owner: string;
    name: string;
    created_at: EpochMillis;
    expires_at: EpochMillis;
    last_used_at: EpochMillis | null;
    revoked_at: EpochMillis | null;
  };
  identity_role_mappings: { group_name: string; roles: string; updated_at: EpochMillis };
  identity_token_families: {
    id: string;
    principal_id: string;
    client_id: string;
    scope: string;
    amr: string;
    auth_time: EpochMillis;
    mfa_at: EpochMillis | null;
    epoch: number;
    created_at: EpochMillis;
    expires_at: EpochMillis;
    revoked_at: EpochMillis | null;
    revoked_reason: string | null;
    /** The network (IPv4 /24, IPv6 /48) the session logged in from; null when unknown. */
    login_network: string | null;
  };
  identity_refresh_tokens: {
    id: string;
    family_id: string;
    hash: string;
    created_at: EpochMillis;
    expires_at: EpochMillis;
    used_at: EpochMillis | null;
  };
  /** Revoked access tokens (`jti:<jti>`) and token families (`sid:<id>`), kept until the last token expires. */
  identity_denylist: { id: string; expires_at: EpochMillis };
  /** Spent client-assertion jtis (RFC 7523 replay cache), keyed by SHA-256 of client id and jti. */
  identity_assertion_jtis: { id: string; expires_at: EpochMillis };
  identity_meta: { name: string; value: string; updated_at: EpochMillis };
}

export const IDENTITY_MIGRATIONS: readonly Migration[] = [
  {
    id: 'identity/0001-directory',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('identity_users')
        .addColumn('username', 'text', (c) => c.primaryKey())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('issuer', 'text')
        .addColumn('subject', 'text')
        .addColumn('display_name', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('totp_secret', 'text')
        .addColumn('totp_pending', 'text')
        .addColumn('totp_last_step', t.int64)
        .addColumn('totp_enrolled_at', t.epochMillis)
        .addColumn('recovery_hashes', 'text')
        .addColumn('groups', 'text', (c) => c.notNull())
        .addColumn('roles', 'text', (c) => c.notNull())
        .addColumn('disabled', t.flag, (c) => c.notNull().check(flagCheck('disabled')))
        .addColumn('epoch', t.int64, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .addColumn('last_login_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('identity_users_federated')
        .on('identity_users')
        .columns(['issuer', 'subject'])
        .unique()
        .execute();
      await db.schema
        .createTable('identity_service_accounts')
        .addColumn('client_id', 'text', (c) => c.primaryKey())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('auth_method', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text')
        .addColumn('jwks', 'text')
        .addColumn('tls_subject_dn', 'text')
        .addColumn('tls_spki_sha256', 'text')
        .addColumn('roles', 'text', (c) => c.notNull())
        .addColumn('disabled', t.flag, (c) => c.notNull().check(flagCheck('disabled')))
        .addColumn('epoch', t.int64, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('identity_api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('env', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('expires_at', t.epochMillis, (c) => c.notNull())
        .addColumn('last_used_at', t.epochMillis)
        .addColumn('revoked_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('identity_api_keys_owner')
        .on('identity_api_keys')
        .column('owner')
        .execute();
      await db.schema
        .createTable('identity_role_mappings')
        .addColumn('group_name', 'text', (c) => c.primaryKey())
        .addColumn('roles', 'text', (c) => c.notNull())
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('identity_token_families')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('principal_id', 'text', (c) => c.notNull())
        .addColumn('client_id', 'text', (c) => c.notNull())
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('amr', 'text', (c) => c.notNull())
        .addColumn('auth_time', t.epochMillis, (c) => c.notNull())
        .addColumn('mfa_at', t.epochMillis)
        .addColumn('epoch', t.int64, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('expires_at', t.epochMillis, (c) => c.notNull())
        .addColumn('revoked_at', t.epochMillis)
        .addColumn('revoked_reason', 'text')
        .execute();
      await db.schema
        .createIndex('identity_token_families_principal')
        .on('identity_token_families')
        .column('principal_id')
        .execute();
      await db.schema
        .createTable('identity_refresh_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('family_id', 'text', (c) => c.notNull().references('identity_token_families.id'))
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('expires_at', t.epochMillis, (c) => c.notNull())
        .addColumn('used_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('identity_refresh_tokens_family')
        .on('identity_refresh_tokens')
        .column('family_id')
        .execute();
      await db.schema
        .createTable('identity_denylist')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('expires_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('identity_denylist_expires')
        .on('identity_denylist')
        .column('expires_at')
        .execute();
      await db.schema
        .createTable('identity_assertion_jtis')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('expires_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('identity_meta')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .execute();
    },
  },
  {
    id: 'identity/0002-login-network',
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('identity_token_families').addColumn('login_network', 'text').execute();
    },
  },
];
