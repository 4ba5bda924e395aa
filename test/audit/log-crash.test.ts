// Crash safety of the audit log on SQLite: a child process appends as fast as it can and is killed with SIGKILL
// at random points, over and over. After every kill the log reopens with every acknowledged entry (same leaf
// hash), a tree that verifies end to end (bodies, leaves, nodes, persisted frontier, every signed checkpoint),
// the latest checkpoint extended consistently, and appends carry on.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import {
  AuditLog,
  localEd25519NoteSigner,
  parseVerifierKey,
  rootFromLeafHashes,
  verifyConsistency,
} from '../../src/audit/index.ts';
import { tempDir } from '../envelope/support.ts';

const WRITER = join(import.meta.dirname, 'fixtures', 'crash-writer.ts');
const ORIGIN = 'crash.warden.test/log';
const ITERATIONS = 20;

const { privateKey } = generateKeyPairSync('ed25519');
const signer = localEd25519NoteSigner(privateKey, ORIGIN);
const verifier = parseVerifierKey(signer.verifierKey);
const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

/** Runs the writer until it has acknowledged a random number of events, waits a random moment, kills it. */
async function crashOnce(path: string): Promise<Map<number, string>> {
  const child = spawn(process.execPath, [WRITER, JSON.stringify({ path, origin: ORIGIN, privateKeyPem })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acked = new Map<number, string>();
  let partial = '';
  let stderr = '';
  const target = 1 + Math.floor(Math.random() * 400);
  const closed = new Promise<void>((resolve) =>
    child.on('close', () => {
      resolve();
    }),
  );
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const onData = (chunk: string): void => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const [index, hash] = line.split(' ');
      acked.set(Number(index), hash ?? '');
    }
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (acked.size >= target) resolve();
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => {
      reject(new Error(`writer exited (${String(code)}) before the kill:\n${stderr}`));
    });
  });
  await sleep(Math.random() * 20);
  child.kill('SIGKILL');
  await closed; // every line the child wrote before dying has been read
  assert.doesNotMatch(stderr, /checkpoint failed/);
  return acked;
}

it(
  `keeps every acknowledged entry and a verifiable tree across ${ITERATIONS} SIGKILLs`,
  { timeout: 120_000 },
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
        const lastAcked = Math.max(...acked.keys());
        assert.ok(size >= lastAcked + 1, `size ${size} < last acknowledged ${lastAcked} + 1`);
        assert.ok(size >= previousSize, 'the log shrank');
        const leaves = await log.leafHashes(0, size);
        for (const [index, hash] of acked) {
          assert.equal(Buffer.from(leaves[index] ?? []).toString('hex'), hash, `entry ${index}`);
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
    assert.ok(totalAcked > ITERATIONS, 'the writer acknowledged almost nothing');
  },
);
