// Crash safety of the KMS across its two stores (metadata warden.db, material keystore.db): a child process
// (fixtures/kms-crash-worker.ts) rotates, imports and destroys key versions and is killed with SIGKILL at random
// moments, or at exact points between the two stores; after each kill the parent opens the KMS (which reconciles)
// and checks that the keystore is consistent and that every acknowledged operation held.
//
// Reproduce a run: KMS_CRASH_SEED=<seed printed in the diagnostics> node --test test/kms/crash.test.ts
// (the operation mix and kill delays follow the seed; the exact kill instants depend on timing).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { SelectQueryNode, TableNode } from 'kysely';
import type { KyselyPlugin, QueryId, QueryResult, UnknownRow } from 'kysely';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import {
  SoftwareRootOfTrust,
  SqlKmsRepository,
  VersionUnavailableError,
  openKmsRuntime,
  parseCiphertext,
} from '../../src/kms/index.ts';
import type { KeyType, KmsRuntime, KmsService, Principal } from '../../src/kms/index.ts';
import type { KeystoreSchema, KmsMetadataSchema } from '../../src/kms/sql-repository.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import type { Phase, Step, WorkerEvent, WorkerOp } from './fixtures/kms-crash-worker.ts';

const WORKER = path.join(import.meta.dirname, 'fixtures', 'kms-crash-worker.ts');
const ADMIN: Principal = { id: 'user:crash-test-parent', roles: ['admin'], authMethod: 'test' };
const ELEVEN_MINUTES = 11 * 60 * 1000;
const BASE_KEYS: readonly { name: string; type: KeyType }[] = [
  { name: 'crash-aes', type: 'aes256-gcm' },
  { name: 'crash-ed', type: 'ed25519' },
  { name: 'crash-ec', type: 'ecdsa-p256' },
];
const RANDOM_ITERATIONS = 30;
const SEED = Number(process.env.KMS_CRASH_SEED ?? randomInt(2 ** 31));

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-kms-crash-'));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function dataPaths(dir: string): { metadata: string; keystore: string; root: string; audit: string } {
  return {
    metadata: path.join(dir, 'warden.db'),
    keystore: path.join(dir, 'keystore.db'),
    root: path.join(dir, 'dev-root.key'),
    audit: path.join(dir, 'audit-parent.jsonl'),
  };
}

/** The workers' compiled modules, shared by every start in this file (startup is most of a crash iteration). */
const COMPILE_CACHE = tempDir();

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the parent's KMS sessions ------------------------------------------------------------------------------------

async function withKms<T>(
  dir: string,
  fn: (kms: KmsService, runtime: KmsRuntime) => Promise<T>,
  now?: () => number,
): Promise<T> {
  const files = dataPaths(dir);
  const root = await SoftwareRootOfTrust.openDevMode(files.root);
  const audit = await JsonLinesAuditRecorder.open(files.audit);
  try {
    const runtime = await openKmsRuntime({
      metadata: { kind: 'sqlite', path: files.metadata },
      keystore: { kind: 'sqlite', path: files.keystore },
      root,
      audit,
      ...(now === undefined ? {} : { now }),
    });
    try {
      return await fn(runtime.service, runtime);
    } finally {
      await runtime.close();
    }
  } finally {
    await audit.close();
    await root.close();
  }
}

/** Fresh data dir with the base keys (exportable, so every version's material can be checked) and the BYOK key. */
async function setup(dir: string): Promise<Model> {
  await withKms(dir, async (kms) => {
    for (const k of BASE_KEYS) {
      await kms.createKey(ADMIN, { ...k, exportable: true, rotationPeriodDays: 0 });
    }
    // RSA-4096 generation takes seconds: done once here, not inside a worker that is killed within 400 ms.
    await kms.importWrappingKey(ADMIN);
  });
  const model: Model = {
    keys: new Map(),
    ciphertexts: [],
    signatures: [],
    wrapped: new Map(),
    confirmedDestroyed: new Set(),
  };
  for (const k of BASE_KEYS) model.keys.set(k.name, new Map([[1, 'enabled']]));
  return model;
}

// ---- the worker ---------------------------------------------------------------------------------------------------

interface Begin {
  readonly op: WorkerOp;
  readonly key: string;
  readonly version?: number | undefined;
}

interface Run {
  readonly events: WorkerEvent[];
  readonly signal: NodeJS.Signals | null;
  readonly code: number | null;
  readonly stderr: string;
  /** True when the parent sent the SIGKILL (random mode); false when the worker killed itself at its hook. */
  readonly killedByParent: boolean;
}

