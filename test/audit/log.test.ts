// The tamper-evident audit log (src/audit/log.ts), run unchanged on SQLite (a temporary file) and PostgreSQL (a
// throwaway cluster, a fresh database per fixture).

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import {
  AuditLog,
  AuditLogError,
  MemoryMerkleTree,
  MerkleFrontier,
  auditLogMigrations,
  leafHash,
  openCheckpoint,
  parseVerifierKey,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
  localEd25519NoteSigner,
} from '../../src/audit/index.ts';
import type { AuditDB, AuditEvent, AuditLogOptions, Ed25519NoteSigner } from '../../src/audit/index.ts';
import { canonicalBytes } from '../../src/audit/canonical.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store, StoreConfig } from '../../src/store/index.ts';
import { tempDir } from '../envelope/support.ts';
import { startPostgres } from '../support/postgres.ts';

const ORIGIN = 'audit.warden.test/log';
const START = Date.UTC(2026, 0, 1);
const DAY = 24 * 60 * 60 * 1000;

type Dialect = 'sqlite' | 'postgres';

let postgres: Promise<{ url: string; stop(): Promise<void> }> | undefined;
let databases = 0;
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

async function storeConfig(dialect: Dialect): Promise<StoreConfig> {
  if (dialect === 'sqlite') return { kind: 'sqlite', path: join(tempDir('warden-audit-'), 'audit.db') };
  postgres ??= startPostgres();
  const server = await postgres;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const name = `audit_log_${++databases}`;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return { kind: 'postgres', url: server.url.replace(/\/warden_test$/, `/${name}`) };
}

const signer: Ed25519NoteSigner = localEd25519NoteSigner(generateKeyPairSync('ed25519').privateKey, ORIGIN);
const verifier = parseVerifierKey(signer.verifierKey);

interface Fixture {
  store: Store<AuditDB>;
  log: AuditLog;
  clock: { now: number };
  options: AuditLogOptions;
}

async function fixture(dialect: Dialect, extra: Partial<AuditLogOptions> = {}): Promise<Fixture> {
  const store = await openStore<AuditDB>(await storeConfig(dialect));
  const clock = { now: START };
  const options: AuditLogOptions = {
    store,
    origin: ORIGIN,
    signer,
    now: () => clock.now,
    hasherKey: new Uint8Array(32).fill(7),
    ...extra,
  };
  const log = await AuditLog.open(options);
  after(async () => {
    await log.close().catch(() => undefined);
    await store.close();
  });
  return { store, log, clock, options };
}

function event(i: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    action: ['kms.encrypt', 'kms.decrypt', 'auth.login'][i % 3] as string,
    principal: { id: `user:${['alice', 'bob', 'carol', 'dave'][i % 4] as string}`, authMethod: 'token' },
    resource: `key:${i % 5}`,
    outcome: i % 7 === 0 ? 'denied' : 'success',
    requestId: `req-${i}`,
    latencyMs: i / 3,
    details: { n: i, flag: i % 2 === 0 },
    ...overrides,
  };
}

/** 64 concurrent writers, each waiting for its acknowledgement before the next event. */
async function appendConcurrently(log: AuditLog, writers: number, perWriter: number) {
  const receipts = await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const out = [];
      for (let k = 0; k < perWriter; k++) out.push(await log.append(event(w * perWriter + k)));
      return out;
    }),
  );
  return receipts.flat();
}

async function exportLines(log: AuditLog, options = {}): Promise<string[]> {
  const lines: string[] = [];
  await log.export((l) => {
    lines.push(l);
  }, options);
  return lines;
}

/** Byte equality regardless of Buffer vs Uint8Array. */
function eqBytes(a: Uint8Array | undefined, b: Uint8Array | undefined, message?: string): void {
  assert.ok(a !== undefined && b !== undefined, message);
  assert.equal(Buffer.from(a).toString('hex'), Buffer.from(b).toString('hex'), message);
}

const dialects: Dialect[] = ['sqlite', 'postgres'];

