/**
 * Storage of the tamper-evident audit log (`log.ts`): table types, the `audit/…` migrations and the few queries
 * the log needs, written once with Kysely for SQLite and PostgreSQL. See docs/audit.md for the design.
 *
 * Tables:
 * - `audit_entries` — one row per leaf: index, time (epoch ms), leaf hash, canonical body bytes (NULL once pruned)
 *   and the indexed query columns (principal id, action, resource, outcome).
 * - `audit_nodes` — every completed perfect subtree of level ≥ 1, keyed (level, idx). Level 0 (the leaf hashes)
 *   lives in `audit_entries.leaf_hash`.
 * - `audit_state` — one row: origin, tree size, serialised frontier and retention watermark, updated in the same transaction as the
 *   rows it describes (compare-and-swap on the size, so a second writer fails instead of forking the log).
 * - `audit_checkpoints` — every signed checkpoint: size, root, note text, time.
 * - `audit_terms` (migration 0002) — the query index: one row per (filter value, entry), e.g. `p:<principal id>`,
 *   filled behind the appends in large batches up to `audit_terms_state.indexed_below` (see docs/audit.md,
 *   "Query index"). It replaced per-column indexes on `audit_entries`, whose scattered page writes dominated
 *   every durable commit.
 */
import { CompiledQuery, sql } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import { columnTypes } from '../store/index.ts';
import type { Bytes, EpochMillis, Migration, StoreDialect } from '../store/index.ts';
import type { SubtreeCoord } from './merkle.ts';

export interface AuditEntriesTable {
  idx: number;
  time: EpochMillis;
  leaf_hash: Bytes;
  /** Canonical (JCS) bytes of the entry; NULL once pruned by retention. */
  body: Bytes | null;
  principal: string;
  action: string;
  resource: string;
  outcome: string;
}

export interface AuditNodesTable {
  level: number;
  idx: number;
  hash: Bytes;
}

export interface AuditStateTable {
  id: string;
  origin: string;
  size: number;
  frontier: Bytes;
  /** Retention watermark: bodies of entries below this index have been pruned. */
  pruned_below: number;
  updated_at: EpochMillis;
}

export interface AuditCheckpointsTable {
  size: number;
  root: Bytes;
  note: string;
  created_at: EpochMillis;
}

export interface AuditTermsTable {
  /** A filter value with its column's prefix: `p:` principal id, `a:` action, `r:` resource, `o:` outcome. */
  term: string;
  idx: number;
}

export interface AuditTermsStateTable {
  id: string;
  /** Entries below this index have their terms in `audit_terms`. */
  indexed_below: number;
}

/** The audit log's tables, for `openStore<AuditDB>` (or a wider DB interface that includes them). */
export interface AuditDB {
  audit_entries: AuditEntriesTable;
  audit_nodes: AuditNodesTable;
  audit_state: AuditStateTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_terms: AuditTermsTable;
  audit_terms_state: AuditTermsStateTable;
}

/** Query filters and the prefixes of their terms in `audit_terms`. */
export const TERM_COLUMNS = [
  ['principal', 'p:'],
  ['action', 'a:'],
  ['resource', 'r:'],
  ['outcome', 'o:'],
] as const;

export const AUDIT_STATE_ID = 'log';