/**
 * Runs the worker. `killAfterReadyMs`: SIGKILL it that long after it reports ready. Otherwise waits for it to end
 * on its own (its hook kills it, or rotate-once exits); past `timeoutMs` it is killed and the test fails.
 */
async function runWorker(
  dir: string,
  seed: number,
  mode: string,
  options: { killAfterReadyMs?: number; timeoutMs?: number } = {},
): Promise<Run> {
  const child = spawn(process.execPath, [WORKER, dir, String(seed), mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_COMPILE_CACHE: COMPILE_CACHE },
  });
  const events: WorkerEvent[] = [];
  let partial = '';
  let stderr = '';
  let killedByParent = false;
  let timedOut = false;
  const timeout = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs ?? 20_000);
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? ''; // a line cut by the kill was not acknowledged
    for (const line of lines) {
      const event = JSON.parse(line) as WorkerEvent;
      events.push(event);
      if (event.ev === 'ready' && options.killAfterReadyMs !== undefined) {
        setTimeout(() => {
          killedByParent = true;
          child.kill('SIGKILL');
        }, options.killAfterReadyMs);
      }
    }
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('close', (c, s) => {
      resolve([c, s]);
    });
  });
  clearTimeout(timeout);
  assert.ok(
    !timedOut,
    `worker ${mode} did not finish in time (its kill point was never reached?):\n${stderr}`,
  );
  return { events, signal, code, stderr, killedByParent };
}

// ---- the model: what the parent knows must hold ------------------------------------------------------------------

type KeyVersions = Map<number, 'enabled' | 'destroyed'>;

interface Model {
  /** Every version of every key, as last observed after recovery plus the acknowledged operations since. */
  keys: Map<string, KeyVersions>;
  ciphertexts: { key: string; version: number; ciphertext: string; plaintext: Buffer }[];
  signatures: { key: string; version: number; message: Buffer; signature: Buffer }[];
  /** Wrapped material of versions seen alive ("name#version"), to check destroyed ones are gone from the files. */
  wrapped: Map<string, Buffer>;
  /** Destroyed versions already shown unusable through the service ("name#version"). */
  confirmedDestroyed: Set<string>;
}

function latestOf(versions: KeyVersions | undefined): number {
  return versions === undefined ? 0 : Math.max(0, ...versions.keys());
}

/** Applies the worker's acknowledged operations to the model; returns the operation in flight at the kill. */
function applyEvents(model: Model, events: readonly WorkerEvent[], label: string): Begin | undefined {
  let inflight: Begin | undefined;
  for (const e of events) {
    switch (e.ev) {
      case 'ready':
        break;
      case 'begin':
        assert.equal(inflight, undefined, `${label}: two operations in flight`);
        inflight = { op: e.op, key: e.key, version: e.version };
        break;
      case 'rotated':
      case 'imported': {
        const versions = model.keys.get(e.key);
        assert.ok(versions, `${label}: ${e.ev} unknown key ${e.key}`);
        assert.equal(
          e.version,
          latestOf(versions) + 1,
          `${label}: ${e.ev} ${e.key} got a non-consecutive version`,
        );
        versions.set(e.version, 'enabled');
        inflight = undefined;
        break;
      }
      case 'created':
        assert.ok(!model.keys.has(e.key), `${label}: created ${e.key} twice`);
        assert.equal(e.version, 1);
        model.keys.set(e.key, new Map([[1, 'enabled']]));
        inflight = undefined;
        break;
      case 'destroyed': {
        const versions = model.keys.get(e.key);
        assert.ok(versions, `${label}: destroyed unknown key ${e.key}`);
        assert.equal(versions.get(e.version), 'enabled', `${label}: destroyed ${e.key} v${e.version} twice`);
        versions.set(e.version, 'destroyed');
        inflight = undefined;
        break;
      }
      case 'ciphertext':
        model.ciphertexts.push({ ...e, plaintext: Buffer.from(e.plaintext, 'hex') });
        inflight = undefined;
        break;
      case 'signature':
        model.signatures.push({
          key: e.key,
          version: e.version,
          message: Buffer.from(e.message, 'hex'),
          signature: Buffer.from(e.signature, 'hex'),
        });
        inflight = undefined;
        break;
    }
  }
  return inflight;
}

// ---- the files, read directly -------------------------------------------------------------------------------------

interface RawState {
  keys: Map<string, { type: string; latest: number }>;
  versions: { name: string; version: number; state: string; material_id: string }[];
  material: { id: string; name: string; version: number; wrapped: Buffer; created_at: number }[];
}

