import type { Kysely } from 'kysely';
import { columnTypes } from '../store/index.ts';
import type { EpochMillis, Migration, Store, StoreDialect } from '../store/index.ts';
import type { PolicyStore } from './store.ts';

/**
 * Custom Cedar policies persisted in Warden's store, so that policies uploaded through the API survive restarts
 * and reach every node: each node reloads when the table's change counter moves (polled, so a change takes
 * effect everywhere within `pollMs`). Text is validated against the schema before it is stored; a row that no
 * longer validates (after a schema change) is reported and left out, never half-applied.
 */
export interface PoliciesTable {
  id: string;
  text: string;
  updated_at: EpochMillis;
  updated_by: string;
}

export interface PolicyStateTable {
  id: string;
  /** int64: PostgreSQL's driver returns it as a string. */
  version: number | string;
}

export interface PoliciesDB {
  policy_custom: PoliciesTable;
  policy_state: PolicyStateTable;
}

export const POLICY_MIGRATIONS: readonly Migration[] = [
  {
    id: 'policy/0001-custom-policies',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('policy_custom')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('policy_state')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('version', t.int64, (c) => c.notNull())
        .execute();
    },
  },
];

const STATE_ID = 'custom';
/** Policies loaded from the configured policy directory are named `file.<name>` and are not the table's. */
export const FILE_POLICY_PREFIX = 'file.';

export class PolicyPersistenceError extends Error {
  readonly code = 'invalid_request';
  readonly httpStatus = 400;
}

export interface SqlPoliciesOptions {
  readonly pollMs?: number;
  /** Rows that no longer validate: reported, not installed. */
  readonly onInvalid?: (id: string, err: unknown) => void;
  readonly now?: () => number;
}

export class SqlPolicies {
  readonly #store: Store<PoliciesDB>;
  readonly #policies: PolicyStore;
  readonly #options: SqlPoliciesOptions;
  readonly #timer: NodeJS.Timeout;
  #version = -1;

  private constructor(store: Store<PoliciesDB>, policies: PolicyStore, options: SqlPoliciesOptions) {
    this.#store = store;
    this.#policies = policies;
    this.#options = options;
    this.#timer = setInterval(() => {
      this.sync().catch((err: unknown) => {
        options.onInvalid?.('*', err);
      });
    }, options.pollMs ?? 2000);
    this.#timer.unref();
  }

  /** Migrates, loads every stored policy into `policies`, and keeps it in step with the table. */
  static async open(
    store: Store<PoliciesDB>,
    policies: PolicyStore,
    options: SqlPoliciesOptions = {},
  ): Promise<SqlPolicies> {
    await store.migrate(POLICY_MIGRATIONS);
    const sql = new SqlPolicies(store, policies, options);
    await sql.sync();
    return sql;
  }

  /** Installs the stored set when it changed since the last sync. */
  async sync(): Promise<void> {
    const state = await this.#store.db
      .selectFrom('policy_state')
      .select('version')
      .where('id', '=', STATE_ID)
      .executeTakeFirst();
    const version = Number(state?.version ?? 0);
    if (version === this.#version) return;
    const rows = await this.#store.db.selectFrom('policy_custom').selectAll().orderBy('id').execute();
    const stored = new Set(rows.map((r) => r.id));
    for (const entry of this.#policies.list()) {
      if (entry.source === 'custom' && !entry.id.startsWith(FILE_POLICY_PREFIX) && !stored.has(entry.id)) {
        this.#policies.remove(entry.id);
      }
    }
    for (const row of rows) {
      if (this.#policies.get(row.id)?.text === row.text) continue;
      try {
        this.#policies.add(row.id, row.text);
      } catch (err) {
        this.#options.onInvalid?.(row.id, err);
      }
    }
    this.#version = version;
  }

  /** Validates (through the policy store), stores, and installs a custom policy. Returns the policy-set version. */
  async put(id: string, text: string, by: string): Promise<number> {
    if (id.startsWith(FILE_POLICY_PREFIX)) {
      throw new PolicyPersistenceError(
        `policy ids starting with ${FILE_POLICY_PREFIX} come from the policy directory`,
      );
    }
    // Validated first, installed only once stored: a failed write must not leave this node enforcing a policy
    // that no other node (and no restart) knows.
    this.#policies.withChange({ put: { id, text } });
    const now = (this.#options.now ?? Date.now)();
    await this.#store.transaction(async (trx) => {
      await trx
        .insertInto('policy_custom')
        .values({ id, text, updated_at: now, updated_by: by })
        .onConflict((oc) => oc.column('id').doUpdateSet({ text, updated_at: now, updated_by: by }))
        .execute();
      await this.#bump(trx);
    });
    return this.#policies.add(id, text);
  }

  /** Removes a custom policy; false when there was none. */
  async remove(id: string): Promise<boolean> {
    if (id.startsWith(FILE_POLICY_PREFIX)) {
      throw new PolicyPersistenceError(`policy ${id} comes from the policy directory: remove the file`);
    }
    if (this.#policies.get(id) !== undefined) this.#policies.withChange({ remove: id });
    await this.#store.transaction(async (trx) => {
      await trx.deleteFrom('policy_custom').where('id', '=', id).execute();
      await this.#bump(trx);
    });
    return this.#policies.remove(id);
  }

  async #bump(trx: Kysely<PoliciesDB>): Promise<void> {
    const state = await trx
      .selectFrom('policy_state')
      .select('version')
      .where('id', '=', STATE_ID)
      .executeTakeFirst();
    const next = Number(state?.version ?? 0) + 1;
    if (state === undefined)
      await trx.insertInto('policy_state').values({ id: STATE_ID, version: next }).execute();
    else await trx.updateTable('policy_state').set({ version: next }).where('id', '=', STATE_ID).execute();
    this.#version = next;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
