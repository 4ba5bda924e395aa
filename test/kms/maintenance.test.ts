// Scheduled maintenance acts on what is due when it acts, not on what was due when it listed it: another node's
// scheduler, or an operator, may have rotated a key or cancelled a destruction in between.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import {
  KEYSTORE_MIGRATIONS,
  KMS_METADATA_MIGRATIONS,
  KmsService,
  SoftwareRootOfTrust,
  SqlKmsRepository,
} from '../../src/kms/index.ts';
import type { KeystoreSchema, KmsMetadataSchema } from '../../src/kms/sql-repository.ts';
import type { Principal, VersionRecord } from '../../src/kms/index.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store, StoreConfig } from '../../src/store/index.ts';
import { tempDir } from '../envelope/support.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';
import { startPostgres } from '../support/postgres.ts';

const DAY = 24 * 60 * 60 * 1000;
const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

class Events implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  record(event: AuditEvent): Promise<void> {
    this.events.push(event);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A shared repository whose due lists run `between` after they are read, as another node would act. */
class RacingRepository extends MemoryKmsRepository {
  afterRotations: (() => Promise<unknown>) | undefined;
  afterDestructions: (() => Promise<unknown>) | undefined;
  override async dueRotations(now: number): Promise<string[]> {
    const due = await super.dueRotations(now);
    const between = this.afterRotations;
    this.afterRotations = undefined;
    await between?.();
    return due;
  }
  override async dueDestructions(now: number): Promise<{ name: string; version: number }[]> {
    const due = await super.dueDestructions(now);
    const between = this.afterDestructions;
    this.afterDestructions = undefined;
    await between?.();
    return due;
  }
}

async function twoNodes() {
  const repository = new RacingRepository();
  const root = await SoftwareRootOfTrust.openDevMode(
    path.join(tempDir('warden-maintenance-'), 'dev-root.key'),
  );
  const clock = { now: Date.UTC(2026, 0, 1) };
  const node = () =>
    new KmsService({
      repository,
      root,
      audit: new Events(),
      authorizer: { authorize: () => true },
      now: () => clock.now,
    });
  return { repository, clock, a: node(), b: node() };
}

describe('KMS maintenance', () => {
  it('does not rotate a key again that another node rotated after it was listed as due', async () => {
    const { repository, clock, a, b } = await twoNodes();
    await a.createKey(admin, { name: 'sched', type: 'aes256-gcm', rotationPeriodDays: 30 });
    clock.now += 31 * DAY;
    repository.afterRotations = () => b.runMaintenance();
    const result = await a.runMaintenance();
    assert.deepEqual(result.rotated, []);
    assert.equal((await a.getKey(admin, 'sched')).key.latestVersion, 2, 'rotated once, by node b');
  });

  it('does not destroy a version whose destruction was cancelled after it was listed as due', async () => {
    const { repository, clock, a, b } = await twoNodes();
    await a.createKey(admin, { name: 'keep', type: 'aes256-gcm', rotationPeriodDays: 0 });
    const ct = await a.encrypt(admin, 'keep', Buffer.from('still needed'));
    await a.scheduleDestruction(admin, 'keep', 1, 1);
    clock.now += 2 * DAY;
    repository.afterDestructions = () => b.cancelDestruction(admin, 'keep', 1);
    const result = await a.runMaintenance();
    assert.deepEqual(result.destroyed, []);
    const [v1] = (await a.getKey(admin, 'keep')).versions;
    assert.equal(v1?.state, 'disabled');
    await a.enable(admin, 'keep', 1);
    assert.deepEqual(await a.decrypt(admin, ct), Buffer.from('still needed'));
  });

  it('goes on with the rest when another node already destroyed a due version', async () => {
    const { repository, clock, a, b } = await twoNodes();
    await a.createKey(admin, { name: 'one', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await a.createKey(admin, { name: 'two', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await a.scheduleDestruction(admin, 'one', 1, 1);
    await a.scheduleDestruction(admin, 'two', 1, 3);
    clock.now += 2 * DAY;
    await a.createKey(admin, { name: 'three', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await a.scheduleDestruction(admin, 'three', 1, 1);
    clock.now += 2 * DAY;
    repository.afterDestructions = () => b.scheduleDestruction(admin, 'one', 1, 0);
    const result = await a.runMaintenance();
    assert.deepEqual(result.destroyed, ['two:1', 'three:1']);
  });
});

describe('KMS maintenance while sealed', () => {
  it('still destroys due versions (no root needed) when due rotations cannot run, and reports the failure', async () => {
    const { clock, a } = await twoNodes();
    await a.createKey(admin, { name: 'rotating', type: 'aes256-gcm', rotationPeriodDays: 1 });
    await a.createKey(admin, { name: 'erased', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await a.scheduleDestruction(admin, 'erased', 1, 1);
    clock.now += 2 * DAY;
    a.root.seal();
    await assert.rejects(a.runMaintenance(), { code: 'sealed' });
    const [v1] = (await a.getKey(admin, 'erased')).versions;
    assert.equal(v1?.state, 'destroyed', 'the erasure deadline is kept while the root is sealed');
    assert.equal((await a.getKey(admin, 'rotating')).key.latestVersion, 1);
  });
});

/** A node's repository over the shared stores that runs `afterRead` once, right after it next reads a version. */
class RacingSqlRepository extends SqlKmsRepository {
  afterRead: (() => Promise<unknown>) | undefined;
  override async getVersion(name: string, version: number): Promise<VersionRecord | undefined> {
    const read = await super.getVersion(name, version);
    const between = this.afterRead;
    this.afterRead = undefined;
    await between?.();
    return read;
  }
}

let postgres: Promise<{ url: string; stop(): Promise<void> }> | undefined;
let databases = 0;
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

/** Two nodes (own stores, own services) over one metadata database and one keystore. */
async function twoSqlNodes(dialect: 'sqlite' | 'postgres') {
  const dir = tempDir('warden-maintenance-sql-');
  let configs: [StoreConfig, StoreConfig];
  if (dialect === 'sqlite') {
    configs = [
      { kind: 'sqlite', path: path.join(dir, 'warden.db') },
      { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    ];
  } else {
    postgres ??= startPostgres();
    const server = await postgres;
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    databases++;
    const names = [`race_meta_${databases}`, `race_keys_${databases}`] as const;
    try {
      for (const name of names) await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    const url = (name: string) => server.url.replace(/\/warden_test$/, `/${name}`);
    configs = [
      { kind: 'postgres', url: url(names[0]) },
      { kind: 'postgres', url: url(names[1]) },
    ];
  }
  const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
  const clock = { now: Date.UTC(2026, 0, 1) };
  // PostgreSQL: each node has its own connections. SQLite: one Store per file in a process, shared by the nodes
  // (their statements still interleave between awaits as two processes' would).
  const shared =
    dialect === 'sqlite'
      ? [await openStore<KmsMetadataSchema>(configs[0]), await openStore<KeystoreSchema>(configs[1])]
      : undefined;
  const node = async () => {
    const metadata =
      (shared?.[0] as Store<KmsMetadataSchema> | undefined) ??
      (await openStore<KmsMetadataSchema>(configs[0]));
    const keystore =
      (shared?.[1] as Store<KeystoreSchema> | undefined) ?? (await openStore<KeystoreSchema>(configs[1]));
    await metadata.migrate(KMS_METADATA_MIGRATIONS);
    await keystore.migrate(KEYSTORE_MIGRATIONS);
    const repository = new RacingSqlRepository(metadata, keystore);
    const service = new KmsService({
      repository,
      root,
      audit: new Events(),
      authorizer: { authorize: () => true },
      now: () => clock.now,
    });
    return { repository, service };
  };
  const a = await node();
  const b = await node();
  return {
    clock,
    a,
    b,
    close: async () => {
      await a.repository.close();
      if (shared === undefined) await b.repository.close();
    },
  };
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`KMS maintenance across nodes on ${dialect}`, () => {
    it('does not destroy a version whose destruction another node cancelled after the scheduler re-checked it', async () => {
      const { clock, a, b, close } = await twoSqlNodes(dialect);
      await a.service.createKey(admin, { name: 'keep', type: 'aes256-gcm', rotationPeriodDays: 0 });
      const ct = await a.service.encrypt(admin, 'keep', Buffer.from('still needed'));
      await a.service.scheduleDestruction(admin, 'keep', 1, 1);
      clock.now += 2 * DAY;
      // The scheduler's re-check reads the version as due; the cancel commits before its destruction statement.
      a.repository.afterRead = () => b.service.cancelDestruction(admin, 'keep', 1);
      const result = await a.service.runMaintenance();
      assert.deepEqual(result.destroyed, []);
      const [v1] = (await b.service.getKey(admin, 'keep')).versions;
      assert.equal(v1?.state, 'disabled');
      await b.service.enable(admin, 'keep', 1);
      assert.deepEqual(await b.service.decrypt(admin, ct), Buffer.from('still needed'));
      await close();
    });

    it('does not report a cancel as done when the scheduler destroyed the version first', async () => {
      const { clock, a, b, close } = await twoSqlNodes(dialect);
      await a.service.createKey(admin, { name: 'gone', type: 'aes256-gcm', rotationPeriodDays: 0 });
      await a.service.scheduleDestruction(admin, 'gone', 1, 1);
      clock.now += 2 * DAY;
      // The cancel reads the version as scheduled; the scheduler destroys it before the cancel writes.
      b.repository.afterRead = () => a.service.runMaintenance();
      await assert.rejects(b.service.cancelDestruction(admin, 'gone', 1), { code: 'version_unavailable' });
      const [v1] = (await b.service.getKey(admin, 'gone')).versions;
      assert.equal(v1?.state, 'destroyed');
      await close();
    });
  });
}