for (const dialect of dialects) {
  describe(`audit log on ${dialect}`, () => {
    it('acknowledges concurrent appends with contiguous indexes and a root over the stored leaves', async () => {
      const { log } = await fixture(dialect);
      const receipts = await appendConcurrently(log, 64, 25);
      const n = 64 * 25;
      assert.equal(log.size, n);
      assert.deepEqual(
        receipts.map((r) => r.index).sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i),
      );
      const leaves = await log.leafHashes(0, n);
      for (const r of receipts) assert.deepEqual(leaves[r.index], r.leafHash);
      const root = rootFromLeafHashes(leaves);
      eqBytes(log.root(), root);
      eqBytes(await log.rootAt(n), root);
      // Receipts' leaf hashes are those of the canonical entry bodies.
      const page = await log.query({ limit: 1000 });
      for (const e of page.entries) {
        assert.ok(e.entry !== null);
        assert.equal(e.entry.index, e.index);
        assert.equal(e.entry.time, e.time);
        eqBytes(leafHash(canonicalBytes(e.entry)), e.leafHash);
      }
      const report = await log.verify({ verifier });
      assert.equal(report.treeSize, n);
      assert.equal(report.bodiesChecked, n);
    });

    it('serves inclusion and consistency proofs and historical roots that verify', async () => {
      const { log } = await fixture(dialect);
      await appendConcurrently(log, 16, 20);
      const n = log.size;
      const leaves = await log.leafHashes(0, n);
      const reference = new MemoryMerkleTree();
      for (const l of leaves) reference.appendLeafHash(l);
      const sizes = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 255, 256, 257, n - 1, n];
      const roots = new Map<number, Uint8Array>();
      for (const s of sizes) {
        const root = await log.rootAt(s);
        eqBytes(root, rootFromLeafHashes(leaves.slice(0, s)));
        roots.set(s, root);
      }
      for (let i = 0; i < n; i++) {
        const proof = await log.inclusionProof(i, n);
        assert.deepEqual(
          proof.map((p) => Buffer.from(p).toString('hex')),
          reference.inclusionProof(i, n).map((p) => Buffer.from(p).toString('hex')),
        );
        verifyInclusion(leaves[i] as Uint8Array, i, n, proof, log.root());
      }
      for (const s of sizes) {
        for (const i of [0, Math.floor(s / 2), s - 1]) {
          verifyInclusion(
            leaves[i] as Uint8Array,
            i,
            s,
            await log.inclusionProof(i, s),
            roots.get(s) as Uint8Array,
          );
        }
        for (const s2 of sizes) {
          if (s2 < s) continue;
          const proof = await log.consistencyProof(s, s2);
          verifyConsistency(s, s2, proof, roots.get(s) as Uint8Array, roots.get(s2) as Uint8Array);
        }
      }
      await assert.rejects(log.inclusionProof(0, n + 1), /exceeds/);
      await assert.rejects(log.inclusionProof(n, n), /less than/);
    });

    it('signs mutually consistent checkpoints by entry count, by time and on demand', async () => {
      const errors: unknown[] = [];
      const { log } = await fixture(dialect, {
        checkpointEvery: { seconds: 0.05, entries: 100 },
        onBackgroundError: (e) => errors.push(e),
      });
      for (let round = 0; round < 5; round++) await appendConcurrently(log, 8, 30);
      await log.append(event(9999));
      await new Promise((r) => setTimeout(r, 200)); // the timer covers the tail
      assert.deepEqual(errors, []);
      const latest = log.latestCheckpoint();
      assert.equal(latest?.treeSize, log.size);
      const forced = await log.checkpoint();
      assert.equal(forced, latest, 'nothing new: the latest checkpoint is returned');
      const cps = await log.checkpoints();
      assert.ok(cps.length >= 3, `only ${cps.length} checkpoints`);
      for (let i = 0; i < cps.length; i++) {
        const cp = cps[i];
        assert.ok(cp !== undefined);
        const opened = openCheckpoint(cp.note, [verifier], ORIGIN);
        assert.equal(opened.checkpoint.treeSize, cp.treeSize);
        eqBytes(opened.checkpoint.rootHash, cp.rootHash);
        eqBytes(await log.rootAt(cp.treeSize), cp.rootHash);
        const prev = cps[i - 1];
        if (prev !== undefined && prev.treeSize > 0) {
          assert.ok(prev.treeSize < cp.treeSize);
          const proof = await log.consistencyProof(prev.treeSize, cp.treeSize);
          verifyConsistency(prev.treeSize, cp.treeSize, proof, prev.rootHash, cp.rootHash);
        }
      }
    });

    it('queries by filter and time with cursor paging', async () => {
      const { log, clock } = await fixture(dialect);
      const n = 300;
      for (let i = 0; i < n; i++) {
        clock.now = START + i * 1000;
        await log.record(event(i));
      }
      const all = Array.from({ length: n }, (_, i) => ({ i, e: event(i) }));
      const cases = [
        { q: { principal: 'user:bob' }, want: all.filter((x) => x.e.principal.id === 'user:bob') },
        { q: { action: 'kms.decrypt' }, want: all.filter((x) => x.e.action === 'kms.decrypt') },
        {
          q: { resource: 'key:3', outcome: 'success' },
          want: all.filter((x) => x.e.resource === 'key:3' && x.e.outcome === 'success'),
        },
        { q: { outcome: 'denied' }, want: all.filter((x) => x.e.outcome === 'denied') },
        {
          q: { from: START + 50_000, to: new Date(START + 120_000).toISOString(), action: 'auth.login' },
          want: all.filter((x) => x.i >= 50 && x.i < 120 && x.e.action === 'auth.login'),
        },
        { q: {}, want: all },
      ];
      for (const { q, want } of cases) {
        const got: number[] = [];
        let after: number | undefined;
        let pages = 0;
        for (;;) {
          const page = await log.query({ ...q, ...(after === undefined ? {} : { after }), limit: 7 });
          pages++;
          for (const e of page.entries) {
            got.push(e.index);
            assert.equal(e.entry?.requestId, `req-${e.index}`);
            assert.equal(e.time, new Date(START + e.index * 1000).toISOString());
          }
          if (page.nextCursor === null) break;
          after = page.nextCursor;
        }
        assert.deepEqual(
          got,
          want.map((x) => x.i),
          JSON.stringify(q),
        );
        assert.ok(pages >= Math.ceil(want.length / 7));
      }
      const one = await log.query({ principal: 'user:alice', limit: 1 });
      assert.equal(one.entries.length, 1);
      assert.equal(one.entries[0]?.entry?.principal.id, 'user:alice');
      await assert.rejects(log.query({ limit: 1001 }), /limit/);
      await assert.rejects(log.query({ limit: 0 }), /limit/);
    });

    it('prunes old bodies but keeps every hash: proofs, verification and export still hold', async () => {
      const { log, clock } = await fixture(dialect);
      for (let i = 0; i < 50; i++) {
        clock.now = START + i * DAY;
        await log.record(event(i));
      }
      const before = await log.checkpoint();
      assert.equal(await log.prune(START + 20 * DAY), 20);
      assert.equal(await log.prune(START + 20 * DAY), 0);
      const page = await log.query({ limit: 100 });
      page.entries.forEach((e) => {
        assert.equal(e.entry === null, e.index < 20, `entry ${e.index}`);
      });
      const leaves = await log.leafHashes(0, 50);
      for (const i of [0, 10, 19, 20, 49]) {
        verifyInclusion(leaves[i] as Uint8Array, i, 50, await log.inclusionProof(i, 50), before.rootHash);
      }
      const report = await log.verify({ verifier });
      assert.equal(report.bodiesPruned, 20);
      assert.equal(report.bodiesChecked, 30);
      const lines = await exportLines(log);
      const entries = lines.slice(1, -1).map((l) => JSON.parse(l) as { index: number; event: unknown });
      entries.forEach((e) => {
        assert.equal(e.event === null, e.index < 20);
      });
    });

    it('a prune asked for during an export waits for it: no pruned body after a present one', async () => {
      const { log, clock } = await fixture(dialect);
      // More than one export page (5000 entries); the prune would reach into the second page.
      for (let i = 0; i < 7000; i += 500) {
        clock.now = START + i * 1000;
        await Promise.all(Array.from({ length: 500 }, (_, k) => log.record(event(i + k))));
      }
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => (release = resolve));
      let reachedPageEnd = (): void => undefined;
      const atPageEnd = new Promise<void>((resolve) => (reachedPageEnd = resolve));
      const lines: string[] = [];
      const exporting = log.export(async (l) => {
        lines.push(l);
        if (lines.length === 1 + 5000) {
          reachedPageEnd(); // the first page is written, the second not read yet
          await held;
        }
      });
      await atPageEnd;
      let pruned = false;
      const pruning = log.prune(START + 6000 * 1000).then((n) => {
        pruned = true;
        return n;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(pruned, false, 'the prune waits for the export');
      release();
      await exporting;
      assert.equal(await pruning, 6000);
      const events = lines.slice(1, -1).map((l) => (JSON.parse(l) as { event: unknown }).event);
      assert.equal(events.filter((e) => e === null).length, 0, 'the export read the log before the prune');
      const after = await exportLines(log);
      const nulls = after.slice(1, -1).map((l) => (JSON.parse(l) as { event: unknown }).event === null);
      assert.equal(nulls.indexOf(false), 6000);
      assert.equal(nulls.lastIndexOf(true), 5999);
    });

    it('exports the documented format, whole and by time range, ending with a covering checkpoint', async () => {
      const { log, clock } = await fixture(dialect);
      for (let i = 0; i < 120; i++) {
        clock.now = START + i * 60_000;
        await log.record(event(i, i === 5 ? { details: { note: 'ünïcödé "quoted" \n line' } } : {}));
      }
      const lines = await exportLines(log);
      assert.equal(lines.length, 122);
      const header = JSON.parse(lines[0] as string) as Record<string, unknown>;
      assert.deepEqual(header, {
        type: 'warden-audit-export',
        version: 1,
        origin: ORIGIN,
        treeSize: 120,
        from: 0,
        to: 120,
      });
      assert.equal(Object.keys(header).join(), 'type,version,origin,treeSize,from,to');
      const leaves: Uint8Array[] = [];
      lines.slice(1, -1).forEach((line, i) => {
        const e = JSON.parse(line) as {
          type: string;
          index: number;
          leafHash: string;
          event: Record<string, unknown>;
        };
        assert.equal(Object.keys(e).join(), 'type,index,leafHash,event');
        assert.equal(e.type, 'entry');
        assert.equal(e.index, i);
        assert.equal(e.event['index'], i);
        const leaf = new Uint8Array(Buffer.from(e.leafHash, 'base64'));
        assert.equal(leaf.byteLength, 32);
        eqBytes(leafHash(canonicalBytes(e.event)), leaf);
        leaves.push(leaf);
      });
      const last = JSON.parse(lines.at(-1) as string) as { type: string; note: string };
      assert.equal(last.type, 'checkpoint');
      const opened = openCheckpoint(last.note, [verifier], ORIGIN);
      assert.equal(opened.checkpoint.treeSize, 120);
      eqBytes(rootFromLeafHashes(leaves), opened.checkpoint.rootHash);

      // A time range: bodies only for [30, 45); a stream sink gets the same lines.
      const range = { from: START + 30 * 60_000, to: new Date(START + 45 * 60_000 - 1) };
      const ranged = await exportLines(log, range);
      assert.deepEqual(JSON.parse(ranged[0] as string), { ...header, from: 30, to: 45 });
      ranged.slice(1, -1).forEach((line, i) => {
        const e = JSON.parse(line) as { event: unknown };
        assert.equal(e.event !== null, i >= 30 && i < 45, `entry ${i}`);
      });
      const stream = new PassThrough();
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      const summary = await log.export(stream, range);
      stream.end();
      assert.equal(Buffer.concat(chunks).toString('utf8'), ranged.map((l) => `${l}\n`).join(''));
      assert.equal(summary.treeSize, 120);
      // New entries after the export: the next export's checkpoint covers them and extends the first.
      await log.record(event(500));
      const next = await exportLines(log);
      const cp2 = openCheckpoint(
        (JSON.parse(next.at(-1) as string) as { note: string }).note,
        [verifier],
        ORIGIN,
      ).checkpoint;
      assert.equal(cp2.treeSize, 121);
      verifyConsistency(
        120,
        121,
        await log.consistencyProof(120, 121),
        opened.checkpoint.rootHash,
        cp2.rootHash,
      );
    });

    it('fails closed when the store fails under it', async () => {
      const { log, store } = await fixture(dialect);
      await appendConcurrently(log, 4, 10);
      await store.close();
      const results = await Promise.allSettled([log.record(event(1)), log.record(event(2))]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof AuditLogError);
        assert.equal(r.reason.reason, 'unavailable');
        // What an API caller sees (public code and status), not an internal error.
        assert.deepEqual([r.reason.code, r.reason.httpStatus], ['audit_unavailable', 503]);
      }
      await log.close();
      await assert.rejects(
        log.record(event(3)),
        (e: unknown) => e instanceof AuditLogError && e.reason === 'closed',
      );
    });

    it('reopens with the same tree, keeps appending, and refuses another origin', async () => {
      const config = await storeConfig(dialect);
      const base = { origin: ORIGIN, signer, checkpointEvery: { seconds: 60, entries: 1_000_000 } };
      const first = await AuditLog.open({ ...base, store: config });
      await appendConcurrently(first, 8, 10);
      const root = first.root();
      await first.close();
      const second = await AuditLog.open({ ...base, store: config });
      assert.equal(second.size, 80);
      eqBytes(second.root(), root);
      assert.equal(second.latestCheckpoint()?.treeSize, 80, 'close() signed a final checkpoint');
      const r = await second.append(event(80));
      assert.equal(r.index, 80);
      await second.close();
      await assert.rejects(
        AuditLog.open({ ...base, origin: 'other.example/log', store: config }),
        /another origin/,
      );
    });

    it('detects tampering: an edited body fails verify, an edited node fails open', async () => {
      const { log, store, options } = await fixture(dialect);
      await appendConcurrently(log, 4, 16);
      await log.checkpoint();
      await log.verify({ verifier });
      const forged = canonicalBytes({
        ...event(0),
        index: 3,
        time: new Date(START).toISOString(),
        outcome: 'success',
      });
      await store.db.updateTable('audit_entries').set({ body: forged }).where('idx', '=', 3).execute();
      await assert.rejects(
        log.verify(),
        (e: unknown) =>
          e instanceof AuditLogError &&
          /entry 3 /.test(e.message) &&
          // POST /v1/audit/verify answers this to the auditor instead of 500 "internal error".
          e.code === 'integrity_failure' &&
          e.httpStatus === 500,
      );
      await log.close();
      await sql`update audit_nodes set hash = ${new Uint8Array(32)} where level = 6 and idx = 0`.execute(
        store.db,
      );
      await assert.rejects(
        AuditLog.open(options),
        (e: unknown) => e instanceof AuditLogError && e.reason === 'integrity',
      );
    });

    it('verifies a log of several blocks (worker threads on SQLite) and names the first bad entry', async () => {
      const { log, store } = await fixture(dialect);
      const n = 2 * 4096 + 37;
      for (let at = 0; at < n; at += 512) {
        await Promise.all(Array.from({ length: Math.min(512, n - at) }, (_, k) => log.append(event(at + k))));
        // Checkpoints inside blocks and on a block boundary are checked against prefix roots.
        if (at === 4096 || at === 5120) await log.checkpoint();
      }
      await log.checkpoint();
      const report = await log.verify({ verifier });
      assert.equal(report.treeSize, n);
      assert.equal(report.bodiesChecked, n);
      assert.equal(report.checkpointsChecked, (await log.checkpoints()).length);
      assert.ok(report.checkpointsChecked >= 3);
      eqBytes(report.rootHash, (await log.checkpoints()).at(-1)?.rootHash);

      const forge = (i: number) =>
        canonicalBytes({ ...event(i), index: i, time: new Date(START).toISOString(), outcome: 'failure' });
      await store.db
        .updateTable('audit_entries')
        .set({ body: forge(7000) })
        .where('idx', '=', 7000)
        .execute();
      await store.db
        .updateTable('audit_entries')
        .set({ body: forge(6000) })
        .where('idx', '=', 6000)
        .execute();
      await assert.rejects(
        log.verify(),
        (e: unknown) => e instanceof AuditLogError && /^entry 6000 /.test(e.message),
      );
    });

    it('a body removed from the database after bodies of earlier entries fails verify, in or across blocks', async () => {
      const { log, store } = await fixture(dialect);
      const n = 4096 + 100;
      for (let at = 0; at < n; at += 512) {
        await Promise.all(Array.from({ length: Math.min(512, n - at) }, (_, k) => log.append(event(at + k))));
      }
      await log.checkpoint();
      const drop = (lo: number, hi: number) =>
        store.db
          .updateTable('audit_entries')
          .set({ body: null })
          .where('idx', '>=', lo)
          .where('idx', '<', hi)
          .execute();
      // Retention's pattern, the oldest bodies, is fine; so is a whole first block.
      await drop(0, 4096);
      assert.equal((await log.verify({ verifier })).bodiesPruned, 4096);
      // A body gone after bodies, in the last block, and at the start of a block after a block with bodies.
      await drop(4150, 4151);
      await assert.rejects(
        log.verify(),
        (e: unknown) =>
          e instanceof AuditLogError && /^entry 4150 has no body although earlier/.test(e.message),
      );
    });

    it('upgrades a log written before the query index: terms backfilled, queries and verify hold', async () => {
      // A database at migration 0001 holding 40 entries (written the way the 0001 log wrote them), then opened
      // by the current log, which applies 0002 (terms backfilled, per-column indexes dropped).
      const store = await openStore<AuditDB>(await storeConfig(dialect));
      await store.migrate(auditLogMigrations.slice(0, 1));
      const frontier = new MerkleFrontier();
      const n = 40;
      for (let i = 0; i < n; i++) {
        const e = event(i);
        const body = canonicalBytes({ ...e, index: i, time: new Date(START + i).toISOString() });
        const leaf = leafHash(body);
        const nodes = frontier.append(leaf).filter((x) => x.level > 0);
        await store.db
          .insertInto('audit_entries')
          .values({
            idx: i,
            time: START + i,
            leaf_hash: leaf,
            body,
            principal: e.principal.id,
            action: e.action,
            resource: e.resource,
            outcome: e.outcome,
          })
          .execute();
        for (const x of nodes) {
          await store.db
            .insertInto('audit_nodes')
            .values({ level: x.level, idx: x.index, hash: x.hash })
            .execute();
        }
      }
      await store.db
        .insertInto('audit_state')
        .values({
          id: 'log',
          origin: ORIGIN,
          size: n,
          frontier: frontier.serialize(),
          pruned_below: 0,
          updated_at: START + n,
        })
        .execute();
      const log = await AuditLog.open({ store, origin: ORIGIN, signer, now: () => START + n });
      after(async () => {
        await log.close();
        await store.close();
      });
      assert.equal(log.size, n);
      const page = await log.query({ principal: 'user:bob', limit: 1000 });
      assert.deepEqual(
        page.entries.map((e) => e.index),
        Array.from({ length: n }, (_, i) => i).filter((i) => i % 4 === 1),
      );
      await log.record(event(n));
      const both = await log.query({ principal: 'user:alice', outcome: 'denied', limit: 1000 });
      assert.deepEqual(
        both.entries.map((e) => e.index),
        Array.from({ length: n + 1 }, (_, i) => i).filter((i) => i % 4 === 0 && i % 7 === 0),
      );
      assert.equal((await log.verify({ verifier })).treeSize, n + 1);
    });

    it('queries see every committed entry although the index is built behind the appends', async () => {
      const { log, options } = await fixture(dialect);
      await appendConcurrently(log, 8, 25);
      await log.close();
      // Reopened with the index behind (200 entries is far below the background threshold): the query catches up.
      const again = await AuditLog.open(options);
      const seen: number[] = [];
      try {
        for (let after: number | null = -1; after !== null;) {
          const page = await again.query({ resource: 'key:3', limit: 7, ...(after >= 0 ? { after } : {}) });
          seen.push(...page.entries.map((e) => e.index));
          for (const e of page.entries) assert.equal(e.entry?.resource, 'key:3');
          after = page.nextCursor;
        }
      } finally {
        await again.close();
      }
      assert.equal(seen.length, 40);
      assert.deepEqual(
        seen,
        [...seen].sort((a, b) => a - b),
      );
    });

    it('hashes sensitive values with the per-log key', async () => {
      const { log } = await fixture(dialect);
      const h = log.hash('4111-1111-1111-1111');
      assert.match(h, /^hmac-sha256:[0-9a-f]{64}$/);
      assert.equal(log.hash('4111-1111-1111-1111'), h);
      assert.notEqual(log.hash('4111-1111-1111-1112'), h);
      const rejected = await log
        .append({ ...event(0), details: { bad: Number.NaN } })
        .catch((e: unknown) => e);
      assert.ok(rejected instanceof Error);
      assert.equal((await log.append(event(1))).index, 0, 'a rejected event takes no index');
    });
  });
}
