import { realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import type { Transaction } from 'kysely';
import { wardenDialect } from './dialect.ts';
import { StoreBusyError, StoreError } from './errors.ts';
import { runMigrations } from './migrations.ts';
import { openNodeSqlite } from './node-sqlite.ts';
import { createPool } from './postgres.ts';
import type {
  MigrateResult,
  Migration,
  PostgresStoreConfig,
  SqliteStoreConfig,
  Store,
  StoreConfig,
  StoreDialect,
  TransactionOptions,
} from './types.ts';

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const DEFAULT_MAX_ATTEMPTS = 30;

/** Full-jitter exponential backoff: 0..min(250, 5 * 2^attempt) ms. */
function backoff(attempt: number): number {
  return Math.random() * Math.min(250, 5 * 2 ** attempt);
}

class KyselyStore<DB> implements Store<DB> {
  readonly kind: StoreDialect;
  readonly db: Kysely<DB>;
  readonly file: string | undefined;
  readonly #schema: string | undefined;
  readonly #onClose: (() => void) | undefined;
  #closed: Promise<void> | undefined;

  constructor(
    kind: StoreDialect,
    db: Kysely<DB>,
    schema: string | undefined,
    onClose?: () => void,
    file?: string,
  ) {
    this.kind = kind;
    this.db = db;
    this.file = file;
    this.#schema = schema;
    this.#onClose = onClose;
  }

  async migrate(migrations: readonly Migration[]): Promise<MigrateResult> {
    return await runMigrations(this.db, this.kind, migrations, this.#schema);
  }

  async transaction<T>(fn: (trx: Transaction<DB>) => Promise<T>, options?: TransactionOptions): Promise<T> {
    if (this.kind === 'sqlite') {
      // BEGIN IMMEDIATE (see dialect.ts): serialisable, and never retried.
      return await this.db.transaction().execute(fn);
    }
    const maxAttempts = Math.max(1, options?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db
          .transaction()
          .setIsolationLevel(options?.isolation ?? 'serializable')
          .execute(fn);
      } catch (err) {
        if (!(err instanceof StoreBusyError) || attempt >= maxAttempts) throw err;
        await sleep(backoff(attempt));
      }
    }
  }

  async scrub(tables?: readonly string[]): Promise<{ complete: boolean }> {
    if (this.kind === 'sqlite') {
      // Columns: busy (1 when the checkpoint could not finish), log (WAL frames), checkpointed.
      const { rows } = await sql<{ busy: number }>`pragma wal_checkpoint(TRUNCATE)`.execute(this.db);
      return { complete: rows[0]?.busy === 0 };
    }
    if (tables === undefined || tables.length === 0) {
      await sql`vacuum`.execute(this.db);
    } else {
      await sql`vacuum ${sql.join(tables.map((t) => sql.table(t)))}`.execute(this.db);
    }
    return { complete: true };
  }

  async close(): Promise<void> {
    this.#closed ??= this.db.destroy().finally(this.#onClose);
    await this.#closed;
  }
}

// SQLite files open in this process. node:sqlite is synchronous: if two connections of one process shared a file,
// one could wait for the write lock (busy_timeout) while blocking the event loop that the lock holder needs to
// finish its transaction — a stall, then StoreBusyError. So a file is opened once per process; share the Store.
// Other processes are fine: they wait for the lock while this one keeps running.
const openFiles = new Set<string>();

function openSqlite<DB>(config: SqliteStoreConfig): Store<DB> {
  // Opened now, not lazily: a bad path or a refused setting fails openStore itself.
  const database = openNodeSqlite(config.path, config.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
  const file = config.path === ':memory:' ? undefined : realpathSync(config.path);
  if (file !== undefined) {
    if (openFiles.has(file)) {
      database.close();
      throw new StoreError(`SQLite database ${file} is already open in this process: share its Store`);
    }
    openFiles.add(file);
  }
  const db = new Kysely<DB>({ dialect: wardenDialect('sqlite', new SqliteDialect({ database })) });
  return new KyselyStore(
    'sqlite',
    db,
    undefined,
    () => {
      if (file !== undefined) openFiles.delete(file);
      // Kysely closes the database only if it was ever used; close it in any case.
      database.close();
    },
    file,
  );
}

async function openPostgres<DB>(config: PostgresStoreConfig): Promise<Store<DB>> {
  const pool = createPool(config);
  const db = new Kysely<DB>({ dialect: wardenDialect('postgres', new PostgresDialect({ pool })) });
  try {
    // Fail now on a wrong URL, credentials or an unreachable server, not at the first query.
    await sql`select 1`.execute(db);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return new KyselyStore('postgres', db, config.schema);
}

/**
 * Opens the store. `DB` describes the tables the caller queries (Kysely style):
 * `interface DB { kms_keys: { id: string; material: Bytes; created_at: EpochMillis } }`.
 */
export async function openStore<DB>(config: StoreConfig): Promise<Store<DB>> {
  switch (config.kind) {
    case 'sqlite':
      return openSqlite<DB>(config);
    case 'postgres':
      return await openPostgres<DB>(config);
  }
}
