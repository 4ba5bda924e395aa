// The audit trail as warden server composes it: events reach the configured SIEM sink after the Merkle log,
// checkpoints are signed by the KMS-held system key, and Warden's own `warden.*` keys cannot be created,
// and are not usable for signing, through the API.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { AuditClient, KmsClient, KmsClientError, WardenHttp } from '../../src/client/index.ts';
import { DatabaseSync } from 'node:sqlite';
import { tempDir } from '../envelope/support.ts';

describe('the audit trail of warden server', async () => {
  const dir = tempDir('warden-trail-');
  const sinkFile = path.join(dir, 'siem', 'audit.jsonl');
  const configFile = path.join(dir, 'warden.json');
  writeFileSync(
    configFile,
    JSON.stringify({ audit: { origin: 'trail.example/audit', sinks: [{ type: 'file', path: sinkFile }] } }),
  );
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: dir, WARDEN_LISTEN: '127.0.0.1:0', WARDEN_CONFIG: configFile }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const token = readFileSync(warden.tokenPath, 'utf8').trim();
  const kms = new KmsClient(new WardenHttp({ address: warden.url, token, ca: readFileSync(warden.caPath) }));

  it('sends every event to the configured sink too', async () => {
    await kms.createKey({ name: 'sunk', type: 'aes256-gcm' });
    for (
      let i = 0;
      i < 50 && !(existsSync(sinkFile) && readFileSync(sinkFile, 'utf8').includes('key:sunk'));
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const lines = readFileSync(sinkFile, 'utf8').trim().split('\n');
    const created = lines.map(
      (l) => JSON.parse(l) as { action: string; resource: string; index?: number; time: string },
    );
    const sunk = created.find((e) => e.action === 'kms.keys.create' && e.resource === 'key:sunk');
    assert.ok(sunk);
    // The SIEM copy names the log entry it copies, so a gap can be found and backfilled from an export.
    assert.equal(typeof sunk.index, 'number');
    const { entries } = await warden.audit.log.query({ resource: 'key:sunk', action: 'kms.keys.create' });
    assert.equal(entries.length, 1);
    assert.equal(sunk.index, entries[0]?.index);
    assert.equal(sunk.time, entries[0]?.time);
  });

  it('signs checkpoints under the configured origin with the KMS-held key', async () => {
    const cp = await warden.audit.log.checkpoint();
    assert.match(cp.note, /^trail\.example\/audit\n/);
    assert.match(warden.audit.signer.verifierKey ?? '', /^trail\.example\/audit\+[0-9a-f]{8}\+/);
  });

  it('reserves warden.* key names and keeps system keys out of the API', async () => {
    await assert.rejects(
      kms.createKey({ name: 'warden.mine', type: 'ed25519' }),
      (e: unknown) => e instanceof KmsClientError && e.status === 400,
    );
    const keys = (await kms.listKeys()).map((k) => k.name);
    assert.ok(keys.includes('warden.audit-checkpoint'), 'the checkpoint key exists');
    await assert.rejects(
      warden.kms.service.signAsSystem('sunk', Buffer.from('x')),
      (e: unknown) => (e as { code?: string }).code === 'forbidden',
    );
  });

  it('verifies checkpoint signatures on request, and reports one that does not verify', async () => {
    const audit = new AuditClient(
      new WardenHttp({ address: warden.url, token, ca: readFileSync(warden.caPath) }),
    );
    await warden.audit.log.checkpoint();
    const report = await audit.verify();
    assert.ok(Number(report.checkpointsChecked) >= 1, JSON.stringify(report));
    // A stored checkpoint whose signature was replaced: its root still matches, only the signature can tell.
    const db = new DatabaseSync(path.join(dir, 'audit.db'));
    try {
      const row = db.prepare('select size, note from audit_checkpoints order by size desc limit 1').get() as {
        size: number;
        note: string;
      };
      const [body, signature = ''] = row.note.split('\n\n');
      const lines = signature.split('\n');
      const last = lines[0] ?? '';
      const b64 = last.slice(last.lastIndexOf(' ') + 1);
      const bytes = Buffer.from(b64, 'base64');
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
      lines[0] = last.slice(0, last.lastIndexOf(' ') + 1) + bytes.toString('base64');
      db.prepare('update audit_checkpoints set note = ? where size = ?').run(
        `${body}\n\n${lines.join('\n')}`,
        row.size,
      );
    } finally {
      db.close();
    }
    await assert.rejects(audit.verify(), (e: unknown) => e instanceof KmsClientError && e.status >= 500);
  });
});
