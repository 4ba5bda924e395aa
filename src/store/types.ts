import type { Kysely, Transaction } from 'kysely';

/** The two SQL dialects the store runs on. */
export type StoreDialect = 'sqlite' | 'postgres';

export interface SqliteStoreConfig {
  kind: 'sqlite';
  /** Database file (created with mode 0600; its directory with 0700 if missing), or `:memory:` for tests. */
  path: string;
  /**
   * How long a statement waits for another connection's write lock before failing with `StoreBusyError`
   * (SQLite's busy_timeout). The wait blocks the event loop: node:sqlite is synchronous. Default 5000 ms.
   */
  busyTimeoutMs?: number;
}

export interface PostgresStoreConfig {
  kind: 'postgres';
  /** libpq-style connection URL, e.g. `postgres://warden@db.internal:5432/warden`. */
  url: string;
  /** Schema for every table (the connection's search_path); created by `migrate` if missing. Default: the
   *  server's search_path (normally `public`). */
  schema?: string;
  /** Pool size. Default 10. */
  maxConnections?: number;
}

export type StoreConfig = SqliteStoreConfig | PostgresStoreConfig;

/**
 * Binary values: written as `Uint8Array` (a `Buffer` works too), always read back as a plain `Uint8Array`
 * (not a `Buffer`) on both dialects. Column type: `columnTypes(dialect).bytes`.
 */
export type Bytes = Uint8Array;

/**
 * Instants: milliseconds since the Unix epoch, UTC, as a JavaScript `number` (integer). Column type:
 * `columnTypes(dialect).epochMillis` (SQLite INTEGER, PostgreSQL BIGINT). Reading an integer beyond
 * ±(2^53 − 1) fails rather than losing precision.
 */
export type EpochMillis = number;

/**
 * Booleans: the integers 0 and 1 on both dialects (SQLite has no boolean type, and the store cannot know a
 * column's declared type when it reads a row). Column type `columnTypes(dialect).flag` with
 * `flagCheck(column)`. A JavaScript boolean bound as a parameter is sent as 1 or 0.
 */
export type Flag = 0 | 1;

/**
 * One schema change. `id` is namespaced by the owning domain: `kms/0001-keys`. Once released, a migration is
 * never edited or removed: a later one changes what it did.
 */
export interface Migration {
  readonly id: string;
  /**
   * Applies the change. `db` is the migration transaction: every statement in it commits or rolls back together
   * with the rest of the batch. Kysely<any> because a migration runs against the schema as it was at that point in
   * history, not the current `DB` interface.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  up(db: Kysely<any>, dialect: StoreDialect): Promise<void>;
}

export interface MigrateResult {
  /** Ids applied by this call, in order (empty when the database was already up to date). */
  applied: string[];
}

export interface TransactionOptions {
  /**
   * PostgreSQL only (SQLite transactions are always serialisable). Default 'serializable'.
   * 'read committed' suits hot rows (counters, the head of a hash chain) that every transaction updates: under
   * SERIALIZABLE, any two concurrent transactions writing the same row fail one of them (it is retried), so a hot
   * row means many retries. Under 'read committed' the store does not prevent lost updates: read the row
   * `.forUpdate()` before computing its new value, or update it in one statement (`set n = n + 1`).
   */
  isolation?: 'serializable' | 'read committed';
  /**
   * PostgreSQL only: how many times the function runs in total when the transaction hits a serialization
   * failure or a deadlock before `StoreBusyError` is raised. Default 30. SQLite transactions never fail that
   * way (writers are serialised by `BEGIN IMMEDIATE`) and are never retried.
   */
  maxAttempts?: number;
}

export interface Store<DB> {
  readonly kind: StoreDialect;
  /**
   * SQLite: the database file's real path, so that worker threads can open their own read-only connections for
   * bulk scans (WAL readers never block the writer). Undefined for PostgreSQL and `:memory:`.
   */
  readonly file?: string | undefined;
  /** The query builder. Statements outside `transaction` autocommit one by one. */
  readonly db: Kysely<DB>;
  /**
   * Applies the pending migrations of the given list, in list order, in one transaction, and records them in
   * `warden_migrations`. Idempotent. Refuses (StoreMigrationError) when the database has applied a migration of
   * one of the list's namespaces that the list does not contain (code older than the database), or when a pending
   * migration sits before an applied one in the list. Concurrent callers (other processes) are serialised.
   */
  migrate(migrations: readonly Migration[]): Promise<MigrateResult>;
  /**
   * Runs `fn` in a transaction that commits when it resolves and rolls back when it throws.
   * SQLite: `BEGIN IMMEDIATE` — every writing transaction of every process on the file runs one at a time.
   * PostgreSQL: SERIALIZABLE, retried on serialization failure (so `fn` may run more than once: keep side effects
   * other than database writes out of it).
   */
  transaction<T>(fn: (trx: Transaction<DB>) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * After deleting secrets: makes the deletion reach the storage the store controls. SQLite: with secure_delete
   * the freed content is already zeroed in the pages written; this checkpoints the WAL into the main file and
   * truncates the WAL, so no older copy of the pages stays in either file. `complete` is false when a reader
   * (another connection) held the WAL and the checkpoint could not finish — call again later.
   * PostgreSQL: runs VACUUM on the given tables (all tables when none are given); this does NOT guarantee the bytes
   * are gone (see docs/store.md).
   */
  scrub(tables?: readonly string[]): Promise<{ complete: boolean }>;
  /** Closes the connection(s). Idempotent. */
  close(): Promise<void>;
}
