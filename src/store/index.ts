// Warden's persistence layer: one Store interface over SQLite (node:sqlite, embedded, the default) and
// PostgreSQL (pg), built on Kysely. See docs/store.md.

export { openStore } from './store.ts';
export { columnTypes, flagCheck, MIGRATIONS_TABLE } from './migrations.ts';
export type { ColumnTypes } from './migrations.ts';
export { StoreBusyError, StoreConflictError, StoreError, StoreMigrationError } from './errors.ts';
export type {
  Bytes,
  EpochMillis,
  Flag,
  MigrateResult,
  Migration,
  PostgresStoreConfig,
  SqliteStoreConfig,
  Store,
  StoreConfig,
  StoreDialect,
  TransactionOptions,
} from './types.ts';
