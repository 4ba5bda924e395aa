// BYOK import into an existing key when the new version's number is taken by a concurrent rotation (another node):
// the import retries with the next number and must still store the imported material.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { RsaOaepPublicKey, WrappingKey, aesKeyWrapPadded, rsaOaepEncrypt } from '../../src/crypto/index.ts';
import {
  BUILT_IN_ROLES,
  BuiltInRoleAuthorizer,
  ForbiddenError,
  ImportOptionsError,
  KmsService,
  SoftwareRootOfTrust,
} from '../../src/kms/index.ts';
import type { KeyType, Principal, VersionRecord } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';

class NoAudit implements AuditRecorder {
  record(_event: AuditEvent): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Loses the first race for a version number: another writer took it first. */
class RacedRepository extends MemoryKmsRepository {
  lostRaces = 0;
  armed = false;
  override addVersion(
    name: string,
    expectedLatest: number,
    version: VersionRecord,
    wrappedMaterial: Buffer,
    nextRotationAt: number | null,
  ): Promise<boolean> {
    if (this.armed) {
      this.armed = false;
      this.lostRaces++;
      return Promise.resolve(false);
    }
    return super.addVersion(name, expectedLatest, version, wrappedMaterial, nextRotationAt);
  }
}

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

describe('BYOK import into an existing key', () => {
  for (const type of ['aes256-gcm', 'hmac-sha256'] as const satisfies readonly KeyType[]) {
    it(`keeps the imported ${type} material when a concurrent rotation takes the version number`, async () => {
      const repository = new RacedRepository();
      const service = new KmsService({
        repository,
        root: await SoftwareRootOfTrust.openDevMode(path.join(tempDir('warden-import-'), 'dev-root.key')),
        audit: new NoAudit(),
        authorizer: { authorize: () => true },
      });
      const pem = await service.importWrappingKey(admin);
      const blobOf = (material: Buffer) => {
        const ephemeral = randomBytes(32);
        return Buffer.concat([
          rsaOaepEncrypt(RsaOaepPublicKey.fromPem(pem), ephemeral),
          aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), material),
        ]);
      };
      await service.importKey(admin, { name: 'byok', type, blob: blobOf(randomBytes(32)), exportable: true });
      const second = randomBytes(32);
      repository.armed = true;
      const info = await service.importKey(admin, { name: 'byok', type, blob: blobOf(Buffer.from(second)) });
      assert.equal(repository.lostRaces, 1);
      assert.equal(info.versions[0]?.version, 2);
      assert.deepEqual((await service.exportKey(admin, 'byok', 2)).material, second);
    });
  }
});

describe('a key created by an import', () => {
  it('is not rotated automatically unless a period is given: rotation would replace the brought material', async () => {
    const service = new KmsService({
      repository: new MemoryKmsRepository(),
      root: await SoftwareRootOfTrust.openDevMode(path.join(tempDir('warden-import-'), 'dev-root.key')),
      audit: new NoAudit(),
      authorizer: { authorize: () => true },
    });
    const pem = await service.importWrappingKey(admin);
    const blob = () => {
      const ephemeral = randomBytes(32);
      return Buffer.concat([
        rsaOaepEncrypt(RsaOaepPublicKey.fromPem(pem), ephemeral),
        aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), randomBytes(32)),
      ]);
    };
    const brought = await service.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob() });
    assert.equal(brought.key.rotationPeriodMs, null);
    assert.equal(brought.key.nextRotationAt, null);
    const asked = await service.importKey(admin, {
      name: 'byok-rotating',
      type: 'aes256-gcm',
      blob: blob(),
      rotationPeriodDays: 30,
    });
    assert.equal(asked.key.rotationPeriodMs, 30 * 86_400_000);
    const generated = await service.createKey(admin, { name: 'made-here', type: 'aes256-gcm' });
    assert.equal(generated.key.rotationPeriodMs, 90 * 86_400_000);
  });
});

/** A KMS on an in-memory repository whose audit events are kept in `events`. */
async function recordingService(
  authorizer: ConstructorParameters<typeof KmsService>[0]['authorizer'],
): Promise<{ service: KmsService; events: AuditEvent[] }> {
  const events: AuditEvent[] = [];
  const service = new KmsService({
    repository: new MemoryKmsRepository(),
    root: await SoftwareRootOfTrust.openDevMode(path.join(tempDir('warden-import-'), 'dev-root.key')),
    audit: {
      record: (event) => {
        events.push(event);
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    },
    authorizer,
  });
  return { service, events };
}

describe('an import into an existing key', () => {
  it('refuses key options (exportable, rotation, floor grace, description) instead of ignoring them', async () => {
    const { service, events } = await recordingService({ authorize: () => true });
    const pem = await service.importWrappingKey(admin);
    const blob = () => {
      const ephemeral = randomBytes(32);
      return Buffer.concat([
        rsaOaepEncrypt(RsaOaepPublicKey.fromPem(pem), ephemeral),
        aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), randomBytes(32)),
      ]);
    };
    await service.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob() });
    for (const options of [
      { exportable: true },
      { exportable: false },
      { rotationPeriodDays: 30 },
      { autoFloorGraceDays: 5 },
      { autoFloorGraceDays: null },
      { description: 'new' },
    ]) {
      const [option] = Object.keys(options);
      await assert.rejects(
        service.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob(), ...options }),
        (err: unknown) =>
          err instanceof ImportOptionsError &&
          err.code === 'invalid_request' &&
          err.message.includes(String(option)),
        option,
      );
    }
    const info = await service.getKey(admin, 'byok');
    assert.equal(info.versions.length, 1, 'no version was added');
    assert.equal(info.key.exportable, false);
    assert.equal(
      events.filter(
        (e) => e.action === 'kms.keys.import' && e.resource === 'key:byok' && e.outcome === 'success',
      ).length,
      1,
      'only the first import is recorded as done',
    );
    // Without options it adds a version, as before.
    assert.equal(
      (await service.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob: blob() })).versions[0]
        ?.version,
      2,
    );
  });
});

describe('the import wrapping key', () => {
  it('is fetched under its own action, kms.keys.import-wrapping-key, granted to those who may import', async () => {
    const { service, events } = await recordingService(new BuiltInRoleAuthorizer());
    const custodian: Principal = { id: 'user:cus', roles: ['key-custodian'], authMethod: 'test' };
    const user: Principal = { id: 'svc:app', roles: ['key-user'], authMethod: 'test' };
    assert.match(await service.importWrappingKey(custodian), /BEGIN PUBLIC KEY/);
    await assert.rejects(service.importWrappingKey(user), ForbiddenError);
    assert.deepEqual(
      events.map((e) => [e.action, e.resource, e.outcome]),
      [
        ['kms.keys.import-wrapping-key', 'key:*', 'success'],
        ['kms.keys.import-wrapping-key', 'key:*', 'denied'],
      ],
    );
    for (const role of ['admin', 'key-custodian', 'key-user', 'auditor', 'system']) {
      assert.equal(
        BUILT_IN_ROLES[role]?.includes('keys.import-wrapping-key'),
        BUILT_IN_ROLES[role]?.includes('keys.import'),
        role,
      );
    }
  });
});
