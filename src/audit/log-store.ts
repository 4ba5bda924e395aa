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
 */
import { sql } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import { columnTypes } from '../store/index.ts';
import type { Bytes, EpochMillis, Migration } from '../store/index.ts';
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

/** The audit log's tables, for `openStore<AuditDB>` (or a wider DB interface that includes them). */
export interface AuditDB {
  audit_entries: AuditEntriesTable;
  audit_nodes: AuditNodesTable;
  audit_state: AuditStateTable;
  audit_checkpoints: AuditCheckpointsTable;
}

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
];

/** Rows per INSERT statement: under SQLite's 32766 and PostgreSQL's 65535 bound parameters. */
const ENTRY_ROWS_PER_STATEMENT = 1000;
const NODE_ROWS_PER_STATEMENT = 3000;

/** Inserts a batch of entries and nodes (within the caller's transaction). */
export async function insertBatch(
  trx: Transaction<AuditDB>,
  entries: readonly AuditEntriesTable[],
  nodes: readonly AuditNodesTable[],
): Promise<void> {
  for (let i = 0; i < entries.length; i += ENTRY_ROWS_PER_STATEMENT) {
    await trx
      .insertInto('audit_entries')
      .values(entries.slice(i, i + ENTRY_ROWS_PER_STATEMENT))
      .execute();
  }
  for (let i = 0; i < nodes.length; i += NODE_ROWS_PER_STATEMENT) {
    await trx
      .insertInto('audit_nodes')
      .values(nodes.slice(i, i + NODE_ROWS_PER_STATEMENT))
      .execute();
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
