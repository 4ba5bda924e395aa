// Audit log benchmark (docs/audit.md, "Benchmark"). Run from the repository root with the pinned Node:
//   ./node_modules/.bin/node bench/audit.ts [--sizes 1000000,10000000] [--pg] [--skip-append]
// (`npm run bench:audit` runs it with the defaults.)
//
// Every figure is printed next to a baseline measured in the same run, as a ratio:
// - durable appends (SQLite, the default store) with 1 writer awaiting each event, 1 producer keeping 256
//   events in flight, and 64 concurrent writers each awaiting its acknowledgement — next to the raw node:sqlite
//   floor (the same entry row, prepared statements, one durable commit per 1 and per 64 rows) and the 20k target;
// - inclusion and consistency proof latency (p50, p99) at each of --sizes, next to the 1 ms target;
// - full verification, `AuditLog.verify()` and `verifyExportFile()` over an export of the first size, in
//   entries/s next to raw SHA-256 over the same body bytes (one call per body).
//
// The big logs are bulk-loaded straight into SQLite (bench only: the entries, leaf hashes and nodes the append
// path would write, in 200k-entry transactions, without per-commit fsync) and then opened with AuditLog.open,
// which checks the frontier against the stored nodes. Set WARDEN_BENCH_CACHE to a directory to keep them across
// runs (10M entries ≈ 4 GB); otherwise they live in a temporary directory removed at exit.
// --pg: append throughput on a throwaway PostgreSQL too (test/support/postgres.ts runs it with fsync=off, so
// the PostgreSQL figure is CPU and round trips, not durability).

import { createHash, createPrivateKey, hash, randomInt } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AuditLog, localEd25519NoteSigner, verifyExportFile } from '../src/audit/index.ts';
import type { AuditDB, AuditEvent } from '../src/audit/index.ts';
import { canonicalBytes } from '../src/audit/canonical.ts';
import { MerkleFrontier, leafHash } from '../src/audit/merkle.ts';
import { openStore } from '../src/store/index.ts';
import type { StoreConfig } from '../src/store/index.ts';
import { openNodeSqlite } from '../src/store/node-sqlite.ts';
import { startPostgres } from '../test/support/postgres.ts';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1000000,10000000' },
    pg: { type: 'boolean', default: false },
    'skip-append': { type: 'boolean', default: false },
  },
});
const SIZES = args.sizes.split(',').map(Number);
if (SIZES.length === 0 || SIZES.some((n) => !Number.isSafeInteger(n) || n < 2))
  throw new Error('bad --sizes');
const ORIGIN = 'bench.warden.test/log';
// A fixed, public, bench-only key (PKCS#8 of the seed 0x2a…): logs cached across runs carry checkpoints it signed.
const signer = localEd25519NoteSigner(
  createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 0x2a)]),
    format: 'der',
    type: 'pkcs8',
  }),
  ORIGIN,
);
const dir = mkdtempSync(join(tmpdir(), 'warden-audit-bench-'));
process.on('exit', () => {
  rmSync(dir, { recursive: true, force: true });
});
const cacheDir = process.env['WARDEN_BENCH_CACHE'];

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
const pct = (a: number, b: number): string => `${((a / b) * 100).toFixed(0)} %`;

/**
 * The floor under the log on this disk, now: node:sqlite alone (same pragmas, the entry row with its primary key
 * and time index, prepared statements, no Merkle work, no Kysely), committing 1 and 64 rows per durable
 * transaction.
 */
function rawSqliteFloor(): { one: number; sixtyFour: number } {
  const db = openNodeSqlite(join(dir, 'floor.db'), 5000).raw;
  db.exec(`create table e(idx integer primary key, time integer, leaf blob, body blob, principal text,
    action text, resource text, outcome text); create index e5 on e(time);`);
  const ins = db.prepare('insert into e values (?, ?, ?, ?, ?, ?, ?, ?)');
  const body = Buffer.alloc(267, 0x61);
  const leaf = Buffer.alloc(32, 1);
  let i = 0;
  const rates: number[] = [];
  for (const k of [1, 64]) {
    const t0 = performance.now();
    const txns = k === 1 ? 1000 : 400;
    for (let n = 0; n < txns; n++) {
      db.exec('begin immediate');
      for (let j = 0; j < k; j++, i++) ins.run(i, i, leaf, body, `p${i % 50}`, 'a', `r${i % 20}`, 'success');
      db.exec('commit');
    }
    const ms = (performance.now() - t0) / txns;
    rates.push((k / ms) * 1000);
    console.log(
      `floor: raw node:sqlite, ${k} row(s) per durable commit: ${ms.toFixed(2)} ms/commit = ${fmt((k / ms) * 1000)} rows/s`,
    );
  }
  db.close();
  return { one: rates[0] ?? NaN, sixtyFour: rates[1] ?? NaN };
}

