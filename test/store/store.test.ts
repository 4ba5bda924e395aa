// The store's behaviour, run unchanged against SQLite (a temporary file) and PostgreSQL (a throwaway cluster from
// test/support/postgres.ts). Dialect-specific checks follow the shared suite.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import {
  columnTypes,
  flagCheck,
  openStore,
  StoreBusyError,
  StoreConflictError,
  StoreError,
  StoreMigrationError,
} from '../../src/store/index.ts';
import type {
  Bytes,
  EpochMillis,
  Flag,
  Migration,
  Store,
  StoreConfig,
  StoreDialect,
} from '../../src/store/index.ts';
import { killAfterAcks } from '../support/crash.ts';
import { startPostgres } from '../support/postgres.ts';
import type { PostgresServer } from '../support/postgres.ts';
import { incrementShared, migrations as workerMigrations, ROWS_PER_TXN } from './fixtures/schema.ts';
import type { WorkerDB } from './fixtures/schema.ts';

const WORKER = join(import.meta.dirname, 'fixtures', 'worker.ts');

interface TestDB {
  owners: { id: string };
  items: {
    id: string;
    owner: string | null;
    data: Bytes | null;
    at: EpochMillis | null;
    big: number | null;
    flag: Flag | null;
    note: string | null;
  };
  counter: { id: string; n: number };
}

const testMigrations: readonly Migration[] = [
  {
    id: 'test/0001-owners',
    async up(db, dialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('owners')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .execute();
    },
  },
  {
    id: 'test/0002-items',
    async up(db, dialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('items')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('owner', t.text, (c) => c.references('owners.id'))
        .addColumn('data', t.bytes)
        .addColumn('at', t.epochMillis)
        .addColumn('big', t.int64)
        .addColumn('flag', t.flag, (c) => c.check(flagCheck('flag')))
        .addColumn('note', t.text, (c) => c.unique())
        .execute();
    },
  },
  {
    id: 'test/0003-counter',
    async up(db, dialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('counter')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('n', t.int64, (c) => c.notNull())
        .execute();
      await db.insertInto('counter').values({ id: 'c', n: 0 }).execute();
    },
  },
];

interface Backend {
  readonly dialect: StoreDialect;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** Config of a new, empty database (SQLite: a new file; PostgreSQL: a new schema). */
  fresh(): StoreConfig;
}

let counter = 0;

// One PostgreSQL cluster for the whole file, started on first use.
let postgres: Promise<PostgresServer> | undefined;
function sharedPostgres(): Promise<PostgresServer> {
  postgres ??= startPostgres();
  return postgres;
}
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

function sqliteBackend(): Backend {
  let dir = '';
  return {
    dialect: 'sqlite',
    setup: () => {
      dir = mkdtempSync(join(tmpdir(), 'warden-store-'));
      return Promise.resolve();
    },
    teardown: () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
    fresh: () => ({ kind: 'sqlite', path: join(dir, `db${++counter}.sqlite`) }),
  };
}

function postgresBackend(): Backend {
  let server: PostgresServer | undefined;
  return {
    dialect: 'postgres',
    setup: async () => {
      server = await sharedPostgres();
    },
    teardown: () => Promise.resolve(),
    fresh: () => {
      if (server === undefined) throw new Error('PostgreSQL is not running');
      return { kind: 'postgres', url: server.url, schema: `t${++counter}` };
    },
  };
}