/** Opens both databases read-only, checks their integrity, and reads every KMS row. */
function readRaw(dir: string, label: string): RawState {
  const files = dataPaths(dir);
  const meta = new DatabaseSync(files.metadata, { readOnly: true });
  const keys = new DatabaseSync(files.keystore, { readOnly: true });
  try {
    for (const [db, name] of [
      [meta, 'warden.db'],
      [keys, 'keystore.db'],
    ] as const) {
      const result = db.prepare('PRAGMA integrity_check').all();
      assert.deepEqual(
        result.map((r) => r.integrity_check),
        ['ok'],
        `${label}: ${name} integrity_check`,
      );
    }
    const keyRows = meta.prepare('SELECT name, type, latest_version FROM kms_keys').all() as {
      name: string;
      type: string;
      latest_version: number;
    }[];
    return {
      keys: new Map(keyRows.map((k) => [k.name, { type: k.type, latest: k.latest_version }])),
      versions: (
        meta
          .prepare('SELECT name, version, state, material_id FROM kms_key_versions ORDER BY name, version')
          .all() as RawState['versions']
      ).map((v) => ({ ...v })),
      material: (
        keys.prepare('SELECT id, name, version, wrapped, created_at FROM keystore_material').all() as {
          id: string;
          name: string;
          version: number;
          wrapped: Uint8Array;
          created_at: number;
        }[]
      ).map((m) => ({ ...m, wrapped: Buffer.from(m.wrapped) })),
    };
  } finally {
    meta.close();
    keys.close();
  }
}

function unreferenced(raw: RawState): RawState['material'] {
  const referenced = new Set(raw.versions.map((v) => v.material_id));
  return raw.material.filter((m) => !referenced.has(m.id));
}

/** The keystore's files (database and WAL) that contain `bytes`, if any. */
function filesHolding(dir: string, bytes: Buffer): string[] {
  const base = dataPaths(dir).keystore;
  return [base, `${base}-wal`].filter((f) => existsSync(f) && readFileSync(f).includes(bytes));
}

/** Every destroyed version whose material the parent once saw must be gone from the keystore's files. */
function assertShredded(dir: string, model: Model, label: string, forget: boolean): void {
  for (const [name, versions] of model.keys) {
    for (const [version, state] of versions) {
      const id = `${name}#${version}`;
      const wrapped = model.wrapped.get(id);
      if (state !== 'destroyed' || wrapped === undefined) continue;
      assert.deepEqual(filesHolding(dir, wrapped), [], `${label}: destroyed ${id} still on disk`);
      if (forget) model.wrapped.delete(id);
    }
  }
}

// ---- recovery and the invariants ----------------------------------------------------------------------------------

/** What the kill interrupted, from the files as the kill left them (before any recovery). */
function classify(dir: string, raw: RawState, model: Model, inflight: Begin | undefined): string {
  if (inflight === undefined) return 'between operations';
  switch (inflight.op) {
    case 'use':
      return 'use (encrypt/sign)';
    case 'rotate':
    case 'import':
    case 'create': {
      const next = latestOf(model.keys.get(inflight.key)) + 1;
      if (raw.versions.some((v) => v.name === inflight.key && v.version === next))
        return `${inflight.op}: metadata committed, not acknowledged`;
      if (unreferenced(raw).some((m) => m.name === inflight.key && m.version === next))
        return `${inflight.op}: material written, metadata not`;
      return `${inflight.op}: before the keystore write`;
    }
    case 'destroy': {
      const v = raw.versions.find((r) => r.name === inflight.key && r.version === inflight.version);
      if (v === undefined) return 'destroy: version missing (!)';
      if (v.state === 'destroyed') return 'destroy: done, not acknowledged';
      if (raw.material.some((m) => m.id === v.material_id)) return 'destroy: before the material delete';
      const wrapped = model.wrapped.get(`${inflight.key}#${String(inflight.version)}`);
      if (wrapped === undefined) return 'destroy: material deleted, version not marked';
      return filesHolding(dir, wrapped).length > 0
        ? 'destroy: material deleted, not scrubbed, version not marked'
        : 'destroy: material deleted and scrubbed, version not marked';
    }
  }
}