async function throughput(config: StoreConfig, label: string, floor?: { one: number; sixtyFour: number }) {
  const log = await AuditLog.open({ store: config, origin: ORIGIN, signer });
  let n = 0;
  const ratio = (rate: number, f: number | undefined): string =>
    `${(rate / 20_000).toFixed(2)}x the 20k target${f === undefined ? '' : `, ${pct(rate, f)} of the floor`}`;
  // 1 writer awaiting each event: one durable commit per event, so bounded by the commit (fsync) latency.
  let t0 = performance.now();
  while (performance.now() - t0 < 2000) await log.record(event(n++));
  const single = n / ((performance.now() - t0) / 1000);
  console.log(
    `append ${label}: 1 writer awaiting each event: ${fmt(single)} events/s (${ratio(single, floor?.one)})`,
  );
  // 1 producer with up to 256 events in flight (e.g. a server recording for its requests).
  const total = 100_000;
  t0 = performance.now();
  const inflight = new Set<Promise<void>>();
  for (let k = 0; k < total; k++) {
    const p: Promise<void> = log.record(event(n++)).then(() => {
      inflight.delete(p);
    });
    inflight.add(p);
    if (inflight.size >= 256) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const pipelined = total / ((performance.now() - t0) / 1000);
  console.log(
    `append ${label}: 1 producer, 256 in flight: ${fmt(pipelined)} events/s (${ratio(pipelined, undefined)})`,
  );
  // 64 writers, each awaiting its acknowledgement before its next event: group commit of up to 64.
  const perWriter = 1500;
  const base = n;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      for (let k = 0; k < perWriter; k++) await log.record(event(base + w * perWriter + k));
    }),
  );
  const concurrent = (64 * perWriter) / ((performance.now() - t0) / 1000);
  console.log(
    `append ${label}: 64 concurrent writers: ${fmt(concurrent)} events/s (${ratio(concurrent, floor?.sixtyFour)})`,
  );
  await log.close();
}

/**
 * Bench-only bulk load: writes `n` entries of `event(i)` with the bodies, leaf hashes, nodes and state the append
 * path would write (times one millisecond apart), in big transactions without per-commit fsync, then signs a
 * checkpoint through AuditLog. Opening the result runs the usual frontier and checkpoint checks.
 */