async function withStore<DB = TestDB>(
  config: StoreConfig,
  fn: (store: Store<DB>) => Promise<unknown>,
): Promise<void> {
  const store = await openStore<DB>(config);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

async function tableExists<DB>(store: Store<DB>, table: string): Promise<boolean> {
  try {
    await sql`select 1 from ${sql.table(table)}`.execute(store.db);
    return true;
  } catch {
    return false;
  }
}

/** A migration that creates a one-column table. */
function createTable(id: string, table: string): Migration {
  return {
    id,
    up: async (db) => {
      await db.schema.createTable(table).addColumn('a', 'text').execute();
    },
  };
}

async function migrated(config: StoreConfig): Promise<Store<TestDB>> {
  const store = await openStore<TestDB>(config);
  await store.migrate(testMigrations);
  return store;
}

/** Runs the worker; resolves with its stdout once it exits 0. */
async function runWorker(args: string[]): Promise<string> {
  const child = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, `worker failed:\n${err}`);
  return out;
}

/**
 * Starts a crash worker, lets it acknowledge a random number of commits, waits a random moment more, and kills it
 * with SIGKILL. Returns the acknowledged txn numbers.
 */
async function crashOnce(config: StoreConfig): Promise<number[]> {
  const child = spawn(process.execPath, [WORKER, 'crash', JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { lines } = await killAfterAcks(child, { acks: 1 + Math.floor(Math.random() * 25), maxDelayMs: 15 });
  return lines.map(Number);
}

const backends: Backend[] = [sqliteBackend(), postgresBackend()];

for (const backend of backends) {
  describe(`store on ${backend.dialect}`, () => {
    before(() => backend.setup());
    after(() => backend.teardown());

    describe('migrations', () => {
      it('applies migrations in list order, once, and records them', async () => {
        const calls: string[] = [];
        // List order, not alphabetical: "b" creates the table that "a" fills.
        const list: Migration[] = [
          {
            id: 'order/b-create',
            async up(db) {
              calls.push('b');
              await db.schema.createTable('seq').addColumn('v', 'text').execute();
            },
          },
          {
            id: 'order/a-fill',
            async up(db) {
              calls.push('a');
              await db.insertInto('seq').values({ v: 'filled' }).execute();
            },
          },
        ];
        await withStore<{ seq: { v: string } }>(backend.fresh(), async (store) => {
          assert.equal(store.kind, backend.dialect);
          assert.deepEqual(await store.migrate(list), { applied: ['order/b-create', 'order/a-fill'] });
          assert.deepEqual(await store.migrate(list), { applied: [] });
          assert.deepEqual(calls, ['b', 'a']);
          assert.deepEqual(await store.db.selectFrom('seq').selectAll().execute(), [{ v: 'filled' }]);

          const third: Migration = {
            id: 'order/c-more',
            up: async (db) => {
              calls.push('c');
              await db.insertInto('seq').values({ v: 'more' }).execute();
            },
          };
          assert.deepEqual(await store.migrate([...list, third]), { applied: ['order/c-more'] });
          assert.deepEqual(calls, ['b', 'a', 'c']);

          const recorded = await sql<{ id: string; seq: number; applied_at: number }>`
            select id, seq, applied_at from warden_migrations order by seq`.execute(store.db);
          assert.deepEqual(
            recorded.rows.map((r) => [r.id, r.seq]),
            [
              ['order/b-create', 1],
              ['order/a-fill', 2],
              ['order/c-more', 3],
            ],
          );
          for (const r of recorded.rows) assert.ok(Math.abs(r.applied_at - Date.now()) < 60_000);
        });
      });

      it('keeps domains apart: each list only answers for its own namespace', async () => {
        await withStore(backend.fresh(), async (store) => {
          const kms: Migration = createTable('kms/0001-x', 'kx');
          const audit: Migration = createTable('audit/0001-y', 'ay');
          assert.deepEqual(await store.migrate([kms]), { applied: ['kms/0001-x'] });
          assert.deepEqual(await store.migrate([audit]), { applied: ['audit/0001-y'] });
          assert.deepEqual(await store.migrate([kms]), { applied: [] });
        });
      });

      it('refuses to run when the database has a migration the code does not know (downgrade)', async () => {
        const config = backend.fresh();
        await withStore(config, async (store) => {
          await store.migrate(testMigrations);
        });
        await withStore(config, async (store) => {
          const older = testMigrations.slice(0, 2);
          await assert.rejects(store.migrate(older), (err: unknown) => {
            assert.ok(err instanceof StoreMigrationError);
            assert.match(err.message, /test\/0003-counter/);
            return true;
          });
          // Nothing was touched, and the full list still works.
          assert.deepEqual(await store.migrate(testMigrations), { applied: [] });
        });
      });

      it('refuses a pending migration placed before an applied one', async () => {
        await withStore(backend.fresh(), async (store) => {
          const mk = (id: string): Migration => ({ id, up: () => Promise.resolve() });
          await store.migrate([mk('x/1'), mk('x/3')]);
          await assert.rejects(store.migrate([mk('x/1'), mk('x/2'), mk('x/3')]), StoreMigrationError);
          assert.deepEqual(await store.migrate([mk('x/1'), mk('x/3'), mk('x/4')]), { applied: ['x/4'] });
        });
      });

      it('rejects malformed and duplicate ids', async () => {
        await withStore(backend.fresh(), async (store) => {
          const noop = (): Promise<void> => Promise.resolve();
          await assert.rejects(store.migrate([{ id: 'no-namespace', up: noop }]), StoreMigrationError);
          await assert.rejects(store.migrate([{ id: 'Kms/1', up: noop }]), StoreMigrationError);
          await assert.rejects(
            store.migrate([
              { id: 'a/1', up: noop },
              { id: 'a/1', up: noop },
            ]),
            StoreMigrationError,
          );
        });
      });

      it('applies a batch all or nothing: a failing migration rolls back the whole batch', async () => {
        await withStore(backend.fresh(), async (store) => {
          const first: Migration = createTable('f/0', 'f0');
          await store.migrate([first]);
          const list: Migration[] = [
            first,
            createTable('f/1', 'f1'),
            {
              id: 'f/2',
              up: async (db) => {
                await db.schema.createTable('f2').addColumn('a', 'text').execute();
                throw new Error('boom');
              },
            },
          ];
          await assert.rejects(store.migrate(list), (err: unknown) => {
            assert.ok(err instanceof StoreMigrationError);
            assert.match(err.message, /f\/2 failed.*boom/);
            return true;
          });
          assert.ok(await tableExists(store, 'f0'));
          assert.ok(!(await tableExists(store, 'f1')), 'f1 left behind');
          assert.ok(!(await tableExists(store, 'f2')), 'f2 left behind');
          const { rows } = await sql<{ id: string }>`select id from warden_migrations`.execute(store.db);
          assert.deepEqual(rows, [{ id: 'f/0' }]);
          // A fresh database: the failed batch leaves not even the bookkeeping table behind.
          await withStore(backend.fresh(), async (other) => {
            await assert.rejects(other.migrate(list), StoreMigrationError);
            assert.ok(!(await tableExists(other, 'warden_migrations')));
            assert.ok(!(await tableExists(other, 'f0')));
          });
        });
      });
    });

    describe('values', () => {
      it('round-trips binary, 64-bit, flag, text and null values identically', async () => {
        const store = await migrated(backend.fresh());
        try {
          const big = new Uint8Array(randomBytes(70_000));
          const all = Uint8Array.from({ length: 256 }, (_, i) => i);
          const rows: TestDB['items'][] = [
            {
              id: 'a',
              owner: null,
              data: all,
              at: 1_700_000_000_123,
              big: Number.MAX_SAFE_INTEGER,
              flag: 1,
              note: 'ü€😀',
            },
            {
              id: 'b',
              owner: null,
              data: new Uint8Array(0),
              at: 0,
              big: Number.MIN_SAFE_INTEGER,
              flag: 0,
              note: '',
            },
            { id: 'c', owner: null, data: big, at: -1, big: -1, flag: null, note: null },
            {
              id: 'd',
              owner: null,
              data: null,
              at: null,
              big: null,
              flag: null,
              note: "quote ' and \\ backslash",
            },
          ];
          await store.db.insertInto('items').values(rows).execute();
          // A Buffer is accepted as input and still read back as a plain Uint8Array.
          await store.db
            .insertInto('items')
            .values({ id: 'e', data: Buffer.from('buffer in') })
            .execute();

          const read = await store.db.selectFrom('items').selectAll().orderBy('id').execute();
          assert.deepStrictEqual(read.slice(0, 4), rows);
          for (const row of read) {
            if (row.data !== null) assert.equal(Object.getPrototypeOf(row.data), Uint8Array.prototype);
            assert.equal(Object.getPrototypeOf(row), Object.prototype);
          }
          assert.deepStrictEqual(read[4]?.data, new Uint8Array(Buffer.from('buffer in')));

          // Aggregates that PostgreSQL types as BIGINT come back as numbers too.
          const counted = await store.db
            .selectFrom('items')
            .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('big').as('s')])
            .where('id', 'in', ['a', 'c'])
            .executeTakeFirstOrThrow();
          assert.deepStrictEqual(counted.n, 2);
          assert.equal(typeof counted.n, 'number');

          // Booleans bound as parameters are sent as 1/0 on both dialects.
          await store.db
            .updateTable('items')
            .set({ flag: true as unknown as Flag })
            .where('id', '=', 'd')
            .execute();
          const d = await store.db
            .selectFrom('items')
            .select('flag')
            .where('id', '=', 'd')
            .executeTakeFirstOrThrow();
          assert.equal(d.flag, 1);
          const flagged = await store.db
            .selectFrom('items')
            .select('id')
            .where('flag', '=', 1)
            .orderBy('id')
            .execute();
          assert.deepEqual(
            flagged.map((r) => r.id),
            ['a', 'd'],
          );

          // A flag column holds only 0 and 1.
          await assert.rejects(
            store.db
              .insertInto('items')
              .values({ id: 'bad', flag: 2 as Flag })
              .execute(),
          );

          const updated = await store.db
            .updateTable('items')
            .set({ note: 'x' })
            .where('id', '=', 'c')
            .executeTakeFirst();
          assert.equal(updated.numUpdatedRows, 1n);
          const deleted = await store.db.deleteFrom('items').where('id', 'in', ['c', 'e']).executeTakeFirst();
          assert.equal(deleted.numDeletedRows, 2n);
        } finally {
          await store.close();
        }
      });

      it('refuses to read an integer beyond 2^53 rather than round it', async () => {
        const store = await migrated(backend.fresh());
        try {
          await store.db
            .insertInto('items')
            .values({ id: 'huge', big: (2n ** 60n) as unknown as number })
            .execute();
          await assert.rejects(store.db.selectFrom('items').select('big').execute(), RangeError);
          // The row is intact; the value can be read as text.
          const { rows } = await sql<{ t: string }>`select cast(big as text) as t from items`.execute(
            store.db,
          );
          assert.equal(rows[0]?.t, String(2n ** 60n));
        } finally {
          await store.close();
        }
      });

      it('enforces foreign keys', async () => {
        const store = await migrated(backend.fresh());
        try {
          await assert.rejects(store.db.insertInto('items').values({ id: 'i', owner: 'nobody' }).execute());
          await store.db.insertInto('owners').values({ id: 'o' }).execute();
          await store.db.insertInto('items').values({ id: 'i', owner: 'o' }).execute();
        } finally {
          await store.close();
        }
      });
    });

    describe('errors', () => {
      it('surfaces unique and primary-key violations as StoreConflictError', async () => {
        const store = await migrated(backend.fresh());
        try {
          await store.db.insertInto('items').values({ id: 'k', note: 'n' }).execute();
          await assert.rejects(store.db.insertInto('items').values({ id: 'k' }).execute(), (err: unknown) => {
            assert.ok(err instanceof StoreConflictError);
            assert.ok(err instanceof StoreError);
            assert.ok(err.cause instanceof Error);
            assert.ok(err.constraint !== undefined && err.constraint.length > 0);
            return true;
          });
          await assert.rejects(
            store.db.insertInto('items').values({ id: 'other', note: 'n' }).execute(),
            StoreConflictError,
          );
          // Inside a transaction: the conflict propagates and the transaction's earlier writes roll back.
          await assert.rejects(
            store.transaction(async (trx) => {
              await trx.insertInto('items').values({ id: 'before' }).execute();
              await trx.insertInto('items').values({ id: 'k' }).execute();
            }),
            StoreConflictError,
          );
          const ids = await store.db.selectFrom('items').select('id').execute();
          assert.deepEqual(
            ids.map((r) => r.id),
            ['k'],
          );
        } finally {
          await store.close();
        }
      });
    });

    describe('transactions', () => {
      it('commits on success and rolls back everything on throw', async () => {
        const store = await migrated(backend.fresh());
        try {
          const value = await store.transaction(async (trx) => {
            await trx.insertInto('items').values({ id: 'kept' }).execute();
            return 42;
          });
          assert.equal(value, 42);
          const failure = new Error('abort');
          await assert.rejects(
            store.transaction(async (trx) => {
              await trx.insertInto('items').values({ id: 'gone' }).execute();
              await trx.updateTable('counter').set({ n: 99 }).execute();
              throw failure;
            }),
            (err) => err === failure,
          );
          const ids = await store.db.selectFrom('items').select('id').execute();
          assert.deepEqual(
            ids.map((r) => r.id),
            ['kept'],
          );
          const c = await store.db.selectFrom('counter').select('n').executeTakeFirstOrThrow();
          assert.equal(c.n, 0);
        } finally {
          await store.close();
        }
      });

      it('serialises concurrent read-modify-write transactions: no lost update', async () => {
        const store = await migrated(backend.fresh());
        try {
          const N = 16;
          await Promise.all(
            Array.from({ length: N }, () =>
              store.transaction(
                async (trx) => {
                  const row = await trx
                    .selectFrom('counter')
                    .select('n')
                    .where('id', '=', 'c')
                    .executeTakeFirstOrThrow();
                  await sleep(1); // let the other transactions interleave if they can
                  await trx
                    .updateTable('counter')
                    .set({ n: row.n + 1 })
                    .where('id', '=', 'c')
                    .execute();
                },
                { maxAttempts: 50 },
              ),
            ),
          );
          const c = await store.db.selectFrom('counter').select('n').executeTakeFirstOrThrow();
          assert.equal(c.n, N);
        } finally {
          await store.close();
        }
      });

      it('works with two processes on the same database', { timeout: 60_000 }, async () => {
        const config = backend.fresh();
        const perProcess = 60;
        let parentAttempts = 0;
        // Both processes migrate concurrently too: exactly one applies the migrations.
        const child = runWorker(['increment', JSON.stringify(config), String(perProcess)]);
        await withStore<WorkerDB>(config, async (store) => {
          await store.migrate(workerMigrations);
          for (let i = 0; i < perProcess; i++) {
            parentAttempts = Math.max(parentAttempts, await incrementShared(store));
          }
        });
        const childAttempts = Number(/^done (\d+)\n$/.exec(await child)?.[1]);
        if (backend.dialect === 'sqlite') {
          // Writers queue on the lock (BEGIN IMMEDIATE + busy_timeout): never a retry.
          assert.deepEqual([parentAttempts, childAttempts], [1, 1]);
        } else {
          // SERIALIZABLE: conflicting attempts failed and were retried, within the default budget.
          assert.ok(parentAttempts >= 1 && childAttempts >= 1);
        }
        await withStore<WorkerDB>(config, async (store) => {
          const row = await store.db.selectFrom('counter').select('n').executeTakeFirstOrThrow();
          assert.equal(row.n, 2 * perProcess);
        });
      });
    });

    describe('crash safety', () => {
      it(
        'keeps every acknowledged transaction and no partial one when the writer is killed',
        { timeout: 60_000 },
        async () => {
          const config = backend.fresh();
          await withStore(config, async (store) => {
            await store.migrate(workerMigrations);
          });
          const acknowledged: number[] = [];
          const iterations = 5;
          for (let i = 0; i < iterations; i++) {
            acknowledged.push(...(await crashOnce(config)));
            await withStore<WorkerDB>(config, async (store) => {
              if (store.kind === 'sqlite') {
                const { rows } = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(
                  store.db,
                );
                assert.deepEqual(rows, [{ integrity_check: 'ok' }]);
              }
              const rows = await store.db
                .selectFrom('crash_rows')
                .select(['txn', 'idx'])
                .orderBy('txn')
                .orderBy('idx')
                .execute();
              const byTxn = new Map<number, number[]>();
              for (const r of rows) byTxn.set(r.txn, [...(byTxn.get(r.txn) ?? []), r.idx]);
              const txns = [...byTxn.keys()];
              // Whole transactions only.
              for (const [txn, idxs] of byTxn) {
                assert.deepEqual(
                  idxs,
                  Array.from({ length: ROWS_PER_TXN }, (_, k) => k),
                  `txn ${txn} is partial`,
                );
              }
              // Transactions commit in order, so the committed ones are 0..max with no gap.
              assert.deepEqual(
                txns,
                Array.from({ length: txns.length }, (_, k) => k),
              );
              // Every acknowledged one is there.
              const missing = acknowledged.filter((t) => !byTxn.has(t));
              assert.deepEqual(missing, [], 'acknowledged transactions lost');
              // The counter moved with the rows, in the same transactions.
              const c = await store.db.selectFrom('crash_counter').select('n').executeTakeFirstOrThrow();
              assert.equal(c.n, txns.length * ROWS_PER_TXN);
            });
          }
          assert.ok(acknowledged.length >= iterations);
        },
      );
    });

    it('close is idempotent', async () => {
      const store = await openStore(backend.fresh());
      await store.close();
      await store.close();
    });
  });
}