/** Compares the recovered metadata with the model; in-flight operations may or may not have happened. */
function checkAgainstModel(raw: RawState, model: Model, inflights: readonly Begin[], label: string): void {
  const byKey = new Map<string, RawState['versions']>();
  for (const v of raw.versions) byKey.set(v.name, [...(byKey.get(v.name) ?? []), v]);
  for (const name of model.keys.keys()) assert.ok(raw.keys.has(name), `${label}: key ${name} lost`);
  for (const [name, key] of raw.keys) {
    const versions = byKey.get(name) ?? [];
    // 5. Contiguous 1..latest, latest_version = max version.
    assert.deepEqual(
      versions.map((v) => v.version),
      Array.from({ length: versions.length }, (_, i) => i + 1),
      `${label}: versions of ${name} are not contiguous`,
    );
    assert.equal(key.latest, versions.length, `${label}: latest_version of ${name} is not its max version`);
    const known = model.keys.get(name);
    if (known === undefined) {
      assert.ok(
        inflights.some((op) => op.op === 'create' && op.key === name),
        `${label}: key ${name} appeared from nowhere`,
      );
      assert.deepEqual(
        versions.map((v) => v.state),
        ['enabled'],
        `${label}: unacknowledged key ${name}`,
      );
      continue;
    }
    for (const version of known.keys()) {
      assert.ok(
        versions.some((v) => v.version === version),
        `${label}: acknowledged version ${name} v${version} lost`,
      );
    }
    for (const v of versions) {
      assert.ok(
        v.state === 'enabled' || v.state === 'destroyed',
        `${label}: ${name} v${v.version} is ${v.state}`,
      );
      const expected = known.get(v.version);
      if (expected === undefined) {
        // 2. Only the rotation/import in flight can have added a version, and only the next one.
        assert.ok(
          v.version === latestOf(known) + 1 &&
            v.state === 'enabled' &&
            inflights.some((op) => (op.op === 'rotate' || op.op === 'import') && op.key === name),
          `${label}: unexpected ${name} v${v.version} (${v.state})`,
        );
      } else if (expected !== v.state) {
        // 2. Only the destruction in flight can have changed a state.
        assert.ok(
          expected === 'enabled' &&
            v.state === 'destroyed' &&
            inflights.some((op) => op.op === 'destroy' && op.key === name && op.version === v.version),
          `${label}: ${name} v${v.version} is ${v.state}, last acknowledged ${expected}`,
        );
      }
    }
  }
}

/** 3/4. Material exactly for the versions that are not destroyed; unreferenced rows only from creations in flight. */
function checkMaterial(
  raw: RawState,
  priorLatest: ReadonlyMap<string, number>,
  inflights: readonly Begin[],
  label: string,
): void {
  const byId = new Map(raw.material.map((m) => [m.id, m]));
  for (const v of raw.versions) {
    const m = byId.get(v.material_id);
    if (v.state === 'destroyed') {
      assert.equal(m, undefined, `${label}: destroyed ${v.name} v${v.version} still has material`);
      assert.ok(
        !raw.material.some((r) => r.name === v.name && r.version === v.version),
        `${label}: a material row still carries destroyed ${v.name} v${v.version}`,
      );
    } else {
      assert.ok(m, `${label}: ${v.name} v${v.version} (${v.state}) has no material`);
      assert.equal(`${m.name}#${m.version}`, `${v.name}#${v.version}`, `${label}: material row mislabelled`);
    }
  }
  const orphans = unreferenced(raw);
  const creations = inflights.filter((op) => op.op === 'rotate' || op.op === 'import' || op.op === 'create');
  assert.ok(orphans.length <= creations.length, `${label}: ${orphans.length} orphan material rows`);
  for (const o of orphans) {
    // An attempt in flight at the kill: its key and the version number it tried, never referenced.
    assert.ok(
      creations.some((op) => op.key === o.name),
      `${label}: orphan material ${o.name} v${o.version} from no operation in flight`,
    );
    assert.equal(o.version, (priorLatest.get(o.name) ?? 0) + 1, `${label}: orphan ${o.name} v${o.version}`);
  }
}

function publicKeyOf(pkcs8: Buffer): Buffer {
  return createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({
    format: 'der',
    type: 'spki',
  });
}

/** Encrypts or signs under the key's latest version and records the result as acknowledged. */
async function useLatest(kms: KmsService, model: Model, name: string, type: string): Promise<void> {
  if (type === 'aes256-gcm') {
    const plaintext = Buffer.from(`parent ${name} ${String(Date.now())}`);
    const ciphertext = await kms.encrypt(ADMIN, name, plaintext);
    const { version } = parseCiphertext(ciphertext);
    model.ciphertexts.push({ key: name, version, ciphertext, plaintext });
  } else {
    const message = Buffer.from(`parent ${name} ${String(Date.now())}`);
    const { signature, keyVersion } = await kms.sign(ADMIN, name, message);
    model.signatures.push({ key: name, version: keyVersion, message, signature });
  }
}

/**
 * Recovers after a kill and checks every invariant; updates the model to what now holds. Returns what the kill
 * interrupted.
 */
