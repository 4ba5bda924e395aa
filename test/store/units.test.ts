// Unit tests of the store's parts that need no database server: the node:sqlite adapter, the error mapping, the
// PostgreSQL value parsers and the column-type helpers.

import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { columnTypes, openStore, StoreBusyError, StoreConflictError } from '../../src/store/index.ts';
import { mapDriverError } from '../../src/store/errors.ts';
import { NodeSqliteDatabase } from '../../src/store/node-sqlite.ts';
import { parseBytea, parseInt8, validateSchemaName } from '../../src/store/postgres.ts';

function adapter(): NodeSqliteDatabase {
  const db = new NodeSqliteDatabase(new DatabaseSync(':memory:'));
  db.prepare('create table t (id integer primary key, v text unique, b blob)').run([]);
  return db;
}

describe('node:sqlite adapter', () => {
  it('tells statements that return rows from those that do not', () => {
    const db = adapter();
    assert.equal(db.prepare('select * from t').reader, true);
    assert.equal(db.prepare('insert into t (v) values (?)').reader, false);
    assert.equal(db.prepare('insert into t (v) values (?) returning id').reader, true);
    assert.equal(db.prepare('update t set v = ? where id = ?').reader, false);
    assert.equal(db.prepare('delete from t returning id').reader, true);
    assert.equal(db.prepare('create table u (x)').reader, false);
    assert.equal(db.prepare('pragma journal_mode').reader, true);
    assert.equal(db.prepare('begin immediate').reader, false);
    db.close();
  });

  it('binds an array of parameters and reports changes and the last rowid', () => {
    const db = adapter();
    assert.deepEqual(db.prepare('insert into t (v, b) values (?, ?)').run(['a', new Uint8Array([1])]), {
      changes: 1,
      lastInsertRowid: 1,
    });
    assert.deepEqual(db.prepare('insert into t (v) values (?), (?) returning id').all(['b', 'c']), [
      { id: 2 },
      { id: 3 },
    ]);
    assert.deepEqual(db.prepare('update t set v = v || ?').run(['!']), { changes: 3, lastInsertRowid: 3 });
    db.close();
  });

  it('returns plain objects, from all() and from iterate()', () => {
    const db = adapter();
    db.prepare('insert into t (v, b) values (?, ?)').run(['x', new Uint8Array([7, 8])]);
    const [row] = db.prepare('select id, v, b from t').all([]);
    assert.equal(Object.getPrototypeOf(row), Object.prototype);
    assert.deepStrictEqual(row, { id: 1, v: 'x', b: new Uint8Array([7, 8]) });
    const iterated = [...db.prepare('select v from t where id = ?').iterate([1])];
    assert.deepStrictEqual(iterated, [{ v: 'x' }]);
    // A column named __proto__ stays an ordinary property; the row's prototype is untouched.
    const [odd] = db.prepare('select 1 as "__proto__"').all([]) as Record<string, unknown>[];
    assert.equal(Object.getPrototypeOf(odd), Object.prototype);
    assert.ok(odd !== undefined && Object.hasOwn(odd, '__proto__'));
    db.close();
  });

  it('sends booleans as 1/0 and refuses values SQLite cannot store', () => {
    const db = adapter();
    assert.deepEqual(db.prepare('select ? as t, ? as f').all([true, false]), [{ t: 1, f: 0 }]);
    assert.deepEqual(db.prepare('select ? as big').all([2n ** 40n]), [{ big: 2 ** 40 }]);
    assert.throws(() => db.prepare('select ?').all([undefined]), TypeError);
    assert.throws(() => db.prepare('select ?').all([{}]), TypeError);
    assert.throws(() => db.prepare('select ?').all([new Date()]), TypeError);
    db.close();
  });

  it('closes once', () => {
    const db = adapter();
    db.close();
    db.close();
  });

  it('streams select results through Kysely', async () => {
    const store = await openStore<{ n: { v: number } }>({ kind: 'sqlite', path: ':memory:' });
    try {
      await store.db.schema.createTable('n').addColumn('v', 'integer').execute();
      await store.db
        .insertInto('n')
        .values([{ v: 1 }, { v: 2 }, { v: 3 }])
        .execute();
      const seen: number[] = [];
      for await (const row of store.db.selectFrom('n').select('v').orderBy('v').stream()) seen.push(row.v);
      assert.deepEqual(seen, [1, 2, 3]);
      const res = await store.db.insertInto('n').values({ v: 4 }).executeTakeFirst();
      assert.equal(res.insertId, 4n);
      assert.equal(res.numInsertedOrUpdatedRows, 1n);
    } finally {
      await store.close();
    }
  });
});

function sqliteError(errcode: number, message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_SQLITE_ERROR', errcode, errstr: 'x' });
}