describe('store on sqlite only', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'warden-sqlite-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('uses WAL, synchronous=FULL, foreign keys and secure_delete', async () => {
    await withStore({ kind: 'sqlite', path: join(dir, 'pragmas.db') }, async (store) => {
      const get = async (name: string): Promise<unknown> => {
        const { rows } = await sql<Record<string, unknown>>`${sql.raw(`pragma ${name}`)}`.execute(store.db);
        return Object.values(rows[0] ?? {})[0];
      };
      assert.equal(await get('journal_mode'), 'wal');
      assert.equal(await get('synchronous'), 2);
      assert.equal(await get('foreign_keys'), 1);
      assert.equal(await get('secure_delete'), 1);
      assert.equal(await get('busy_timeout'), 5000);
    });
    await withStore({ kind: 'sqlite', path: join(dir, 'timeout.db'), busyTimeoutMs: 250 }, async (store) => {
      const { rows } = await sql<{ timeout: number }>`pragma busy_timeout`.execute(store.db);
      assert.equal(rows[0]?.timeout, 250);
    });
  });

  it('creates the database, WAL and shared-memory files with mode 0600, and tightens an existing file', async () => {
    const path = join(dir, 'sub', 'modes.db');
    await withStore({ kind: 'sqlite', path }, async (store) => {
      await store.migrate(testMigrations);
      await store.db.insertInto('owners').values({ id: 'o' }).execute();
      for (const file of [path, `${path}-wal`, `${path}-shm`]) {
        assert.equal(statSync(file).mode & 0o777, 0o600, file);
      }
      assert.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
    });
    const loose = join(dir, 'loose.db');
    writeFileSync(loose, '');
    chmodSync(loose, 0o644);
    await withStore({ kind: 'sqlite', path: loose }, () => Promise.resolve());
    assert.equal(statSync(loose).mode & 0o777, 0o600);
  });

  it('overwrites deleted content: after delete and scrub the bytes are in neither the file nor the WAL', async () => {
    const path = join(dir, 'shred.db');
    const marker = Buffer.from('WARDEN-KEY-MATERIAL-'.repeat(50));
    await withStore({ kind: 'sqlite', path }, async (store) => {
      await store.migrate(testMigrations);
      await store.db.insertInto('items').values({ id: 'secret', data: marker }).execute();
      await store.db
        .insertInto('items')
        .values({ id: 'other', data: new Uint8Array(100) })
        .execute();
      assert.deepEqual(await store.scrub(), { complete: true });
      // The check below can see the marker when it is there.
      assert.ok(readFileSync(path).includes(marker));

      await store.db.deleteFrom('items').where('id', '=', 'secret').execute();
      assert.ok(readFileSync(`${path}-wal`).length > 0);
      assert.deepEqual(await store.scrub(), { complete: true });
      assert.equal(readFileSync(`${path}-wal`).length, 0);
      assert.ok(!readFileSync(path).includes(marker), 'deleted content still in the database file');
      assert.ok(!readFileSync(path).includes(marker.subarray(0, 40)), 'part of the deleted content remains');
      assert.equal((await store.db.selectFrom('items').select('id').execute()).length, 1);
    });
  });

  it('opens a file once per process, and again after close', async () => {
    const path = join(dir, 'once.db');
    const store = await openStore({ kind: 'sqlite', path });
    await assert.rejects(openStore({ kind: 'sqlite', path }), StoreError);
    await store.close();
    await withStore({ kind: 'sqlite', path }, () => Promise.resolve());
  });

  it('works in memory', async () => {
    await withStore({ kind: 'sqlite', path: ':memory:' }, async (store) => {
      await store.migrate(testMigrations);
      await store.db.insertInto('owners').values({ id: 'o' }).execute();
      assert.equal((await store.db.selectFrom('owners').selectAll().execute()).length, 1);
      assert.deepEqual(await store.scrub(), { complete: true });
    });
    assert.ok(!existsSync(':memory:'));
  });

  it('fails with StoreBusyError when another process holds the write lock past busy_timeout', async () => {
    const path = join(dir, 'busy.db');
    await withStore({ kind: 'sqlite', path }, (store) =>
      store.migrate(workerMigrations).then(() => undefined),
    );
    // A child process takes the write lock and holds it.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const { DatabaseSync } = require('node:sqlite');
         const db = new DatabaseSync(${JSON.stringify(path)});
         db.exec('begin immediate');
         process.stdout.write('locked\\n');
         setTimeout(() => {}, 60000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => {
        holder.stdout.once('data', () => {
          resolve();
        });
      });
      await withStore<WorkerDB>({ kind: 'sqlite', path, busyTimeoutMs: 100 }, async (store) => {
        await assert.rejects(
          store.transaction(async (trx) => {
            await trx.updateTable('counter').set({ n: 1 }).execute();
          }),
          StoreBusyError,
        );
        // Readers are not blocked by the writer (WAL).
        assert.equal((await store.db.selectFrom('counter').selectAll().execute()).length, 1);
      });
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('store on postgres only', () => {
  let server: PostgresServer | undefined;
  const url = (): string => {
    if (server === undefined) throw new Error('PostgreSQL is not running');
    return server.url;
  };
  before(async () => {
    server = await sharedPostgres();
  });

  it('puts every table in the configured schema', async () => {
    await withStore({ kind: 'postgres', url: url(), schema: 'kms_schema' }, async (store) => {
      await store.migrate(testMigrations);
      const { rows } = await sql<{ table_name: string }>`
        select table_name from information_schema.tables where table_schema = 'kms_schema' order by table_name
      `.execute(store.db);
      assert.deepEqual(
        rows.map((r) => r.table_name),
        ['counter', 'items', 'owners', 'warden_migrations'],
      );
    });
  });

  it('rejects an invalid schema name and an unreachable server at open', async () => {
    await assert.rejects(openStore({ kind: 'postgres', url: url(), schema: 'x; drop table y' }), StoreError);
    await assert.rejects(openStore({ kind: 'postgres', url: 'postgres://postgres@127.0.0.1:1/none' }));
  });

  it('retries a serialization failure, and reports StoreBusyError once attempts are used up', async () => {
    await withStore({ kind: 'postgres', url: url(), schema: 'retry' }, async (store) => {
      await store.migrate(testMigrations);
      // Two transactions both read the counter, then both write it: one of them cannot serialise.
      const conflict = async (maxAttempts: number): Promise<number> => {
        let attempts = 0;
        let bothRead!: () => void;
        const barrier = new Promise<void>((resolve) => (bothRead = resolve));
        let readers = 0;
        const increment = (): Promise<void> =>
          store.transaction(
            async (trx) => {
              attempts += 1;
              const row = await trx.selectFrom('counter').select('n').executeTakeFirstOrThrow();
              if (++readers === 2) bothRead();
              await barrier;
              await trx
                .updateTable('counter')
                .set({ n: row.n + 1 })
                .execute();
            },
            { maxAttempts },
          );
        const results = await Promise.allSettled([increment(), increment()]);
        const rejected = results.filter((r) => r.status === 'rejected');
        if (maxAttempts === 1) {
          assert.equal(rejected.length, 1);
          assert.ok(rejected[0]?.reason instanceof StoreBusyError);
        } else {
          assert.equal(rejected.length, 0);
        }
        return attempts;
      };
      assert.equal(await conflict(1), 2);
      assert.equal(await conflict(10), 3);
      const c = await store.db.selectFrom('counter').select('n').executeTakeFirstOrThrow();
      assert.equal(c.n, 3); // one from the first round, two from the second
    });
  });

  it('read committed with FOR UPDATE serialises a hot row without retries', async () => {
    await withStore({ kind: 'postgres', url: url(), schema: 'hot' }, async (store) => {
      await store.migrate(testMigrations);
      let attempts = 0;
      await Promise.all(
        Array.from({ length: 20 }, () =>
          store.transaction(
            async (trx) => {
              attempts += 1;
              const row = await trx.selectFrom('counter').select('n').forUpdate().executeTakeFirstOrThrow();
              await trx
                .updateTable('counter')
                .set({ n: row.n + 1 })
                .execute();
            },
            { isolation: 'read committed', maxAttempts: 1 },
          ),
        ),
      );
      assert.equal(attempts, 20);
      const c = await store.db.selectFrom('counter').select('n').executeTakeFirstOrThrow();
      assert.equal(c.n, 20);
    });
  });

  it('scrub runs VACUUM', async () => {
    await withStore({ kind: 'postgres', url: url(), schema: 'vac' }, async (store) => {
      await store.migrate(testMigrations);
      assert.deepEqual(await store.scrub(['items']), { complete: true });
      assert.deepEqual(await store.scrub(), { complete: true });
    });
  });
});

describe('test harness', () => {
  it('throws when PostgreSQL is not installed', async () => {
    const saved = process.env['WARDEN_PG_BINDIR'];
    process.env['WARDEN_PG_BINDIR'] = '/nonexistent/postgresql/bin';
    try {
      await assert.rejects(startPostgres(), /PostgreSQL is not installed/);
    } finally {
      if (saved === undefined) delete process.env['WARDEN_PG_BINDIR'];
      else process.env['WARDEN_PG_BINDIR'] = saved;
    }
  });
});