async function bulkLoad(path: string, n: number): Promise<void> {
  const setup = await AuditLog.open({ store: { kind: 'sqlite', path }, origin: ORIGIN, signer });
  await setup.close();
  const db = openNodeSqlite(path, 5000).raw;
  db.exec('pragma synchronous = OFF');
  const ins = db.prepare(
    'insert into audit_entries (idx, time, leaf_hash, body, principal, action, resource, outcome) values (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const insNode = db.prepare('insert into audit_nodes (level, idx, hash) values (?, ?, ?)');
  const frontier = new MerkleFrontier();
  const t0 = Date.UTC(2026, 0, 1);
  const CHUNK = 200_000;
  for (let at = 0; at < n; at += CHUNK) {
    db.exec('begin immediate');
    for (let i = at; i < Math.min(n, at + CHUNK); i++) {
      const e = event(i);
      const body = canonicalBytes({ ...e, index: i, time: new Date(t0 + i).toISOString() });
      const leaf = leafHash(body);
      for (const node of frontier.append(leaf)) {
        if (node.level > 0) insNode.run(node.level, node.index, node.hash);
      }
      ins.run(i, t0 + i, leaf, body, e.principal.id, e.action, e.resource, e.outcome);
    }
    db.exec('commit');
    if (at > 0 && at % 2_000_000 === 0) console.log(`  … ${fmt(at)} entries`);
  }
  db.prepare("update audit_state set size = ?, frontier = ?, updated_at = ? where id = 'log'").run(
    n,
    frontier.serialize(),
    t0 + n,
  );
  db.exec('pragma wal_checkpoint(TRUNCATE)');
  db.close();
  const log = await AuditLog.open({ store: { kind: 'sqlite', path }, origin: ORIGIN, signer });
  await log.close(); // signs the checkpoint at size n (durably)
}

/** The log of `n` entries: from WARDEN_BENCH_CACHE when there, else bulk-loaded (into the cache if set). */
async function bigLog(n: number): Promise<string> {
  const name = `audit-bench-v2-${n}.db`;
  const path = join(cacheDir ?? dir, name);
  if (cacheDir !== undefined && existsSync(path)) {
    console.log(`log of ${fmt(n)} entries: cached ${path}`);
    return path;
  }
  if (cacheDir !== undefined) mkdirSync(cacheDir, { recursive: true });
  const building = `${path}.building`;
  rmSync(building, { force: true });
  const t0 = performance.now();
  await bulkLoad(building, n);
  renameSync(building, path);
  const s = (performance.now() - t0) / 1000;
  console.log(
    `log of ${fmt(n)} entries: bulk-loaded in ${s.toFixed(0)} s (${fmt(n / s)} entries/s), ${fmt(statSync(path).size / 1e6)} MB`,
  );
  return path;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

async function proofs(log: AuditLog, n: number): Promise<void> {
  const samples = 3000;
  for (const [name, run] of [
    ['inclusion proof', () => log.inclusionProof(randomInt(n), n)],
    ['consistency proof', () => log.consistencyProof(1 + randomInt(n - 1), n)],
  ] as const) {
    for (let i = 0; i < 300; i++) await run(); // warm-up
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      await run();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const p50 = percentile(times, 0.5) * 1000;
    const p99 = percentile(times, 0.99) * 1000;
    console.log(
      `${name} at ${fmt(n)}: p50 ${p50.toFixed(0)} µs, p99 ${p99.toFixed(0)} µs (target < 1000 µs: p50 ${(1000 / p50).toFixed(1)}x, p99 ${(1000 / p99).toFixed(1)}x)`,
    );
  }
}

/** Raw SHA-256 over the bodies, one call per body: the faster of the Buffer-returning APIs, and hex output. */
function rawHashing(bodies: readonly Uint8Array[]): { buffer: number; hex: number } {
  const rate = (f: (b: Uint8Array) => unknown): number => {
    const t0 = performance.now();
    for (const b of bodies) f(b);
    return bodies.length / ((performance.now() - t0) / 1000);
  };
  const buffer = Math.max(
    rate((b) => createHash('sha256').update(b).digest()),
    rate((b) => hash('sha256', b, 'buffer')),
  );
  const hex = Math.max(
    rate((b) => hash('sha256', b, 'hex')),
    rate((b) => hash('sha256', b, 'hex')),
  );
  return { buffer, hex };
}

async function verification(path: string, n: number): Promise<void> {
  const store = await openStore<AuditDB>({ kind: 'sqlite', path });
  const log = await AuditLog.open({
    store,
    origin: ORIGIN,
    signer,
    checkpointEvery: { seconds: 3600, entries: Number.MAX_SAFE_INTEGER },
  });
  const bodies: Uint8Array[] = [];
  for (let at = 0; at < n; at += 50_000) {
    const rows = await store.db
      .selectFrom('audit_entries')
      .select('body')
      .where('idx', '>=', at)
      .where('idx', '<', at + 50_000)
      .orderBy('idx')
      .execute();
    for (const r of rows) if (r.body !== null) bodies.push(r.body);
  }
  const bytes = bodies.reduce((a, b) => a + b.byteLength, 0);
  const show = (what: string, s: number, raw: { buffer: number; hex: number }): void => {
    const rate = n / s;
    console.log(
      `${what}: ${fmt(n)} entries (avg body ${(bytes / n).toFixed(0)} B) in ${s.toFixed(2)} s = ${fmt(rate)} entries/s; ` +
        `raw SHA-256 per body ${fmt(raw.buffer)}/s (Buffer output) → ${pct(rate, raw.buffer)} (target ≥ 50 %), ` +
        `${fmt(raw.hex)}/s (hex output, the fastest call) → ${pct(rate, raw.hex)}`,
    );
  };

  let t0 = performance.now();
  const report = await log.verify({});
  const verifyS = (performance.now() - t0) / 1000;
  if (report.treeSize !== n) throw new Error('verify: wrong size');
  show('AuditLog.verify()', verifyS, rawHashing(bodies));

  const file = join(dir, 'export.jsonl');
  const out = createWriteStream(file);
  t0 = performance.now();
  await log.export(out);
  out.end();
  await once(out, 'close');
  console.log(
    `export: ${fmt(n)} entries in ${((performance.now() - t0) / 1000).toFixed(2)} s, ${fmt(statSync(file).size / 1e6)} MB`,
  );
  t0 = performance.now();
  const r = await verifyExportFile(file, { verifierKey: signer.verifierKey });
  const exportS = (performance.now() - t0) / 1000;
  if (!r.ok || r.entriesChecked !== n) throw new Error('verifyExportFile: export did not verify');
  show('verifyExportFile()', exportS, rawHashing(bodies));
  rmSync(file, { force: true });
  await log.close();
  await store.close();
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${new Date().toISOString()}`);
  if (!args['skip-append']) {
    const floor = rawSqliteFloor();
    await throughput({ kind: 'sqlite', path: join(dir, 'throughput.db') }, 'sqlite', floor);
    if (args.pg) {
      const server = await startPostgres();
      try {
        await throughput({ kind: 'postgres', url: server.url }, 'postgres (fsync=off test cluster)');
      } finally {
        await server.stop();
      }
    }
  }
  for (const [k, n] of SIZES.entries()) {
    const path = await bigLog(n);
    const log = await AuditLog.open({
      store: { kind: 'sqlite', path },
      origin: ORIGIN,
      signer,
      checkpointEvery: { seconds: 3600, entries: Number.MAX_SAFE_INTEGER },
    });
    await proofs(log, n);
    await log.close();
    if (k === 0) await verification(path, n);
    if (cacheDir === undefined) rmSync(path, { force: true });
  }
}

await main();
