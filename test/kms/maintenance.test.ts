// Scheduled maintenance acts on what is due when it acts, not on what was due when it listed it: another node's
// scheduler, or an operator, may have rotated a key or cancelled a destruction in between.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { KmsService, SoftwareRootOfTrust } from '../../src/kms/index.ts';
import type { Principal } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';

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
