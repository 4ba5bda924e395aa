// Typed store errors. Driver errors (node:sqlite's ERR_SQLITE_ERROR, pg's DatabaseError) are mapped at the
// connection boundary (see dialect.ts) so that callers catch the same class on both dialects. Errors that have no
// mapping pass through unchanged.

import type { StoreDialect } from './types.ts';

/** Base class of every error the store raises on purpose. The driver's error, if any, is `cause`. */
export class StoreError extends Error {
  override name = 'StoreError';
}

/**
 * A unique or primary-key constraint rejected a write: the row (or the unique value) already exists.
 * SQLite: SQLITE_CONSTRAINT_UNIQUE (2067) or SQLITE_CONSTRAINT_PRIMARYKEY (1555). PostgreSQL: SQLSTATE 23505.
 */
export class StoreConflictError extends StoreError {
  override name = 'StoreConflictError';
  /** PostgreSQL: the constraint's name. SQLite: the columns, as `table.column[, table.column]`. */
  readonly constraint: string | undefined;

  constructor(message: string, constraint: string | undefined, options?: ErrorOptions) {
    super(message, options);
    this.constraint = constraint;
  }
}

/**
 * The database could not run the transaction now. SQLite: the write lock stayed held by another connection
 * for longer than `busyTimeoutMs` (SQLITE_BUSY). PostgreSQL: a serialization failure (40001) or a deadlock
 * (40P01) — `Store.transaction` retries those itself and raises this only once its attempts are used up.
 * Retrying later is safe: nothing of the failed transaction was committed.
 */
export class StoreBusyError extends StoreError {
  override name = 'StoreBusyError';
}

/** Migrations refused to run (unknown applied migration, out-of-order list, invalid id) or one failed. */
export class StoreMigrationError extends StoreError {
  override name = 'StoreMigrationError';
}

// SQLite result codes (https://sqlite.org/rescode.html). node:sqlite reports the extended code in `errcode`.
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;

// PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const PG_UNIQUE_VIOLATION = '23505';
const PG_SERIALIZATION_FAILURE = '40001';
const PG_DEADLOCK_DETECTED = '40P01';

function field(err: object, name: string): unknown {
  return (err as Record<string, unknown>)[name];
}

/** Maps a driver error to a typed store error; returns `err` itself when there is no mapping. */
export function mapDriverError(dialect: StoreDialect, err: unknown): unknown {
  // node:sqlite and pg throw Error instances; anything else is not theirs.
  if (!(err instanceof Error) || err instanceof StoreError) return err;
  const message = err.message;
  switch (dialect) {
    case 'sqlite': {
      if (field(err, 'code') !== 'ERR_SQLITE_ERROR') return err;
      const errcode = field(err, 'errcode');
      if (typeof errcode !== 'number') return err;
      if (errcode === SQLITE_CONSTRAINT_UNIQUE || errcode === SQLITE_CONSTRAINT_PRIMARYKEY) {
        // "UNIQUE constraint failed: keys.name, keys.version"
        const columns = /constraint failed: (.+)$/.exec(message)?.[1];
        return new StoreConflictError(message, columns, { cause: err });
      }
      // The primary code is the low byte of an extended code (SQLITE_BUSY_SNAPSHOT = 517 = 5 | 2 << 8).
      const primary = errcode & 0xff;
      if (primary === SQLITE_BUSY || primary === SQLITE_LOCKED) {
        return new StoreBusyError(message, { cause: err });
      }
      return err;
    }
    case 'postgres': {
      const code = field(err, 'code');
      if (code === PG_UNIQUE_VIOLATION) {
        const constraint = field(err, 'constraint');
        return new StoreConflictError(message, typeof constraint === 'string' ? constraint : undefined, {
          cause: err,
        });
      }
      if (code === PG_SERIALIZATION_FAILURE || code === PG_DEADLOCK_DETECTED) {
        return new StoreBusyError(message, { cause: err });
      }
      return err;
    }
  }
}
