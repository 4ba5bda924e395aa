// Warden's own keys (`warden.*`): reserved from createKey, created once by ensureSystemKey (audited under
// system:warden, not subject to the authorizer), signAsSystem leaves no audit event and refuses other keys,
// deriveAsSystem is stable across rotations of its key.

import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { KmsService, SoftwareRootOfTrust } from '../../src/kms/index.ts';
import type { Authorizer, Principal } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';

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

const denyAll: Authorizer = { authorize: () => false };
const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

async function kms(authorizer: Authorizer = denyAll): Promise<{ service: KmsService; audit: Events }> {
  const root = await SoftwareRootOfTrust.openDevMode(
    path.join(tempDir('warden-system-keys-'), 'dev-root.key'),
  );
  const audit = new Events();
  return {
    service: new KmsService({ repository: new MemoryKmsRepository(), root, audit, authorizer }),
    audit,
  };
}

describe('Warden system keys', () => {
  it('creates a system key once, audited, whatever the authorizer says', async () => {
    const { service, audit } = await kms();
    const first = await service.ensureSystemKey({
      name: 'warden.test-sign',
      type: 'ed25519',
      rotationPeriodDays: 0,
    });
    const again = await service.ensureSystemKey({ name: 'warden.test-sign', type: 'ed25519' });
    assert.equal(again.key.createdAt, first.key.createdAt);
    const created = audit.events.filter((e) => e.action === 'kms.keys.create');
    assert.equal(created.length, 1);
    assert.equal(created[0]?.principal.id, 'system:warden');
    await assert.rejects(service.ensureSystemKey({ name: 'mine', type: 'ed25519' }), {
      code: 'invalid_request',
    });
  });

  it('reserves warden.* names from createKey', async () => {
    const { service } = await kms();
    const open = new KmsService({
      repository: new MemoryKmsRepository(),
      root: await SoftwareRootOfTrust.openDevMode(path.join(tempDir('warden-system-keys-'), 'dev-root.key')),
      audit: new Events(),
      authorizer: { authorize: () => true },
    });
    await assert.rejects(open.createKey(admin, { name: 'warden.mine', type: 'aes256-gcm' }), {
      code: 'invalid_request',
    });
    await assert.rejects(service.createKey(admin, { name: 'ordinary', type: 'aes256-gcm' }), {
      code: 'forbidden',
    });
  });

  it('signs as the system without an audit event, only with warden.* keys', async () => {
    const { service, audit } = await kms();
    const info = await service.ensureSystemKey({ name: 'warden.test-sign', type: 'ed25519' });
    const before = audit.events.length;
    const message = Buffer.from('checkpoint body');
    const { signature, keyVersion } = await service.signAsSystem('warden.test-sign', message);
    assert.equal(keyVersion, 1);
    assert.equal(audit.events.length, before, 'no audit event: the checkpoint is the record');
    const spki = info.versions[0]?.publicKey;
    assert.ok(spki);
    assert.equal(
      verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature),
      true,
    );
    await assert.rejects(service.signAsSystem('ordinary', message), { code: 'forbidden' });
  });

  it('derives the same local key from version 1 after the HMAC key rotates', async () => {
    const { service } = await kms({ authorize: (_principal, action) => action === 'keys.rotate' });
    await service.ensureSystemKey({ name: 'warden.test-mac', type: 'hmac-sha256' });
    const one = await service.deriveAsSystem('warden.test-mac', 'label a');
    assert.equal(one.length, 32);
    assert.notDeepEqual(await service.deriveAsSystem('warden.test-mac', 'label b'), one);
    assert.equal((await service.rotateKey(admin, 'warden.test-mac')).version, 2);
    assert.deepEqual(await service.deriveAsSystem('warden.test-mac', 'label a'), one);
    await assert.rejects(service.deriveAsSystem('ordinary', 'x'), { code: 'forbidden' });
  });
});
