// Audit log benchmark (docs/audit.md). Run from the repository root with the pinned Node:
//   ./node_modules/.bin/node bench/audit.ts [--size 1000000] [--pg]
// --size: entries of the big tree for the proof and verification figures (built through the normal append path,
//         with many events queued at once so batches are full). 10M works too (~2 GB of SQLite, a few minutes).
// --pg:   also measure append throughput on a throwaway PostgreSQL (test/support/postgres.ts; fsync=off there!).
//
// Prints: durable append throughput with 1 and 64 concurrent writers (target ≥ 20k events/s with 64), inclusion
// and consistency proof latency at the big size (target < 1 ms), and full verification speed next to raw SHA-256
// over the same body bytes (target ≥ 50 %).

import { createHash, generateKeyPairSync, hash, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AuditLog, MerkleFrontier, localEd25519NoteSigner } from '../src/audit/index.ts';
import type { AuditDB, AuditEvent } from '../src/audit/index.ts';
import { openStore } from '../src/store/index.ts';
import type { Store, StoreConfig } from '../src/store/index.ts';
import { openNodeSqlite } from '../src/store/node-sqlite.ts';
import { startPostgres } from '../test/support/postgres.ts';

const { values: args } = parseArgs({
  options: { size: { type: 'string', default: '1000000' }, pg: { type: 'boolean', default: false } },
});
const BIG = Number(args.size);
const ORIGIN = 'bench.warden.test/log';
const signer = localEd25519NoteSigner(generateKeyPairSync('ed25519').privateKey, ORIGIN);
const dir = mkdtempSync(join(tmpdir(), 'warden-audit-bench-'));
process.on('exit', () => {
  rmSync(dir, { recursive: true, force: true });
});

function event(i: number): AuditEvent {
  return {
    action: 'kms.decrypt',
    principal: { id: `svc:worker-${i % 50}`, authMethod: 'mtls' },
    resource: `key:projects/p${i % 20}/keys/k${i % 7}`,
    outcome: 'success',
    requestId: `01J${i.toString(36).padStart(10, '0')}`,
    sourceIp: '10.1.2.3',
    latencyMs: 0.25,
    keyVersion: 3,
  };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function throughput(config: StoreConfig, label: string): Promise<void> {
  const log = await AuditLog.open({ store: config, origin: ORIGIN, signer });
  // 1 writer: one event per commit (one fsync each).
  let n = 0;
  let t0 = performance.now();
  while (performance.now() - t0 < 2000) await log.record(event(n++));
  const single = n / ((performance.now() - t0) / 1000);
  // 64 writers, each waiting for its acknowledgement before the next event: group commit.
  const perWriter = 1000;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      for (let k = 0; k < perWriter; k++) await log.record(event(w * perWriter + k));
    }),
  );
  const concurrent = (64 * perWriter) / ((performance.now() - t0) / 1000);
  await log.close();
  console.log(`append ${label}: 1 writer ${fmt(single)} events/s`);
  console.log(
    `append ${label}: 64 writers ${fmt(concurrent)} events/s (${(concurrent / 20_000).toFixed(2)}x the 20k target, ${(concurrent / single).toFixed(0)}x one writer)`,
  );
}

/**
 * The floor under the log on this machine, now: node:sqlite alone (same pragmas, same entries table and indexes,
 * prepared statements, no Merkle work, no Kysely) committing 1 and 64 rows per durable transaction.
 */
