// Crash safety of the audit log on SQLite: a child process appends (and queries) as fast as it can and is killed
// with SIGKILL at random points, over and over: sometimes during start-up (open, migrations, recovery checks),
// mostly after a random number of acknowledged events plus a random delay, so kills land in append batches,
// checkpoint signing and query-index transactions. After every kill the log reopens with every acknowledged entry
// (same leaf hash, hence same body), a tree that verifies end to end (bodies, leaves, nodes, persisted frontier,
// every signed checkpoint — so all checkpoints ever signed are consistent with one tree), the latest checkpoint
// extended consistently, a query index that finds every acknowledged entry of a writer, and appends carry on.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { it } from 'node:test';
import {
  AuditLog,
  localEd25519NoteSigner,
  parseVerifierKey,
  rootFromLeafHashes,
  verifyConsistency,
} from '../../src/audit/index.ts';
import { tempDir } from '../envelope/support.ts';
import { killAfterAcks } from '../support/crash.ts';

const WRITER = join(import.meta.dirname, 'fixtures', 'crash-writer.ts');
const ORIGIN = 'crash.warden.test/log';
const ITERATIONS = 30;

const { privateKey } = generateKeyPairSync('ed25519');
const signer = localEd25519NoteSigner(privateKey, ORIGIN);
const verifier = parseVerifierKey(signer.verifierKey);
const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

/** Runs the writer until it has acknowledged a random number of events, waits a random moment, kills it. */
interface Acked {
  readonly hash: string;
  readonly writer: number;
}

async function crashOnce(path: string): Promise<Map<number, Acked>> {
  const child = spawn(process.execPath, [WRITER, JSON.stringify({ path, origin: ORIGIN, privateKeyPem })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // One kill in five during start-up (before or around the first acknowledgement), the rest after 1–600.
  const early = Math.random() < 0.2;
  const { lines, stderr } = await killAfterAcks(
    child,
    early ? { acks: 0, maxDelayMs: 400 } : { acks: 1 + Math.floor(Math.random() * 600), maxDelayMs: 20 },
  );
  assert.doesNotMatch(stderr, /checkpoint failed/);
  const acked = new Map<number, Acked>();
  for (const line of lines) {
    const [index, hash, writer] = line.split(' ');
    acked.set(Number(index), { hash: hash ?? '', writer: Number(writer) });
  }
  return acked;
}

it(
  `keeps every acknowledged entry and a verifiable tree across ${ITERATIONS} SIGKILLs`,
  { timeout: 300_000 },
  async () => {
    const path = join(tempDir('warden-audit-crash-'), 'audit.db');
    let previousSize = 0;
    let totalAcked = 0;
    for (let iteration = 0; iteration < ITERATIONS; iteration++) {
      const acked = await crashOnce(path);
      totalAcked += acked.size;
      const log = await AuditLog.open({ store: { kind: 'sqlite', path }, origin: ORIGIN, signer });
      try {
        const size = log.size;
        const lastAcked = Math.max(-1, ...acked.keys());
        assert.ok(size >= lastAcked + 1, `size ${size} < last acknowledged ${lastAcked} + 1`);
        assert.ok(size >= previousSize, 'the log shrank');
        const leaves = await log.leafHashes(0, size);
        for (const [index, { hash }] of acked) {
          assert.equal(Buffer.from(leaves[index] ?? []).toString('hex'), hash, `entry ${index}`);
        }
        // The query index (derived, possibly behind after the kill) finds every acknowledged entry of a writer.
        const writer = Math.floor(Math.random() * 32);
        const found = new Set<number>();
        for (let after: number | null = -1; after !== null;) {
          const page = await log.query({
            principal: `writer:${writer}`,
            ...(after >= 0 ? { after } : {}),
            limit: 1000,
          });
          for (const e of page.entries) {
            assert.equal(e.entry?.principal.id, `writer:${writer}`);
            found.add(e.index);
          }
          after = page.nextCursor;
        }
        for (const [index, a] of acked) {
          if (a.writer === writer) assert.ok(found.has(index), `query lost acknowledged entry ${index}`);
        }
        // Root from the leaves == stored frontier root (checked against the nodes by open) == verify's rebuild.
        const root = log.root();
        assert.equal(
          Buffer.from(rootFromLeafHashes(leaves)).toString('hex'),
          Buffer.from(root).toString('hex'),
        );
        const report = await log.verify({ verifier });
        assert.equal(report.treeSize, size);
        assert.equal(report.bodiesChecked, size);
        const latest = log.latestCheckpoint();
        if (latest !== undefined && latest.treeSize > 0 && latest.treeSize < size) {
          const proof = await log.consistencyProof(latest.treeSize, size);
          verifyConsistency(latest.treeSize, size, proof, latest.rootHash, root);
        }
        // Appending carries on where the log stopped.
        const r = await log.append({
          action: 'crash.reopen',
          principal: { id: 'test', authMethod: 'test' },
          resource: 'log',
          outcome: 'success',
        });
        assert.equal(r.index, size);
        previousSize = size + 1;
      } finally {
        await log.close();
      }
    }
    assert.ok(totalAcked > ITERATIONS * 100, 'the writer acknowledged almost nothing');
  },
);
