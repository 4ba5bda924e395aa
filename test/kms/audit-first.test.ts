// Key changes are recorded before they are made: with the audit log unable to record, every administrative change
// (create, import, rotate, states, destruction, the floor and other settings, the scheduler's own changes) is
// refused with AuditUnavailableError and leaves the keys as they were.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { RsaOaepPublicKey, WrappingKey, aesKeyWrapPadded, rsaOaepEncrypt } from '../../src/crypto/index.ts';
import { AuditUnavailableError, SoftwareRootOfTrust, openKmsRuntime } from '../../src/kms/index.ts';
import type { KmsRuntime, Principal } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };
const DAY = 24 * 60 * 60 * 1000;

/** An audit port that records until it is told to fail, as a locked or full log does. */
class SwitchableAudit implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  failing = false;
  record(event: AuditEvent): Promise<void> {
    if (this.failing) return Promise.reject(new Error('audit log is locked'));
    this.events.push(event);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function setup(): Promise<{ kms: KmsRuntime; audit: SwitchableAudit; clock: { now: number } }> {
  const dir = tempDir('warden-audit-first-');
  const audit = new SwitchableAudit();
  const clock = { now: Date.UTC(2026, 0, 1) };
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'warden.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root: await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key')),
    audit,
    now: () => clock.now,
  });
  return { kms, audit, clock };
}

/** Everything the repository holds about the keys, material included, to compare before and after. */
async function snapshot(kms: KmsRuntime): Promise<unknown> {
  const repo = kms.repository;
  const keys = await repo.listKeys();
  return Promise.all(
    keys.map(async (key) => {
      const versions = await repo.listVersions(key.name);
      return {
        key,
        versions,
        material: await Promise.all(
          versions.map(async (v) => (await repo.getWrappedMaterial(key.name, v.version))?.toString('hex')),
        ),
      };
    }),
  );
}

describe('KMS key changes with an audit log that cannot record', () => {
  it('refuses every administrative change and leaves the keys unchanged', async () => {
    const { kms, audit } = await setup();
    const s = kms.service;
    await s.createKey(admin, { name: 'app', type: 'aes256-gcm' });
    await s.rotateKey(admin, 'app');
    await s.rotateKey(admin, 'app');
    await s.disable(admin, 'app', 2);
    await s.scheduleDestruction(admin, 'app', 1, 7);
    const pem = await s.importWrappingKey(admin);
    const blob = () => {
      const ephemeral = randomBytes(32);
      return Buffer.concat([
        rsaOaepEncrypt(RsaOaepPublicKey.fromPem(pem), ephemeral),
        aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), randomBytes(32)),
      ]);
    };
    await s.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob() });
    const before = await snapshot(kms);

    audit.failing = true;
    const changes: [string, () => Promise<unknown>][] = [
      ['create', () => s.createKey(admin, { name: 'new', type: 'aes256-gcm' })],
      ['import a new key', () => s.importKey(admin, { name: 'new-byok', type: 'aes256-gcm', blob: blob() })],
      ['import into a key', () => s.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob() })],
      ['rotate', () => s.rotateKey(admin, 'app')],
      ['disable', () => s.disable(admin, 'app', 3)],
      ['disable all', () => s.disable(admin, 'app')],
      ['enable', () => s.enable(admin, 'app', 2)],
      ['schedule destruction', () => s.scheduleDestruction(admin, 'app', 3, 7)],
      ['destroy now', () => s.scheduleDestruction(admin, 'app', 3, 0)],
      ['cancel destruction', () => s.cancelDestruction(admin, 'app', 1)],
      ['raise the floor', () => s.updateKey(admin, 'app', { minDecryptionVersion: 3 })],
      ['rotation period', () => s.updateKey(admin, 'app', { rotationPeriodDays: 1 })],
      ['auto floor', () => s.updateKey(admin, 'app', { autoFloorGraceDays: 1 })],
      ['description', () => s.updateKey(admin, 'app', { description: 'changed' })],
    ];
    for (const [what, change] of changes) {
      await assert.rejects(change(), AuditUnavailableError, what);
      assert.deepEqual(await snapshot(kms), before, `${what} took effect without an audit record`);
    }
    await kms.close();
  });

  it('keeps the scheduler from rotating, raising floors and destroying while nothing can be recorded', async () => {
    const { kms, audit, clock } = await setup();
    const s = kms.service;
    await s.createKey(admin, { name: 'rotating', type: 'aes256-gcm', rotationPeriodDays: 1 });
    await s.createKey(admin, { name: 'floored', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await s.updateKey(admin, 'floored', { autoFloorGraceDays: 1 });
    await s.rotateKey(admin, 'floored');
    await s.createKey(admin, { name: 'erased', type: 'aes256-gcm', rotationPeriodDays: 0 });
    await s.scheduleDestruction(admin, 'erased', 1, 1);
    clock.now += 2 * DAY;
    const before = await snapshot(kms);
    audit.failing = true;
    await assert.rejects(s.runMaintenance(), AuditUnavailableError);
    assert.deepEqual(await snapshot(kms), before);

    audit.failing = false;
    const done = await s.runMaintenance();
    assert.deepEqual(done, { rotated: ['rotating'], floorsRaised: ['floored:2'], destroyed: ['erased:1'] });
    await kms.close();
  });

  it('records a change before it is made, and a change that then fails as a failure', async () => {
    const { kms, audit } = await setup();
    const s = kms.service;
    await s.createKey(admin, { name: 'app', type: 'aes256-gcm' });
    const repo = kms.repository;
    const original = repo.updateKey.bind(repo);
    repo.updateKey = () => Promise.reject(new Error('disk full'));
    await assert.rejects(s.updateKey(admin, 'app', { description: 'x' }), /disk full/);
    repo.updateKey = original;
    const updates = audit.events.filter((e) => e.action === 'kms.keys.update');
    assert.deepEqual(
      updates.map((e) => [e.outcome, e.reason]),
      [
        ['success', undefined],
        ['failure', 'internal_error'],
      ],
    );
    await kms.close();
  });
});