async function recoverAndCheck(
  dir: string,
  model: Model,
  inflights: readonly Begin[],
  label: string,
  rotate: () => string,
): Promise<string> {
  // 4. Acknowledged destructions were shredded before they were acknowledged: gone from the files as killed.
  assertShredded(dir, model, `${label} (as killed)`, false);
  // 1. Both databases open and are intact as the kill left them.
  const killed = readRaw(dir, `${label} (as killed)`);
  const kind = classify(dir, killed, model, inflights.at(-1));
  const priorLatest = new Map([...model.keys].map(([name, versions]) => [name, latestOf(versions)]));

  // Recovery: openKmsRuntime reconciles.
  const rotated = await withKms(dir, async (kms, runtime) => {
    const raw = readRaw(dir, `${label} (recovered)`);
    checkAgainstModel(raw, model, inflights, label);
    checkMaterial(raw, priorLatest, inflights, label);
    for (const v of raw.versions) {
      const key = raw.keys.get(v.name);
      assert.ok(key);
      if (v.state === 'destroyed') {
        const id = `${v.name}#${v.version}`;
        if (model.confirmedDestroyed.has(id)) continue;
        assert.equal(await runtime.repository.getWrappedMaterial(v.name, v.version), undefined);
        await assert.rejects(kms.exportKey(ADMIN, v.name, v.version), VersionUnavailableError);
        model.confirmedDestroyed.add(id);
        continue;
      }
      // 3. Material present and unwrapping (through the service), and it is the key of this version.
      const { material } = await kms.exportKey(ADMIN, v.name, v.version);
      if (key.type === 'aes256-gcm') {
        assert.equal(material.length, 32);
      } else {
        const info = await kms.getKey(ADMIN, v.name);
        const publicKey = info.versions.find((r) => r.version === v.version)?.publicKey;
        assert.deepEqual(
          publicKeyOf(material),
          publicKey,
          `${label}: ${v.name} v${v.version} material/public key`,
        );
      }
    }
    const stateOf = (name: string, version: number) =>
      raw.versions.find((v) => v.name === name && v.version === version)?.state;
    // 2. Every acknowledged ciphertext/signature of a version still alive works; of a destroyed one, does not.
    for (const c of model.ciphertexts) {
      if (stateOf(c.key, c.version) === 'destroyed') {
        await assert.rejects(kms.decrypt(ADMIN, c.ciphertext), VersionUnavailableError);
      } else {
        assert.deepEqual(await kms.decrypt(ADMIN, c.ciphertext), c.plaintext, `${label}: ${c.ciphertext}`);
      }
    }
    for (const s of model.signatures) {
      if (stateOf(s.key, s.version) === 'destroyed') {
        await assert.rejects(
          kms.verify(ADMIN, s.key, s.message, s.signature, s.version),
          VersionUnavailableError,
        );
      } else {
        assert.ok(await kms.verify(ADMIN, s.key, s.message, s.signature, s.version), `${label}: signature`);
      }
    }
    model.ciphertexts = model.ciphertexts.filter((c) => stateOf(c.key, c.version) !== 'destroyed');
    model.signatures = model.signatures.filter((s) => stateOf(s.key, s.version) !== 'destroyed');
    // The model becomes what was recovered.
    for (const [name] of raw.keys) model.keys.set(name, new Map());
    for (const v of raw.versions) {
      model.keys.get(v.name)?.set(v.version, v.state === 'destroyed' ? 'destroyed' : 'enabled');
    }
    // 5. A rotation after recovery takes the next number (even if an orphan of that number exists) and works.
    const wanted = rotate();
    const name = model.keys.has(wanted) ? wanted : 'crash-aes';
    const next = latestOf(model.keys.get(name)) + 1;
    const v = await kms.rotateKey(ADMIN, name);
    assert.equal(v.version, next, `${label}: rotation after recovery`);
    model.keys.get(name)?.set(next, 'enabled');
    await useLatest(kms, model, name, raw.keys.get(name)?.type ?? '?');
    return { name, version: next };
  });

  const recovered = readRaw(dir, `${label} (closed)`);
  assertShredded(dir, model, `${label} (recovered)`, true);
  checkMaterial(recovered, priorLatest, inflights, label);
  const orphans = unreferenced(recovered);
  for (const o of orphans) {
    // The rotation after recovery reused the orphan's version number, with its own material.
    if (o.name === rotated.name && o.version === rotated.version) {
      const v = recovered.versions.find((r) => r.name === o.name && r.version === o.version);
      assert.ok(v && v.material_id !== o.id && v.state === 'enabled', `${label}: version collision`);
    }
  }
  for (const v of recovered.versions) {
    const m = recovered.material.find((r) => r.id === v.material_id);
    if (m !== undefined) model.wrapped.set(`${v.name}#${v.version}`, m.wrapped);
  }

  // 4. Orphans are kept for 10 minutes (a write may be in flight elsewhere); 11 minutes later reconcile removes
  // them, and only them.
  await withKms(
    dir,
    () => Promise.resolve(),
    () => Date.now() + ELEVEN_MINUTES,
  );
  const later = readRaw(dir, `${label} (+11 min)`);
  assert.deepEqual(unreferenced(later), [], `${label}: orphans survived a reconcile 11 minutes later`);
  assert.deepEqual(later.versions, recovered.versions, `${label}: the late reconcile changed metadata`);
  assert.deepEqual(
    later.material.map((m) => m.id).sort(),
    recovered.material
      .filter((m) => !orphans.includes(m))
      .map((m) => m.id)
      .sort(),
    `${label}: the late reconcile removed referenced material`,
  );
  for (const o of orphans)
    assert.deepEqual(filesHolding(dir, o.wrapped), [], `${label}: removed orphan on disk`);
  return kind;
}

