// Schema migrations. Each domain (kms, audit, ...) owns a list of migrations with ids in its own namespace
// (`kms/0001-keys`) and passes it to `Store.migrate`. The applied ids are recorded in `warden_migrations`.

import { sql } from 'kysely';
import type { Kysely, RawBuilder } from 'kysely';
import { StoreMigrationError } from './errors.ts';
import type { MigrateResult, Migration, StoreDialect } from './types.ts';

/** The table that records applied migrations, shared by every domain. */
export const MIGRATIONS_TABLE = 'warden_migrations';

/** Column types that keep one migration valid on both dialects, matching the value conventions. */
export interface ColumnTypes {
  /** Binary (keys, ciphertext, hashes), read as Uint8Array: SQLite BLOB, PostgreSQL BYTEA. */
  readonly bytes: 'blob' | 'bytea';
  /** Epoch milliseconds, read as number: SQLite INTEGER, PostgreSQL BIGINT. */
  readonly epochMillis: 'integer' | 'bigint';
  /** Any other 64-bit integer read as a number (|n| ≤ 2^53 − 1): SQLite INTEGER, PostgreSQL BIGINT. */
  readonly int64: 'integer' | 'bigint';
  /** A 0/1 flag: SQLite INTEGER, PostgreSQL SMALLINT. Add `.check(flagCheck(column))`. */
  readonly flag: 'integer' | 'smallint';
  /** Text: TEXT on both. */
  readonly text: 'text';
  /**
   * An auto-assigned 64-bit row id. Use with `.primaryKey()`: SQLite INTEGER PRIMARY KEY (the rowid), PostgreSQL
   * BIGSERIAL. Ids are increasing but may have gaps (PostgreSQL sequences do not roll back).
   */
  readonly autoIncrementId: 'integer' | 'bigserial';
}

export function columnTypes(dialect: StoreDialect): ColumnTypes {
  switch (dialect) {
    case 'sqlite':
      return {
        bytes: 'blob',
        epochMillis: 'integer',
        int64: 'integer',
        flag: 'integer',
        text: 'text',
        autoIncrementId: 'integer',
      };
    case 'postgres':
      return {
        bytes: 'bytea',
        epochMillis: 'bigint',
        int64: 'bigint',
        flag: 'smallint',
        text: 'text',
        autoIncrementId: 'bigserial',
      };
  }
}

/** CHECK expression that keeps a flag column to 0 and 1: `.addColumn('revoked', t.flag, (c) => c.notNull().check(flagCheck('revoked')))`. */
export function flagCheck(column: string): RawBuilder<unknown> {
  return sql`${sql.ref(column)} in (0, 1)`;
}

// `namespace/name`: the namespace is the owning domain.
const MIGRATION_ID = /^[a-z][a-z0-9_-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

function namespaceOf(id: string): string {
  return id.slice(0, id.indexOf('/'));
}

function validate(migrations: readonly Migration[]): void {
  const seen = new Set<string>();
  for (const m of migrations) {
    if (!MIGRATION_ID.test(m.id)) {
      throw new StoreMigrationError(
        `invalid migration id ${JSON.stringify(m.id)}: expected "namespace/name", e.g. "kms/0001-keys"`,
      );
    }
    if (seen.has(m.id)) throw new StoreMigrationError(`migration ${m.id} appears twice in the list`);
    seen.add(m.id);
  }
}

/**
 * Applies the pending migrations in one transaction. Called by Store.migrate; `db` is the store's Kysely.
 *
 * Concurrency: SQLite — the transaction starts with BEGIN IMMEDIATE, so a second migrator (another process) waits
 * for the first to commit and then finds nothing to do. PostgreSQL — the transaction takes a transaction-scoped
 * advisory lock first; it runs at READ COMMITTED so that the statements after the lock see what the previous
 * lock holder committed (a SERIALIZABLE snapshot would be taken by the lock statement itself, before the wait).
 */
export async function runMigrations(
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations run against no particular schema type.
  db: Kysely<any>,
  dialect: StoreDialect,
  migrations: readonly Migration[],
  schema: string | undefined,
): Promise<MigrateResult> {
  validate(migrations);
  const namespaces = new Set(migrations.map((m) => namespaceOf(m.id)));
  const t = columnTypes(dialect);

  return await db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      if (dialect === 'postgres') {
        await sql`select pg_advisory_xact_lock(hashtext(${MIGRATIONS_TABLE}))`.execute(trx);
        if (schema !== undefined) await trx.schema.createSchema(schema).ifNotExists().execute();
      }
      await trx.schema
        .createTable(MIGRATIONS_TABLE)
        .ifNotExists()
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('seq', t.int64, (c) => c.notNull())
        .addColumn('applied_at', t.epochMillis, (c) => c.notNull())
        .execute();

      const rows: { id: string; seq: number }[] = await trx
        .selectFrom(MIGRATIONS_TABLE)
        .select(['id', 'seq'])
        .orderBy('seq')
        .execute();
      const applied = new Set(rows.map((r) => r.id));
      const known = new Set(migrations.map((m) => m.id));

      for (const { id } of rows) {
        if (namespaces.has(namespaceOf(id)) && !known.has(id)) {
          throw new StoreMigrationError(
            `the database has migration ${id} applied, which this code does not know: ` +
              `it was written by a newer version of Warden; refusing to run an older version against it`,
          );
        }
      }

      // Within a namespace, applied migrations must be a prefix of the list: a migration inserted before one that is
      // already applied would run after it, which its author did not intend.
      const pendingSeen = new Map<string, string>();
      for (const m of migrations) {
        const ns = namespaceOf(m.id);
        const pendingBefore = pendingSeen.get(ns);
        if (!applied.has(m.id)) {
          if (pendingBefore === undefined) pendingSeen.set(ns, m.id);
        } else if (pendingBefore !== undefined) {
          throw new StoreMigrationError(
            `migration ${pendingBefore} is pending but comes before ${m.id}, which is already applied: ` +
              `new migrations go at the end of the list`,
          );
        }
      }

      const result: string[] = [];
      let seq = rows.reduce((max, r) => Math.max(max, r.seq), 0);
      for (const m of migrations) {
        if (applied.has(m.id)) continue;
        try {
          await m.up(trx, dialect);
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          throw new StoreMigrationError(`migration ${m.id} failed (nothing was applied): ${reason}`, {
            cause: err,
          });
        }
        seq += 1;
        await trx.insertInto(MIGRATIONS_TABLE).values({ id: m.id, seq, applied_at: Date.now() }).execute();
        result.push(m.id);
      }
      return { applied: result };
    });
}
