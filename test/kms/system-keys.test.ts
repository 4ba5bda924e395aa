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

describe('Warden system keys from the API', () => {
  const allowAll: Authorizer = { authorize: () => true };
  const apiAdmin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'jwt' };
  const internal: Principal = { id: 'system:identity', roles: ['key-user'], authMethod: 'internal' };

  it('refuses cryptographic use, import and export of warden.* keys to every API principal', async () => {
    const { service, audit } = await kms(allowAll);
    await service.ensureSystemKey({ name: 'warden.test-sign', type: 'ecdsa-p256' });
    await service.ensureSystemKey({ name: 'warden.test-mac', type: 'hmac-sha256' });
    await service.ensureSystemKey({ name: 'warden.test-enc', type: 'aes256-gcm', exportable: true });
    const message = Buffer.from('{"alg":"ES256"}.{"sub":"user:root"}');
    const sealed = await service.encrypt(internal, 'warden.test-enc', Buffer.from('totp seed'));
    const wrappedKey = (await service.generateDataKey(internal, 'warden.test-enc')).ciphertext;
    const refused = { code: 'forbidden' };
    await assert.rejects(service.sign(apiAdmin, 'warden.test-sign', message), refused);
    await assert.rejects(service.hmac(apiAdmin, 'warden.test-mac', message), refused);
    await assert.rejects(service.verifyHmac(apiAdmin, 'warden.test-mac', message, Buffer.alloc(32)), refused);
    await assert.rejects(service.encrypt(apiAdmin, 'warden.test-enc', message), refused);
    await assert.rejects(service.decrypt(apiAdmin, sealed), refused);
    await assert.rejects(service.rewrap(apiAdmin, sealed), refused);
    await assert.rejects(service.generateDataKey(apiAdmin, 'warden.test-enc'), refused);
    await assert.rejects(service.decryptDataKey(apiAdmin, wrappedKey), refused);
    await assert.rejects(service.exportKey(apiAdmin, 'warden.test-enc'), refused);
    await assert.rejects(
      service.importKey(apiAdmin, { name: 'warden.test-sign', type: 'ecdsa-p256', blob: Buffer.alloc(600) }),
      refused,
    );
    const signed = await service.signBatch(apiAdmin, 'warden.test-sign', [{ message }]);
    assert.equal(signed[0]?.ok, false);
    const opened = await service.decryptBatch(apiAdmin, [{ ciphertext: sealed }]);
    assert.deepEqual(opened[0], {
      ok: false,
      error: { code: 'forbidden', message: 'not allowed to crypto.decrypt' },
    });
    const denials = audit.events.filter(
      (e) => e.outcome === 'denied' && e.resource === 'key:warden.test-sign',
    );
    assert.ok(denials.length >= 2, 'denials are audited');

    // What stays open: metadata, public keys, verification, and the lifecycle (rotation, states).
    assert.equal((await service.getKey(apiAdmin, 'warden.test-sign')).key.name, 'warden.test-sign');
    await service.publicKey(apiAdmin, 'warden.test-sign');
    const { signature } = await service.sign(internal, 'warden.test-sign', message);
    assert.equal(await service.verify(apiAdmin, 'warden.test-sign', message, signature), true);
    assert.equal((await service.rotateKey(apiAdmin, 'warden.test-sign')).version, 2);
    assert.deepEqual(await service.decrypt(internal, sealed), Buffer.from('totp seed'));
  });
});

describe('component keys outside warden.* (the internal CA key)', () => {
  it('are refused to API principals like warden.* keys, and stay ordinary for everyone else', async () => {
    const root = await SoftwareRootOfTrust.openDevMode(
      path.join(tempDir('warden-component-keys-'), 'dev-root.key'),
    );
    const service = new KmsService({
      repository: new MemoryKmsRepository(),
      root,
      audit: new Events(),
      authorizer: { authorize: () => true },
      componentKeys: ['internal-ca'],
    });
    const apiAdmin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'jwt' };
    const ca: Principal = { id: 'system:ca', roles: ['key-user'], authMethod: 'internal' };
    // `warden ca init` creates it as the administrator who runs it; only the CA signs with it.
    await service.createKey(apiAdmin, { name: 'internal-ca', type: 'ecdsa-p256' });
    await service.createKey(apiAdmin, { name: 'team-signing', type: 'ecdsa-p256' });
    const tbs = Buffer.from('tbsCertificate of a client certificate for service:payments');
    await assert.rejects(service.sign(apiAdmin, 'internal-ca', tbs), { code: 'forbidden' });
    const { signature } = await service.sign(ca, 'internal-ca', tbs);
    assert.equal(await service.verify(apiAdmin, 'internal-ca', tbs, signature), true);
    assert.equal((await service.rotateKey(apiAdmin, 'internal-ca')).version, 2);
    await service.sign(apiAdmin, 'team-signing', tbs);
  });
});
