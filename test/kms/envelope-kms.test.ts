import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import { DecryptionError } from '../../src/crypto/index.ts';
import { decryptFile, encryptFile, inspectFile, rewrapFile } from '../../src/envelope/index.ts';
import {
  SoftwareRootOfTrust,
  VersionUnavailableError,
  inProcessDataKeyApi,
  kmsEnvelopeKeys,
  openKmsRuntime,
  parseCiphertext,
} from '../../src/kms/index.ts';
import type { Principal } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

describe('envelopes with KMS key slots', async () => {
  const dir = tempDir('warden-kms-env-');
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'warden.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root: await SoftwareRootOfTrust.openDevMode(path.join(dir, 'root.key')),
    audit: await JsonLinesAuditRecorder.open(path.join(dir, 'audit.jsonl')),
  });
  await kms.service.createKey(admin, { name: 'datasets', type: 'aes256-gcm' });
  const keys = kmsEnvelopeKeys(inProcessDataKeyApi(kms.service, admin), 'datasets');
  const data = randomBytes(3 * 65536 + 5);
  const input = path.join(dir, 'train.parquet');
  writeFileSync(input, data);

  it('takes its data key from the KMS: the slot names the key, its wrapped key names the version', async () => {
    await encryptFile(input, `${input}.wenc`, {
      recipients: [keys],
      context: { dataset: 'train' },
      chunkExponent: 16,
    });
    const { header } = await inspectFile(`${input}.wenc`);
    const [slot] = header.slots;
    assert.ok(slot !== undefined);
    assert.equal(slot.type, 'kms');
    assert.equal(slot.ref, 'datasets');
    assert.equal(parseCiphertext(slot.wrappedKey.toString()).version, 1);
    await decryptFile(`${input}.wenc`, `${input}.out`, {
      keys: [keys],
      expectedContext: { dataset: 'train' },
    });
    assert.deepEqual(readFileSync(`${input}.out`), data);
  });

  it('rewraps a file to the latest key version by rewriting only the header', async () => {
    const before = readFileSync(`${input}.wenc`);
    await kms.service.rotateKey(admin, 'datasets');
    const result = await rewrapFile(`${input}.wenc`, { keys });
    assert.equal(result.rewrapped, 1);
    assert.equal(parseCiphertext(result.after.slots[0]!.wrappedKey.toString()).version, 2);
    const after = readFileSync(`${input}.wenc`);
    assert.deepEqual(
      after.subarray(result.after.headerLength),
      before.subarray(result.before.headerLength),
      'payload unchanged',
    );
    assert.deepEqual(result.after.context, result.before.context);
    // Old versions can now be retired: the rewrapped file no longer needs version 1.
    await kms.service.updateKey(admin, 'datasets', { minDecryptionVersion: 2 });
    await decryptFile(`${input}.wenc`, `${input}.out2`, { keys: [keys] });
    assert.deepEqual(readFileSync(`${input}.out2`), data);
  });

  it('crypto-shreds whole files: destroying the key version makes them unreadable', async () => {
    await encryptFile(input, `${input}.2.wenc`, { recipients: [keys] });
    const version = parseCiphertext(
      (await inspectFile(`${input}.2.wenc`)).header.slots[0]!.wrappedKey.toString(),
    ).version;
    await kms.service.scheduleDestruction(admin, 'datasets', version, 0);
    await assert.rejects(
      decryptFile(`${input}.2.wenc`, `${input}.2.out`, { keys: [keys] }),
      VersionUnavailableError,
    );
  });

  it('a tampered KMS slot is the envelope decryption error', async () => {
    await kms.service.rotateKey(admin, 'datasets');
    await encryptFile(input, `${input}.3.wenc`, { recipients: [keys] });
    const ct = readFileSync(`${input}.3.wenc`);
    const { header } = await inspectFile(`${input}.3.wenc`);
    const at = header.headerLength - 32 - 5; // inside the wrapped key's base64url text
    ct[at] = ct[at] === 0x41 ? 0x42 : 0x41;
    writeFileSync(`${input}.3.wenc`, ct);
    await assert.rejects(decryptFile(`${input}.3.wenc`, `${input}.3.out`, { keys: [keys] }), DecryptionError);
  });
});
