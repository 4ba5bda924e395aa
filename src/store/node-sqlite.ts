// node:sqlite behind Kysely's SqliteDialect.
//
// Why this exists: Kysely's SqliteDialect is written for better-sqlite3, a native addon that would have to be
// rebuilt against the Node.js runtime the project pins. Node 24 has SQLite built in (`node:sqlite`), but its
// API differs in a few ways from what the dialect expects (`SqliteDatabase` in kysely): statements take their
// parameters as arguments rather than an array, do not say whether they return rows (`reader`), and return
// null-prototype row objects. This adapter closes those gaps and nothing more. Kysely (as of 0.29) ships no
// node:sqlite dialect of its own.

import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { StoreError } from './errors.ts';

function toInput(value: unknown, index: number): SQLInputValue {
  if (
    value === null ||
    typeof value === 'number' ||
    typeof value === 'bigint' ||
    typeof value === 'string' ||
    ArrayBuffer.isView(value)
  ) {
    return value as SQLInputValue;
  }
  // node:sqlite binds booleans as 1/0 itself, but its types do not say so; keep it explicit.
  if (typeof value === 'boolean') return value ? 1 : 0;
  throw new TypeError(`SQL parameter ${index + 1} has a type SQLite cannot store: ${typeof value}`);
}

function toInputs(parameters: readonly unknown[]): SQLInputValue[] {
  return parameters.map(toInput);
}

// node:sqlite returns rows with a null prototype; pg returns plain objects. Copy into plain objects so rows look
// the same on both dialects (assert.deepStrictEqual compares prototypes). Spread defines properties, so a column
// named "__proto__" stays an ordinary property.
function plain(row: Record<string, unknown>): Record<string, unknown> {
  return { ...row };
}

/** One prepared statement in the shape Kysely's SqliteDriver expects. */
class NodeSqliteStatement implements SqliteStatement {
  readonly #stmt: StatementSync;
  readonly #prepareAgain: () => StatementSync;
  /** Whether the statement returns rows: SELECT, `... RETURNING`, most PRAGMAs. */
  readonly reader: boolean;

  constructor(stmt: StatementSync, prepareAgain: () => StatementSync) {
    this.#stmt = stmt;
    this.#prepareAgain = prepareAgain;
    this.reader = stmt.columns().length > 0;
  }

  all(parameters: readonly unknown[]): unknown[] {
    return this.#stmt.all(...toInputs(parameters)).map(plain);
  }

  run(parameters: readonly unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint } {
    const { changes, lastInsertRowid } = this.#stmt.run(...toInputs(parameters));
    return { changes, lastInsertRowid };
  }

  *iterate(parameters: readonly unknown[]): IterableIterator<unknown> {
    // An iteration spans awaits (Kysely's stream()), and the shared statement may run again meanwhile: a
    // statement of its own.
    for (const row of this.#prepareAgain().iterate(...toInputs(parameters))) yield plain(row);
  }
}

/** Prepared statements kept per connection; the least recently prepared goes first beyond this. */
const STATEMENT_CACHE_SIZE = 512;

/**
 * A `DatabaseSync` in the shape Kysely's SqliteDialect expects (`SqliteDatabase`). Statements are cached by SQL
 * text: Warden runs the same few hundred statements over and over, and preparing one costs more than running
 * most of them. `all`/`run` leave a statement reset, so one statement serves every caller on the connection.
 */
export class NodeSqliteDatabase implements SqliteDatabase {
  readonly raw: DatabaseSync;
  readonly #statements = new Map<string, NodeSqliteStatement>();

  constructor(raw: DatabaseSync) {
    this.raw = raw;
  }

  prepare(sql: string): NodeSqliteStatement {
    const cached = this.#statements.get(sql);
    if (cached !== undefined) return cached;
    const statement = new NodeSqliteStatement(this.raw.prepare(sql), () => this.raw.prepare(sql));
    if (this.#statements.size >= STATEMENT_CACHE_SIZE) {
      const oldest = this.#statements.keys().next();
      if (oldest.done !== true) this.#statements.delete(oldest.value);
    }
    this.#statements.set(sql, statement);
    return statement;
  }

  close(): void {
    this.#statements.clear();
    if (this.raw.isOpen) this.raw.close();
  }
}

const PRIVATE_MODE = 0o600;

/** Creates the file with mode 0600 if missing; tightens an existing file (and its -wal/-shm) to 0600. */
function prepareFile(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // O_CREAT with an explicit mode: the file never exists with wider permissions, not even for a moment.
  closeSync(openSync(path, 'a', PRIVATE_MODE));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue; // -wal and -shm exist only while the database is in use.
    }
    if ((mode & 0o077) !== 0) chmodSync(file, PRIVATE_MODE);
  }
}

function pragma(db: DatabaseSync, statement: string): unknown {
  const row = db.prepare(`PRAGMA ${statement}`).get();
  return row === undefined ? undefined : Object.values(row)[0];
}

/**
 * Opens a SQLite database with Warden's settings:
 * - busy_timeout first, so that the next settings wait for a concurrent opener instead of failing;
 * - journal_mode=WAL: readers do not block the writer and a second process can use the file;
 * - synchronous=FULL: in WAL mode, the WAL is fsynced at every commit, so an acknowledged commit survives power
 *   loss (NORMAL would only survive a process crash);
 * - foreign_keys=ON;
 * - secure_delete=ON: deleted content is overwritten with zeros, which the KMS relies on for crypto-shredding
 *   (see Store.scrub for the WAL copy);
 * - the defensive flag: SQL cannot corrupt the file on purpose (writable_schema and the like).
 * SQLite creates the -wal and -shm files with the main file's permissions, so they are 0600 too.
 */
export function openNodeSqlite(path: string, busyTimeoutMs: number): NodeSqliteDatabase {
  const memory = path === ':memory:';
  if (!memory) prepareFile(path);
  const db = new DatabaseSync(path, {
    enableForeignKeyConstraints: true,
    enableDoubleQuotedStringLiterals: false,
  });
  try {
    db.enableDefensive(true);
    pragma(db, `busy_timeout = ${String(Math.max(0, Math.trunc(busyTimeoutMs)))}`);
    const journal = pragma(db, 'journal_mode = WAL');
    if (journal !== 'wal' && !(memory && journal === 'memory')) {
      throw new StoreError(`SQLite refused WAL journal mode for ${path} (got ${String(journal)})`);
    }
    db.exec('PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;');
    if (
      pragma(db, 'secure_delete') !== 1 ||
      pragma(db, 'foreign_keys') !== 1 ||
      pragma(db, 'synchronous') !== 2
    ) {
      throw new StoreError(`SQLite did not accept Warden's settings for ${path}`);
    }
  } catch (err) {
    db.close();
    throw err;
  }
  return new NodeSqliteDatabase(db);
}