function tally(counts: Map<string, number>, kind: string): void {
  counts.set(kind, (counts.get(kind) ?? 0) + 1);
}

function report(t: TestContext, counts: Map<string, number>): void {
  for (const [kind, n] of [...counts].sort()) t.diagnostic(`${String(n).padStart(3)}  ${kind}`);
}

// ---- the tests ----------------------------------------------------------------------------------------------------

describe('KMS crash safety (SIGKILL during rotation, import and destruction)', () => {
  it(
    `keeps a consistent keystore across ${RANDOM_ITERATIONS} kills at random points`,
    { timeout: 120_000 },
    async (t) => {
      t.diagnostic(`seed ${SEED} (KMS_CRASH_SEED=${SEED} to replay the operation mix and kill delays)`);
      const dir = tempDir();
      const model = await setup(dir);
      const random = prng(SEED);
      const counts = new Map<string, number>();
      let acknowledged = 0;
      for (let i = 0; i < RANDOM_ITERATIONS; i++) {
        const delay = 30 + Math.floor(random() * 370);
        const label = `iteration ${i} (seed ${SEED}, killed ${delay} ms after ready)`;
        const run = await runWorker(dir, SEED + i, 'loop', { killAfterReadyMs: delay });
        assert.ok(run.killedByParent && run.signal === 'SIGKILL', `${label}: worker ended: ${run.stderr}`);
        acknowledged += run.events.filter((e) => e.ev !== 'ready' && e.ev !== 'begin').length;
        const inflight = applyEvents(model, run.events, label);
        const kind = await recoverAndCheck(
          dir,
          model,
          inflight === undefined ? [] : [inflight],
          label,
          () => {
            if (inflight !== undefined && inflight.op !== 'create') return inflight.key;
            return BASE_KEYS[Math.floor(random() * BASE_KEYS.length)]?.name ?? 'crash-aes';
          },
        );
        tally(counts, kind);
      }
      t.diagnostic(`${acknowledged} acknowledged operations; where the kills landed:`);
      report(t, counts);
      // The random kills must have hit the interesting windows at least sometimes, or the test proves little.
      const hitWrites = [...counts.keys()].filter((k) => /rotate|import|create|destroy/.test(k));
      assert.ok(hitWrites.length > 0, 'no kill landed inside a write operation');
    },
  );

  it('recovers from a kill at each exact point between the two stores', { timeout: 90_000 }, async (t) => {
    const dir = tempDir();
    const model = await setup(dir);
    const counts = new Map<string, number>();

    /** Runs the worker until it kills itself at `phase:step`; returns the operation it was in. */
    const crashAt = async (phase: Phase, step: Step): Promise<{ inflight: Begin; raw: RawState }> => {
      const label = `${phase}:${step}`;
      const run = await runWorker(dir, SEED, `crash-at=${label}`);
      assert.ok(!run.killedByParent && run.signal === 'SIGKILL', `${label}: worker ended: ${run.stderr}`);
      const inflight = applyEvents(model, run.events, label);
      const raw = readRaw(dir, `${label} (as killed)`);
      assert.ok(inflight || phase === 'reconcile', `${label}: no operation in flight`);
      return { inflight: inflight ?? { op: 'use', key: '' }, raw };
    };
    const recover = async (label: string, inflights: Begin[]) => {
      tally(
        counts,
        await recoverAndCheck(dir, model, inflights, label, () => inflights[0]?.key ?? 'crash-aes'),
      );
    };
    const next = (op: Begin) => latestOf(model.keys.get(op.key)) + 1;

    // Rotation / BYOK import / BYOK creation: material written, metadata not.
    for (const phase of ['rotate', 'import', 'create'] as const) {
      const { inflight, raw } = await crashAt(phase, 'after-material');
      assert.equal(inflight.op, phase);
      const orphan = unreferenced(raw);
      assert.deepEqual(
        orphan.map((m) => `${m.name}#${m.version}`),
        [`${inflight.key}#${next(inflight)}`],
        `${phase}: one orphan row, for the version being added`,
      );
      assert.ok(!raw.versions.some((v) => v.name === inflight.key && v.version === next(inflight)));
      await recover(`${phase}:after-material`, [inflight]);
    }

    // Rotation: metadata committed, not acknowledged.
    {
      const { inflight, raw } = await crashAt('rotate', 'after-metadata');
      const v = raw.versions.find((r) => r.name === inflight.key && r.version === next(inflight));
      assert.ok(v && v.state === 'enabled' && raw.material.some((m) => m.id === v.material_id));
      await recover('rotate:after-metadata', [inflight]);
    }

    // Destruction: material row deleted, keystore not yet scrubbed; then a second kill inside the reconcile of
    // the next start (after it deleted and scrubbed, before it marked the version); then recovery.
    {
      const first = await crashAt('destroy', 'after-delete');
      assert.equal(first.inflight.op, 'destroy');
      const v = first.raw.versions.find(
        (r) => r.name === first.inflight.key && r.version === first.inflight.version,
      );
      assert.ok(v && v.state !== 'destroyed', 'destroy:after-delete: version already marked');
      assert.ok(
        !first.raw.material.some((m) => m.id === v.material_id),
        'destroy:after-delete: material still there',
      );
      const wrapped = model.wrapped.get(`${v.name}#${v.version}`);
      assert.ok(wrapped, `destroy:after-delete: ${v.name} v${v.version} was never seen alive`);
      const holding = filesHolding(dir, wrapped).map((f) => path.basename(f));
      t.diagnostic(
        `destroy:after-delete: wrapped material still in ${JSON.stringify(holding)} until a scrub`,
      );
      const second = await crashAt('reconcile', 'after-shred');
      const again = second.raw.versions.find((r) => r.name === v.name && r.version === v.version);
      assert.ok(again && again.state !== 'destroyed', 'reconcile:after-shred: version already marked');
      assert.deepEqual(filesHolding(dir, wrapped), [], 'reconcile:after-shred: material not scrubbed');
      tally(counts, 'reconcile: material deleted and scrubbed, version not marked');
      await recover('destroy:after-delete + reconcile:after-shred', [first.inflight]);
    }

    // Destruction: material deleted and scrubbed, version not marked.
    {
      const { inflight, raw } = await crashAt('destroy', 'after-shred');
      assert.equal(inflight.op, 'destroy');
      const v = raw.versions.find((r) => r.name === inflight.key && r.version === inflight.version);
      assert.ok(v && v.state !== 'destroyed' && !raw.material.some((m) => m.id === v.material_id));
      const wrapped = model.wrapped.get(`${v.name}#${v.version}`);
      assert.ok(wrapped, `destroy:after-shred: ${v.name} v${v.version} was never seen alive`);
      assert.deepEqual(filesHolding(dir, wrapped), [], 'destroy:after-shred: material not scrubbed');
      await recover('destroy:after-shred', [inflight]);
    }
    report(t, counts);
  });

  it('leaves no copy of destroyed material on disk once a concurrent reader is gone', async () => {
    // Not a kill either: crypto-shredding with another connection on the keystore (a second process on the same
    // SQLite file). #deleteMaterial ignores scrub()'s `complete: false` (the WAL checkpoint could not finish past
    // the reader), the version is marked destroyed anyway, and nothing ever retries: reconcile looks at rows only.
    // KNOWN BUG, this test FAILS until src/kms/sql-repository.ts handles an incomplete scrub (retry it, or leave
    // the version for reconcile to finish, and have reconcile re-scrub).
    const dir = tempDir();
    await setup(dir);
    const files = dataPaths(dir);
    const root = await SoftwareRootOfTrust.openDevMode(files.root);
    const audit = await JsonLinesAuditRecorder.open(files.audit);
    const runtime = await openKmsRuntime({
      metadata: { kind: 'sqlite', path: files.metadata },
      // The checkpoint waits busy_timeout for the reader: keep the test short.
      keystore: { kind: 'sqlite', path: files.keystore, busyTimeoutMs: 100 },
      root,
      audit,
    });
    try {
      const kms = runtime.service;
      await kms.rotateKey(ADMIN, 'crash-aes');
      const wrapped = await runtime.repository.getWrappedMaterial('crash-aes', 1);
      assert.ok(wrapped);
      const reader = new DatabaseSync(files.keystore);
      try {
        reader.exec('BEGIN');
        reader.prepare('SELECT count(*) FROM keystore_material').get();
        await kms.scheduleDestruction(ADMIN, 'crash-aes', 1, 0).catch(() => undefined);
        reader.exec('COMMIT');
      } finally {
        reader.close();
      }
      await runtime.repository.reconcile();
      assert.equal((await runtime.repository.getVersion('crash-aes', 1))?.state, 'destroyed');
      assert.deepEqual(
        filesHolding(dir, wrapped).map((f) => path.basename(f)),
        [],
        'destroyed crash-aes v1: its wrapped material is still on disk after the reader ended and reconcile ran',
      );
    } finally {
      await runtime.close();
      await audit.close();
      await root.close();
    }
  });

  it(
    'reconcile does not destroy a version that another process adds while it runs',
    { timeout: 30_000 },
    async () => {
      // Not a kill: the repair itself. reconcile() (run by every openKmsRuntime) reads the keystore's material ids,
      // then the versions. A rotation by another process (another node, or a restarted one) that writes its material
      // after the first read and its version row before the second looks like "material gone, version not marked" —
      // an interrupted destruction — and reconcile completes it: it destroys a live, acknowledged version.
      // KNOWN BUG, this test FAILS until SqlKmsRepository.reconcile (src/kms/sql-repository.ts) is fixed: e.g. read
      // the versions first and the material second (material written before its version row is then always seen),
      // or re-check a candidate version's material row before completing its destruction.
      const dir = tempDir();
      await setup(dir);
      const files = dataPaths(dir);
      const released = Promise.withResolvers<undefined>();
      const paused = Promise.withResolvers<undefined>();
      let gate = true;
      const described = new WeakMap<QueryId, boolean>();
      const plugin: KyselyPlugin = {
        transformQuery(args) {
          const from = SelectQueryNode.is(args.node) ? args.node.from?.froms[0] : undefined;
          described.set(
            args.queryId,
            from !== undefined && TableNode.is(from) && from.table.identifier.name === 'keystore_material',
          );
          return args.node;
        },
        async transformResult(args): Promise<QueryResult<UnknownRow>> {
          if (gate && described.get(args.queryId) === true) {
            gate = false;
            paused.resolve(undefined);
            await released.promise;
          }
          return args.result;
        },
      };
      const metadata = await openStore<KmsMetadataSchema>({ kind: 'sqlite', path: files.metadata });
      const rawKeystore = await openStore<KeystoreSchema>({ kind: 'sqlite', path: files.keystore });
      const keystore: Store<KeystoreSchema> = {
        kind: rawKeystore.kind,
        db: rawKeystore.db.withPlugin(plugin),
        migrate: (m) => rawKeystore.migrate(m),
        transaction: (fn, o) => rawKeystore.transaction((trx) => fn(trx.withPlugin(plugin)), o),
        scrub: (tables) => rawKeystore.scrub(tables),
        close: () => rawKeystore.close(),
      };
      const repository = await SqlKmsRepository.open(metadata, keystore);
      let run: Run;
      try {
        const reconciling = repository.reconcile();
        await paused.promise; // reconcile has read the material ids
        run = await runWorker(dir, SEED, 'rotate-once=crash-aes');
        released.resolve(undefined);
        await reconciling;
      } finally {
        released.resolve(undefined);
        await repository.close();
      }
      assert.equal(run.code, 0, `rotate-once worker failed: ${run.stderr}`);
      let rotated: { version: number } | undefined;
      let ct: { ciphertext: string; plaintext: string } | undefined;
      for (const e of run.events) {
        if (e.ev === 'rotated') rotated = e;
        if (e.ev === 'ciphertext') ct = e;
      }
      assert.ok(rotated && ct, `rotate-once: ${JSON.stringify(run.events)}`);
      await withKms(dir, async (kms) => {
        const info = await kms.getKey(ADMIN, 'crash-aes');
        const v = info.versions.find((r) => r.version === rotated.version);
        assert.equal(
          v?.state,
          'enabled',
          `acknowledged crash-aes v${rotated.version} was destroyed by reconcile`,
        );
        assert.deepEqual(await kms.decrypt(ADMIN, ct.ciphertext), Buffer.from(ct.plaintext, 'hex'));
      });
    },
  );
});
