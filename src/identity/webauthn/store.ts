import type { Kysely } from 'kysely';
import { columnTypes, flagCheck, StoreConflictError } from '../../store/index.ts';
import type { Bytes, EpochMillis, Flag, Migration, Store, StoreDialect } from '../../store/index.ts';
import { WebAuthnError } from './errors.ts';

/** A registered security key. `id` is the credential id in base64url, unique across all users. */
export interface WebAuthnCredential {
  readonly id: string;
  readonly userId: string;
  /** COSE public key, as the authenticator sent it. */
  readonly publicKey: Uint8Array;
  /** Last signature counter seen (0 for authenticators without a counter). */
  readonly counter: number;
  readonly transports: readonly string[];
  /** Authenticator model (AAGUID), all zeros with `none` attestation on most keys. */
  readonly aaguid: string;
  /** Attestation statement format verified at registration (`none`, `packed`, ...). */
  readonly attestationFormat: string;
  readonly deviceType: 'singleDevice' | 'multiDevice';
  readonly backedUp: boolean;
  /** A label the user chose. */
  readonly name: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  /** Set when a counter regression was seen: the key may be cloned and is refused until removed. */
  readonly suspendedAt: number | null;
}

/** Persistence of credentials. Implementations enforce the uniqueness of `id`. */
export interface WebAuthnCredentialStore {
  /** Throws `WebAuthnError('webauthn_credential_exists')` when the id is already registered (to anyone). */
  add(credential: WebAuthnCredential): Promise<void>;
  get(id: string): Promise<WebAuthnCredential | undefined>;
  listForUser(userId: string): Promise<WebAuthnCredential[]>;
  /** Compare-and-set of the counter: false when it was no longer `expected` (a concurrent use). */
  recordUse(id: string, expected: number, counter: number, usedAt: number): Promise<boolean>;
  suspend(id: string, at: number): Promise<void>;
  /** False when the user has no such credential. */
  remove(userId: string, id: string): Promise<boolean>;
}

export interface WebAuthnSchema {
  webauthn_credentials: {
    id: string;
    user_id: string;
    public_key: Bytes;
    counter: number;
    transports: string;
    aaguid: string;
    attestation_format: string;
    device_type: string;
    backed_up: Flag;
    name: string;
    created_at: EpochMillis;
    last_used_at: EpochMillis | null;
    suspended_at: EpochMillis | null;
  };
}

export const WEBAUTHN_MIGRATIONS: readonly Migration[] = [
  {
    id: 'identity-webauthn/0001-credentials',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('webauthn_credentials')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('user_id', t.text, (c) => c.notNull())
        .addColumn('public_key', t.bytes, (c) => c.notNull())
        .addColumn('counter', t.int64, (c) => c.notNull())
        .addColumn('transports', t.text, (c) => c.notNull())
        .addColumn('aaguid', t.text, (c) => c.notNull())
        .addColumn('attestation_format', t.text, (c) => c.notNull())
        .addColumn('device_type', t.text, (c) => c.notNull())
        .addColumn('backed_up', t.flag, (c) => c.notNull().check(flagCheck('backed_up')))
        .addColumn('name', t.text, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('last_used_at', t.epochMillis)
        .addColumn('suspended_at', t.epochMillis)
        .execute();
      await db.schema
        .createIndex('webauthn_credentials_user')
        .on('webauthn_credentials')
        .column('user_id')
        .execute();
    },
  },
];

function fromRow(row: WebAuthnSchema['webauthn_credentials']): WebAuthnCredential {
  return {
    id: row.id,
    userId: row.user_id,
    publicKey: row.public_key,
    counter: row.counter,
    transports: JSON.parse(row.transports) as string[],
    aaguid: row.aaguid,
    attestationFormat: row.attestation_format,
    deviceType: row.device_type === 'multiDevice' ? 'multiDevice' : 'singleDevice',
    backedUp: row.backed_up === 1,
    name: row.name,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    suspendedAt: row.suspended_at,
  };
}

/** The credential store over Warden's store (SQLite or PostgreSQL). Call `open` to migrate first. */
export class SqlWebAuthnCredentialStore implements WebAuthnCredentialStore {
  readonly #store: Store<WebAuthnSchema>;

  constructor(store: Store<WebAuthnSchema>) {
    this.#store = store;
  }

  static async open(store: Store<WebAuthnSchema>): Promise<SqlWebAuthnCredentialStore> {
    await store.migrate(WEBAUTHN_MIGRATIONS);
    return new SqlWebAuthnCredentialStore(store);
  }

  async add(c: WebAuthnCredential): Promise<void> {
    try {
      await this.#store.db
        .insertInto('webauthn_credentials')
        .values({
          id: c.id,
          user_id: c.userId,
          public_key: c.publicKey,
          counter: c.counter,
          transports: JSON.stringify(c.transports),
          aaguid: c.aaguid,
          attestation_format: c.attestationFormat,
          device_type: c.deviceType,
          backed_up: c.backedUp ? 1 : 0,
          name: c.name,
          created_at: c.createdAt,
          last_used_at: c.lastUsedAt,
          suspended_at: c.suspendedAt,
        })
        .execute();
    } catch (err) {
      if (err instanceof StoreConflictError) {
        throw new WebAuthnError('webauthn_credential_exists', 'duplicate credential id', { cause: err });
      }
      throw err;
    }
  }

  async get(id: string): Promise<WebAuthnCredential | undefined> {
    const row = await this.#store.db
      .selectFrom('webauthn_credentials')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : fromRow(row);
  }

  async listForUser(userId: string): Promise<WebAuthnCredential[]> {
    const rows = await this.#store.db
      .selectFrom('webauthn_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(fromRow);
  }

  async recordUse(id: string, expected: number, counter: number, usedAt: number): Promise<boolean> {
    const result = await this.#store.db
      .updateTable('webauthn_credentials')
      .set({ counter, last_used_at: usedAt })
      .where('id', '=', id)
      .where('counter', '=', expected)
      .where('suspended_at', 'is', null)
      .executeTakeFirst();
    return result.numUpdatedRows === 1n;
  }

  async suspend(id: string, at: number): Promise<void> {
    await this.#store.db
      .updateTable('webauthn_credentials')
      .set({ suspended_at: at })
      .where('id', '=', id)
      .where('suspended_at', 'is', null)
      .execute();
  }

  async remove(userId: string, id: string): Promise<boolean> {
    const result = await this.#store.db
      .deleteFrom('webauthn_credentials')
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return result.numDeletedRows === 1n;
  }
}