function pgError(code: string, constraint?: string): Error {
  return Object.assign(new Error(`pg ${code}`), { code, constraint });
}

describe('driver error mapping', () => {
  it('maps SQLite unique and primary-key violations to StoreConflictError', () => {
    for (const errcode of [2067, 1555]) {
      const cause = sqliteError(errcode, 'UNIQUE constraint failed: keys.name, keys.version');
      const mapped = mapDriverError('sqlite', cause);
      assert.ok(mapped instanceof StoreConflictError);
      assert.equal(mapped.constraint, 'keys.name, keys.version');
      assert.equal(mapped.cause, cause);
    }
  });

  it('maps SQLite busy and locked codes, extended or not, to StoreBusyError', () => {
    for (const errcode of [5, 261, 517, 773, 6, 262]) {
      assert.ok(
        mapDriverError('sqlite', sqliteError(errcode, 'database is locked')) instanceof StoreBusyError,
      );
    }
  });

  it('leaves other SQLite errors alone', () => {
    for (const errcode of [1, 787, 275, 1299, 19]) {
      const err = sqliteError(errcode, 'x');
      assert.equal(mapDriverError('sqlite', err), err);
    }
    const plain = new Error('not sqlite');
    assert.equal(mapDriverError('sqlite', plain), plain);
    assert.equal(mapDriverError('sqlite', 'a string'), 'a string');
  });

  it('maps PostgreSQL SQLSTATEs', () => {
    const conflict = mapDriverError('postgres', pgError('23505', 'keys_pkey'));
    assert.ok(conflict instanceof StoreConflictError);
    assert.equal(conflict.constraint, 'keys_pkey');
    assert.ok(mapDriverError('postgres', pgError('40001')) instanceof StoreBusyError);
    assert.ok(mapDriverError('postgres', pgError('40P01')) instanceof StoreBusyError);
    const fk = pgError('23503');
    assert.equal(mapDriverError('postgres', fk), fk);
    // An error from the other dialect is not mistaken for one of these.
    const sqlite = sqliteError(2067, 'UNIQUE constraint failed: t.v');
    assert.equal(mapDriverError('postgres', sqlite), sqlite);
  });

  it('does not map an error twice', () => {
    const once = mapDriverError('sqlite', sqliteError(2067, 'UNIQUE constraint failed: t.v'));
    assert.equal(mapDriverError('sqlite', once), once);
  });
});

describe('PostgreSQL value parsers', () => {
  it('reads int8 as a number within ±(2^53 − 1) and refuses anything beyond', () => {
    assert.equal(parseInt8('0'), 0);
    assert.equal(parseInt8('-1'), -1);
    assert.equal(parseInt8('9007199254740991'), Number.MAX_SAFE_INTEGER);
    assert.equal(parseInt8('-9007199254740991'), Number.MIN_SAFE_INTEGER);
    assert.throws(() => parseInt8('9007199254740992'), RangeError);
    assert.throws(() => parseInt8('-9007199254740993'), RangeError);
    assert.throws(() => parseInt8('9223372036854775807'), RangeError);
  });

  it('reads bytea (hex and escape formats) as a plain Uint8Array with its own memory', () => {
    const hex = parseBytea('\\x00ff10');
    assert.deepStrictEqual(hex, new Uint8Array([0, 255, 16]));
    assert.equal(Object.getPrototypeOf(hex), Uint8Array.prototype);
    assert.equal(hex.buffer.byteLength, 3, 'not a view into a shared pool');
    assert.deepStrictEqual(parseBytea('\\x'), new Uint8Array(0));
    const escaped = parseBytea('a\\000\\\\b');
    assert.deepStrictEqual(escaped, new Uint8Array([0x61, 0, 0x5c, 0x62]));
    assert.equal(Object.getPrototypeOf(escaped), Uint8Array.prototype);
  });

  it('accepts only plain lowercase schema names', () => {
    assert.equal(validateSchemaName('kms_1'), 'kms_1');
    for (const bad of ['', 'Kms', '1kms', 'a b', 'a;drop', 'a"b', 'x'.repeat(64)]) {
      assert.throws(() => validateSchemaName(bad), /invalid schema name/);
    }
  });
});

describe('columnTypes', () => {
  it('gives each dialect the types of the value conventions', () => {
    assert.deepEqual(columnTypes('sqlite'), {
      bytes: 'blob',
      epochMillis: 'integer',
      int64: 'integer',
      flag: 'integer',
      text: 'text',
      autoIncrementId: 'integer',
    });
    assert.deepEqual(columnTypes('postgres'), {
      bytes: 'bytea',
      epochMillis: 'bigint',
      int64: 'bigint',
      flag: 'smallint',
      text: 'text',
      autoIncrementId: 'bigserial',
    });
  });
});