function rawSqliteFloor(): void {
  const db = openNodeSqlite(join(dir, 'floor.db'), 5000).raw;
  db.exec(`create table e(idx integer primary key, time integer, leaf blob, body blob, principal text,
    action text, resource text, outcome text);
    create index e1 on e(principal, idx); create index e2 on e(action, idx); create index e3 on e(resource, idx);
    create index e4 on e(outcome, idx); create index e5 on e(time);`);
  const ins = db.prepare('insert into e values (?, ?, ?, ?, ?, ?, ?, ?)');
  const body = Buffer.alloc(260, 0x61);
  const leaf = Buffer.alloc(32, 1);
  let i = 0;
  for (const k of [1, 64]) {
    const t0 = performance.now();
    const txns = k === 1 ? 500 : 300;
    for (let n = 0; n < txns; n++) {
      db.exec('begin immediate');
      for (let j = 0; j < k; j++, i++) ins.run(i, i, leaf, body, `p${i % 50}`, 'a', `r${i % 20}`, 'success');
      db.exec('commit');
    }
    const ms = (performance.now() - t0) / txns;
    console.log(
      `floor: raw node:sqlite, ${k} row(s) per durable commit: ${ms.toFixed(2)} ms/commit = ${fmt((k / ms) * 1000)} rows/s`,
    );
  }
  db.close();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${new Date().toISOString()}`);
  rawSqliteFloor();
  await throughput({ kind: 'sqlite', path: join(dir, 'throughput.db') }, 'sqlite');
  if (args.pg) {
    const server = await startPostgres();
    try {
      await throughput({ kind: 'postgres', url: server.url }, 'postgres (fsync=off test cluster)');
    } finally {
      await server.stop();
    }
  }

  // Big tree, through the append path with up to 64k events in flight (full 4096-event batches).
  const path = join(dir, 'big.db');
  const store: Store<AuditDB> = await openStore<AuditDB>({ kind: 'sqlite', path });
  const log = await AuditLog.open({
    store,
    origin: ORIGIN,
    signer,
    checkpointEvery: { seconds: 3600, entries: 1_000_000 },
  });
  let t0 = performance.now();
  const window = 65_536;
  for (let at = 0; at < BIG; at += window) {
    const end = Math.min(BIG, at + window);
    const pending: Promise<void>[] = [];
    for (let i = at; i < end; i++) pending.push(log.record(event(i)));
    await Promise.all(pending);
  }
  const buildS = (performance.now() - t0) / 1000;
  console.log(
    `build: ${fmt(BIG)} entries through append() in ${buildS.toFixed(1)} s (${fmt(BIG / buildS)} events/s bulk), file ${fmt(statSync(path).size / 1e6)} MB`,
  );
  await log.checkpoint();

  const samples = 2000;
  for (const [name, run] of [
    ['inclusion proof', () => log.inclusionProof(randomInt(BIG), BIG)],
    ['consistency proof', () => log.consistencyProof(1 + randomInt(BIG - 1), BIG)],
  ] as const) {
    for (let i = 0; i < 200; i++) await run(); // warm-up
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      await run();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    console.log(
      `${name} at ${fmt(BIG)}: mean ${(mean * 1000).toFixed(0)} µs, p50 ${(percentile(times, 0.5) * 1000).toFixed(0)} µs, p99 ${(percentile(times, 0.99) * 1000).toFixed(0)} µs (target < 1000 µs: ${(1 / mean).toFixed(1)}x)`,
    );
  }

  // Full verification (reads every row, re-hashes every body, checks its index, rebuilds the tree, checks every
  // checkpoint) vs raw SHA-256 over the same body bytes.
  t0 = performance.now();
  const report = await log.verify();
  const verifyS = (performance.now() - t0) / 1000;
  const bodies: Uint8Array[] = [];
  const leaves: Uint8Array[] = [];
  for (let at = 0; at < BIG; at += 50_000) {
    const rows = await store.db
      .selectFrom('audit_entries')
      .select(['body', 'leaf_hash'])
      .where('idx', '>=', at)
      .where('idx', '<', at + 50_000)
      .orderBy('idx')
      .execute();
    for (const r of rows) {
      if (r.body !== null) bodies.push(r.body);
      leaves.push(r.leaf_hash);
    }
  }
  const bytes = bodies.reduce((a, b) => a + b.byteLength, 0);
  t0 = performance.now();
  for (const b of bodies) createHash('sha256').update(b).digest();
  const rawStreamS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  for (const b of bodies) hash('sha256', b, 'buffer');
  const rawS = Math.min(rawStreamS, (performance.now() - t0) / 1000); // the faster of the two APIs
  // The same checks as verify() but over bytes already in memory: the hashing/parsing share of the cost.
  t0 = performance.now();
  const ZERO = Buffer.of(0);
  const frontier = new MerkleFrontier();
  const decoder = new TextDecoder();
  for (let i = 0; i < bodies.length; i++) {
    const b = bodies[i] as Uint8Array;
    const l = leaves[i] as Uint8Array;
    if (!hash('sha256', Buffer.concat([ZERO, b]), 'buffer').equals(l)) throw new Error('mismatch');
    if ((JSON.parse(decoder.decode(b)) as { index: number }).index !== i) throw new Error('index');
    frontier.append(l);
  }
  frontier.root();
  const memS = (performance.now() - t0) / 1000;
  const rate = report.treeSize / verifyS;
  const raw = bodies.length / rawS;
  console.log(
    `verify: ${fmt(report.treeSize)} entries (avg body ${(bytes / bodies.length).toFixed(0)} B) in ${verifyS.toFixed(2)} s = ${fmt(rate)} entries/s, ${(bytes / verifyS / 1e6).toFixed(0)} MB/s`,
  );
  console.log(
    `raw SHA-256 over the same bodies: ${fmt(raw)} entries/s, ${(bytes / rawS / 1e6).toFixed(0)} MB/s`,
  );
  console.log(
    `verify / raw SHA-256 = ${((rate / raw) * 100).toFixed(0)} % (target ≥ 50 %); in-memory checks (MerkleFrontier, no DB reads): ${fmt(bodies.length / memS)} entries/s = ${((bodies.length / memS / raw) * 100).toFixed(0)} %`,
  );
  await log.close();
  await store.close();
}

await main();