/** The audit log's schema. Append new migrations at the end; never edit a released one. */
export const auditLogMigrations: readonly Migration[] = [
  {
    id: 'audit/0001-log',
    async up(db, dialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('audit_entries')
        .addColumn('idx', t.int64, (c) => c.primaryKey())
        .addColumn('time', t.epochMillis, (c) => c.notNull())
        .addColumn('leaf_hash', t.bytes, (c) => c.notNull())
        .addColumn('body', t.bytes)
        .addColumn('principal', t.text, (c) => c.notNull())
        .addColumn('action', t.text, (c) => c.notNull())
        .addColumn('resource', t.text, (c) => c.notNull())
        .addColumn('outcome', t.text, (c) => c.notNull())
        .execute();
      // Filter columns with the index as second key: a filtered page (`… and idx > cursor order by idx`) is one
      // range scan.
      for (const col of ['principal', 'action', 'resource', 'outcome'] as const) {
        await db.schema
          .createIndex(`audit_entries_${col}`)
          .on('audit_entries')
          .columns([col, 'idx'])
          .execute();
      }
      await db.schema.createIndex('audit_entries_time').on('audit_entries').column('time').execute();
      await db.schema
        .createTable('audit_nodes')
        .addColumn('level', t.int64, (c) => c.notNull())
        .addColumn('idx', t.int64, (c) => c.notNull())
        .addColumn('hash', t.bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_nodes_pk', ['level', 'idx'])
        .execute();
      await db.schema
        .createTable('audit_state')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('origin', t.text, (c) => c.notNull())
        .addColumn('size', t.int64, (c) => c.notNull())
        .addColumn('frontier', t.bytes, (c) => c.notNull())
        .addColumn('pruned_below', t.int64, (c) => c.notNull().defaultTo(0))
        .addColumn('updated_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('size', t.int64, (c) => c.primaryKey())
        .addColumn('root', t.bytes, (c) => c.notNull())
        .addColumn('note', t.text, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .execute();
    },
  },
  {
    id: 'audit/0002-query-terms',
    async up(db, dialect) {
      const t = columnTypes(dialect);
      let terms = db.schema
        .createTable('audit_terms')
        .addColumn('term', t.text, (c) => c.notNull())
        .addColumn('idx', t.int64, (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_terms_pk', ['term', 'idx']);
      // The primary key is the only access path: no separate rowid B-tree on SQLite.
      if (dialect === 'sqlite') terms = terms.modifyEnd(sql`without rowid`);
      await terms.execute();
      await db.schema
        .createTable('audit_terms_state')
        .addColumn('id', t.text, (c) => c.primaryKey())
        .addColumn('indexed_below', t.int64, (c) => c.notNull())
        .execute();
      await db.executeQuery(CompiledQuery.raw(termsInsertSql('true')));
      await sql`insert into audit_terms_state (id, indexed_below)
        select ${AUDIT_STATE_ID}, coalesce(max(idx) + 1, 0) from audit_entries`.execute(db);
      for (const col of ['principal', 'action', 'resource', 'outcome']) {
        await db.schema.dropIndex(`audit_entries_${col}`).execute();
      }
    },
  },
];

/**
 * `insert into audit_terms` of the terms of the entries matching `where` (SQL), computed by the database from the
 * entries' columns: nothing passes through the process. Idempotent: a retried or concurrent run inserts nothing
 * twice.
 */
function termsInsertSql(where: string): string {
  const parts = TERM_COLUMNS.map(
    ([col, prefix]) => `select '${prefix}' || ${col} as term, idx from audit_entries where ${where}`,
  );
  // "where true": SQLite needs it to parse ON CONFLICT after INSERT … SELECT.
  return `insert into audit_terms (term, idx) select term, idx from (${parts.join(' union all ')}) terms where true on conflict do nothing`;
}

/**
 * Adds the terms of entries [lo, hi) to `audit_terms` and advances the watermark, in the caller's transaction.
 * The database computes the terms from the stored entries (nothing passes through the process).
 */
export async function indexTerms(
  trx: Transaction<AuditDB>,
  dialect: StoreDialect,
  lo: number,
  hi: number,
): Promise<void> {
  const p = placeholders(dialect);
  await trx.executeQuery(CompiledQuery.raw(termsInsertSql(`idx >= ${p(1)} and idx < ${p(2)}`), [lo, hi]));
  await trx
    .updateTable('audit_terms_state')
    .set({ indexed_below: hi })
    .where('id', '=', AUDIT_STATE_ID)
    .where('indexed_below', '<', hi)
    .execute();
}

/** Positional parameter `n` (1-based) in the dialect's syntax. */
function placeholders(dialect: StoreDialect): (n: number) => string {
  return dialect === 'sqlite' ? (n) => `?${n}` : (n) => `$${n}`;
}

/** Rows per INSERT statement: under SQLite's 32766 and PostgreSQL's 65535 bound parameters. */
const ENTRY_ROWS_PER_STATEMENT = 1000;
const NODE_ROWS_PER_STATEMENT = 3000;

const ENTRY_COLUMNS = [
  'idx',
  'time',
  'leaf_hash',
  'body',
  'principal',
  'action',
  'resource',
  'outcome',
] as const;
const NODE_COLUMNS = ['level', 'idx', 'hash'] as const;

/** Multi-row INSERT texts by dialect, table and row count: built once, so a batch costs no query building. */
const insertSqlCache = new Map<string, string>();

function insertSql(dialect: StoreDialect, table: string, columns: readonly string[], rows: number): string {
  const key = `${dialect}/${table}/${rows}`;
  let text = insertSqlCache.get(key);
  if (text === undefined) {
    const p = placeholders(dialect);
    const tuples: string[] = [];
    for (let r = 0, n = 1; r < rows; r++) {
      const slots: string[] = [];
      for (let c = 0; c < columns.length; c++) slots.push(p(n++));
      tuples.push(`(${slots.join(',')})`);
    }
    text = `insert into ${table} (${columns.join(',')}) values ${tuples.join(',')}`;
    // Batches come in few sizes (full batches, and whatever group commit gathered); keep the cache bounded.
    if (insertSqlCache.size > 512) insertSqlCache.clear();
    insertSqlCache.set(key, text);
  }
  return text;
}

/**
 * Inserts a batch of entries and nodes (within the caller's transaction): multi-row statements with positional
 * parameters, no per-row statements and no query building per batch.
 */
export async function insertBatch(
  trx: Transaction<AuditDB>,
  dialect: StoreDialect,
  entries: readonly AuditEntriesTable[],
  nodes: readonly AuditNodesTable[],
): Promise<void> {
  for (let i = 0; i < entries.length; i += ENTRY_ROWS_PER_STATEMENT) {
    const end = Math.min(entries.length, i + ENTRY_ROWS_PER_STATEMENT);
    const params: unknown[] = [];
    for (let j = i; j < end; j++) {
      const e = entries[j] as AuditEntriesTable;
      params.push(e.idx, e.time, e.leaf_hash, e.body, e.principal, e.action, e.resource, e.outcome);
    }
    await trx.executeQuery(
      CompiledQuery.raw(insertSql(dialect, 'audit_entries', ENTRY_COLUMNS, end - i), params),
    );
  }
  for (let i = 0; i < nodes.length; i += NODE_ROWS_PER_STATEMENT) {
    const end = Math.min(nodes.length, i + NODE_ROWS_PER_STATEMENT);
    const params: unknown[] = [];
    for (let j = i; j < end; j++) {
      const n = nodes[j] as AuditNodesTable;
      params.push(n.level, n.idx, n.hash);
    }
    await trx.executeQuery(
      CompiledQuery.raw(insertSql(dialect, 'audit_nodes', NODE_COLUMNS, end - i), params),
    );
  }
}

/** Coordinates per query when fetching subtree hashes (proofs need ~2·log2(n) at most). */
const COORDS_PER_QUERY = 200;

/**
 * Fetches the hashes of perfect subtrees: level 0 from `audit_entries.leaf_hash`, higher levels from
 * `audit_nodes`; one round trip (UNION ALL) for anything a proof needs. Returns hashes in `coords` order, or
 * throws if one is missing.
 */
export async function fetchSubtreeHashes(
  db: Kysely<AuditDB>,
  coords: readonly SubtreeCoord[],
): Promise<Uint8Array[]> {
  const found = new Map<string, Uint8Array>();
  for (let at = 0; at < coords.length; at += COORDS_PER_QUERY) {
    const chunk = coords.slice(at, at + COORDS_PER_QUERY);
    const leaves = chunk.filter((c) => c.level === 0).map((c) => c.index);
    const nodes = chunk.filter((c) => c.level > 0);
    const parts = [];
    if (leaves.length > 0) {
      parts.push(
        sql`select 0 as level, idx, leaf_hash as hash from audit_entries where idx in (${sql.join(leaves)})`,
      );
    }
    if (nodes.length > 0) {
      const cond = sql.join(
        nodes.map((c) => sql`(level = ${c.level} and idx = ${c.index})`),
        sql` or `,
      );
      parts.push(sql`select level, idx, hash from audit_nodes where ${cond}`);
    }
    if (parts.length === 0) continue;
    const query = sql<{ level: number; idx: number; hash: Uint8Array }>`${sql.join(parts, sql` union all `)}`;
    const { rows } = await query.execute(db);
    for (const r of rows) found.set(`${String(r.level)}/${String(r.idx)}`, r.hash);
  }
  return coords.map((c) => {
    const h = found.get(`${String(c.level)}/${String(c.index)}`);
    if (h === undefined) {
      throw new Error(`audit log storage lacks the subtree hash at level ${c.level}, index ${c.index}`);
    }
    return h;
  });
}
