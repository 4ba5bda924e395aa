import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import { KmsDecryptionError, KmsSealedError, openKmsRuntime } from '../../src/kms/index.ts';
import type { Principal } from '../../src/kms/index.ts';
import { Pkcs11RootOfTrust } from '../../src/kms/root/pkcs11.ts';
import { tempDir } from '../envelope/support.ts';
import { createSoftHsmToken } from '../support/softhsm.ts';

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

/** The KMS with its root key inside a (SoftHSM2) HSM: the same operations, the root never leaves the token. */
describe('KMS on a PKCS#11 root (SoftHSM2)', async () => {
  const token = await createSoftHsmToken();
  const dir = tempDir('warden-kms-hsm-');
  const root = await Pkcs11RootOfTrust.open({
    modulePath: token.modulePath,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
  });
  await root.initialize();
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'warden.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root,
    audit: await JsonLinesAuditRecorder.open(path.join(dir, 'audit.jsonl')),
  });
  after(async () => {
    await kms.close();
    await root.close();
    await token.cleanup();
  });

  it('creates, rotates and uses keys whose material is wrapped inside the HSM', async () => {
    await kms.service.createKey(admin, { name: 'hsm-data', type: 'aes256-gcm' });
    const ct = await kms.service.encrypt(admin, 'hsm-data', Buffer.from('pii'), Buffer.from('ctx'));
    await kms.service.rotateKey(admin, 'hsm-data');
    assert.deepEqual(await kms.service.decrypt(admin, ct, Buffer.from('ctx')), Buffer.from('pii'));
    await assert.rejects(kms.service.decrypt(admin, ct, Buffer.from('other')), KmsDecryptionError);
    const wrapped = await kms.repository.getWrappedMaterial('hsm-data', 1);
    assert.ok(wrapped !== undefined);
    // The stored material is the HSM's AES-GCM output: it opens only inside the token.
    assert.deepEqual(
      await root
        .unwrap(wrapped, Buffer.from('warden/kms/v1 material\0hsm-data\x001\0aes256-gcm'))
        .then((m) => m.length),
      32,
    );
  });

  it('draws data keys from the HSM and signs with keys it protects', async () => {
    const dataKey = await kms.service.generateDataKey(admin, 'hsm-data');
    assert.equal(dataKey.plaintext?.length, 32);
    assert.deepEqual(await kms.service.decryptDataKey(admin, dataKey.ciphertext), dataKey.plaintext);
    await kms.service.createKey(admin, { name: 'hsm-sign', type: 'ecdsa-p384' });
    const { signature } = await kms.service.sign(admin, 'hsm-sign', Buffer.from('model digest'));
    assert.equal(await kms.service.verify(admin, 'hsm-sign', Buffer.from('model digest'), signature), true);
  });

  it('refuses everything once the HSM session is sealed (logged out)', async () => {
    await root.seal();
    await assert.rejects(kms.service.encrypt(admin, 'hsm-data', Buffer.from('x')), KmsSealedError);
    await root.unseal(token.pin);
    assert.match(await kms.service.encrypt(admin, 'hsm-data', Buffer.from('x')), /^warden:v1:hsm-data:2:/);
  });
});
