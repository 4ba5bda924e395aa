import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import {
  AuditClient,
  KmsClient,
  KmsClientError,
  WardenHttp,
  remoteEnvelopeKeys,
} from '../../src/client/index.ts';
import { openCheckpoint, parseVerifierKey, verifyExport, verifyInclusion } from '../../src/audit/index.ts';
import { decryptFile, encryptFile, rewrapFile } from '../../src/envelope/index.ts';
import { tempDir } from '../envelope/support.ts';

/**
 * Warden as `warden server` runs it, on embedded defaults in a temp data directory, driven through the SDK over
 * TLS 1.3. Every scenario's key material (data keys, exported and imported keys, plaintexts, the root key, the
 * bootstrap token) is collected and searched for in all log output and the audit log afterwards.
 */
describe('warden server on embedded defaults', async () => {
  const dataDir = tempDir('warden-app-');
  const requestLog = new PassThrough();
  const logged: Buffer[] = [];
  requestLog.on('data', (chunk: Buffer) => logged.push(chunk));
  const messages: string[] = [];
  const warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: dataDir, WARDEN_LISTEN: '127.0.0.1:0' }), {
    log: (line) => messages.push(line),
    requestLog,
  });
  after(() => warden.close());
  const token = readFileSync(warden.tokenPath, 'utf8').trim();
  const http = new WardenHttp({ address: warden.url, token, ca: readFileSync(warden.caPath) });
  const client = new KmsClient(http);
  const audit = new AuditClient(http);
  const secrets: Buffer[] = [Buffer.from(token)];

  it('lays out the data directory: separate keystore, audit log, TLS identity, 0600 secrets', () => {
    const names = readdirSync(dataDir);
    for (const expected of [
      'warden.db',
      'keystore.db',
      'audit.db',
      'tls',
      'bootstrap-token',
      'dev-root.key',
    ]) {
      assert.ok(names.includes(expected), expected);
    }
    for (const secret of [
      'bootstrap-token',
      'dev-root.key',
      'keystore.db',
      'warden.db',
      'audit.db',
      path.join('tls', 'server.key'),
    ]) {
      assert.equal(statSync(path.join(dataDir, secret)).mode & 0o077, 0, `${secret} is private`);
    }
    const rootKey = (
      JSON.parse(readFileSync(path.join(dataDir, 'dev-root.key'), 'utf8')) as { rootKey: string }
    ).rootKey;
    secrets.push(Buffer.from(rootKey, 'base64url'));
  });

  it('serves the KMS over TLS 1.3 with the bootstrap token, and refuses without it', async () => {
    await client.createKey({ name: 'datasets', type: 'aes256-gcm' });
    const plaintext = Buffer.from(`patient 4111-1111-1111-1111 ${randomBytes(8).toString('hex')}`);
    secrets.push(plaintext);
    const ciphertext = await client.encrypt('datasets', plaintext, Buffer.from('tenant=a'));
    assert.deepEqual(await client.decrypt(ciphertext, Buffer.from('tenant=a')), plaintext);
    const dataKey = await client.generateDataKey('datasets', { plaintext: true });
    assert.ok(dataKey.plaintext !== undefined);
    secrets.push(dataKey.plaintext);
    const anonymous = new KmsClient({ address: warden.url, ca: readFileSync(warden.caPath) });
    await assert.rejects(
      anonymous.listKeys(),
      (e: unknown) => e instanceof KmsClientError && e.status === 401,
    );
  });

  it('exports exportable keys and imports BYOK keys', async () => {
    await client.createKey({ name: 'exportable', type: 'hmac-sha256', exportable: true });
    const exported = await client.exportKey('exportable');
    secrets.push(exported.material);
    const imported = randomBytes(32);
    secrets.push(imported);
    await client.importKey('byok', { type: 'aes256-gcm', material: imported });
    const ct = await client.encrypt('byok', Buffer.from('x'));
    assert.match(ct, /^warden:v1:byok:1:/);
  });

  it('encrypts files with KMS data keys, rewraps them after rotation, and decrypts them', async () => {
    const dir = tempDir('warden-app-files-');
    const data = randomBytes(200_000);
    secrets.push(data.subarray(0, 64));
    writeFileSync(path.join(dir, 'train.bin'), data);
    const keys = remoteEnvelopeKeys(client, 'datasets');
    await encryptFile(path.join(dir, 'train.bin'), path.join(dir, 'train.bin.wenc'), {
      recipients: [keys],
      context: { purpose: 'training' },
    });
    await client.rotateKey('datasets');
    const { after: header } = await rewrapFile(path.join(dir, 'train.bin.wenc'), { keys });
    assert.match(header.slots[0]?.wrappedKey.toString() ?? '', /^warden:v1:datasets:2:/);
    await decryptFile(path.join(dir, 'train.bin.wenc'), path.join(dir, 'out.bin'), {
      keys: [keys],
      expectedContext: { purpose: 'training' },
    });
    assert.deepEqual(readFileSync(path.join(dir, 'out.bin')), data);
  });

  it('audits every operation with request metadata in the Merkle log, with proofs and signed checkpoints', async () => {
    for (const action of [
      'kms.keys.create',
      'kms.crypto.encrypt',
      'kms.crypto.decrypt',
      'kms.crypto.generate-data-key',
      'kms.keys.export',
      'kms.keys.import',
      'kms.crypto.rewrap',
    ]) {
      const { events } = await audit.events({ action, principal: 'bootstrap-admin', limit: 5 });
      const event = events[0]?.event as { sourceIp?: string; requestId?: string } | undefined;
      assert.ok(event, action);
      assert.equal(event.sourceIp, '127.0.0.1');
      assert.ok(event.requestId !== undefined);
    }
    const denied = await audit.events({ action: 'auth.request', outcome: 'denied' });
    assert.ok(denied.events.length >= 1, 'the anonymous call was audited');

    const { verifierKey } = await audit.verifierKey();
    const verifier = parseVerifierKey(verifierKey);
    const checkpoint = await audit.checkpoint();
    const opened = openCheckpoint(checkpoint.note, [verifier], 'warden.local/audit');
    assert.equal(opened.checkpoint.treeSize, checkpoint.treeSize);

    const [first] = (await audit.events({ action: 'kms.keys.create', limit: 1 })).events;
    assert.ok(first);
    const proof = await audit.inclusionProof(first.index, checkpoint.treeSize);
    verifyInclusion(
      Buffer.from(proof.leafHash, 'hex'),
      first.index,
      checkpoint.treeSize,
      proof.proof.map((h) => Buffer.from(h, 'hex')),
      Buffer.from(checkpoint.rootHash, 'hex'),
    );
    assert.equal(proof.rootHash, checkpoint.rootHash);

    const lines: string[] = [];
    let rest = '';
    for await (const chunk of await audit.export()) {
      const parts = (rest + (chunk as Buffer).toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      lines.push(...parts.filter((l) => l !== ''));
    }
    const report = await verifyExport(lines, { verifierKey });
    assert.equal(report.ok, true, JSON.stringify(report.problems));
    assert.ok((report.treeSize ?? 0) >= checkpoint.treeSize);

    const hashed = await audit.hash('alice@example.com');
    assert.match(hashed, /^hmac-sha256:[0-9a-f]{64}$/);
    assert.equal(await audit.hash('alice@example.com'), hashed, 'stable per log');
  });

  it('never writes key material, plaintext or the token to a log or the audit trail', () => {
    const haystack = Buffer.concat([
      ...logged,
      Buffer.from(messages.join('\n')),
      readFileSync(path.join(dataDir, 'audit.db')),
    ]);
    assert.ok(logged.length > 0, 'request logs were produced');
    const text = haystack.toString('latin1');
    for (const secret of secrets) {
      for (const encoding of ['hex', 'base64', 'base64url'] as const) {
        const needle = secret.toString(encoding).slice(0, 24);
        assert.equal(text.includes(needle), false, `a secret appears in the logs (${encoding})`);
      }
      assert.equal(haystack.includes(secret), false, 'a secret appears in the logs (raw)');
    }
  });
});
