// `warden audit …` against a running `warden server`: export and offline verification (also against a checkpoint
// saved earlier), tampering reported with its position and exit code 4, inclusion and consistency proofs checked
// against the signed checkpoint, keyed-hash lookups read from stdin (never argv), queries.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { localEd25519NoteSigner, signCheckpoint } from '../../src/audit/index.ts';
import { registerAuditCommands } from '../../src/cli/commands/audit.ts';
import { ExitCode } from '../../src/cli/exit-codes.ts';
import { KmsClient, WardenHttp } from '../../src/client/index.ts';
import { tempDir } from '../envelope/support.ts';
import { runCli } from '../support/cli.ts';

describe('warden audit', async () => {
  const dir = tempDir('warden-audit-cli-');
  const warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: dir, WARDEN_LISTEN: '127.0.0.1:0' }), {
    requestLog: { write: () => true } as unknown as NodeJS.WritableStream,
  });
  after(() => warden.close());
  const token = readFileSync(warden.tokenPath, 'utf8').trim();
  const env = { WARDEN_ADDR: warden.url, WARDEN_TOKEN: token, WARDEN_CACERT: warden.caPath };
  const kms = new KmsClient(new WardenHttp({ address: warden.url, token, ca: readFileSync(warden.caPath) }));
  await kms.createKey({ name: 'audited', type: 'aes256-gcm' });
  await kms.encrypt('audited', Buffer.from('x'));

  const run = (args: string[], stdin?: string) => runCli(registerAuditCommands, args, env, stdin);

  const exportFile = path.join(dir, 'export.jsonl');
  const keyFile = path.join(dir, 'verifier.key');
  const savedCheckpoint = path.join(dir, 'checkpoint.txt');

  it('shows the signed checkpoint and saves it for a later consistency check', async () => {
    const shown = await run(['audit', 'checkpoint', '--json']);
    assert.equal(shown.code, 0, shown.err);
    const cp = JSON.parse(shown.out) as { note: string; verifierKey: string; treeSize: number };
    assert.ok(cp.treeSize > 0);
    writeFileSync(savedCheckpoint, cp.note);
    writeFileSync(keyFile, `${cp.verifierKey}\n`);
  });

  it('exports the log and verifies it offline, also against the saved checkpoint', async () => {
    await kms.encrypt('audited', Buffer.from('more'));
    const exported = await run(['audit', 'export', '-o', exportFile]);
    assert.equal(exported.code, 0, exported.err);
    const verified = await run([
      'audit',
      'verify',
      exportFile,
      '--key',
      `@${keyFile}`,
      '--previous',
      savedCheckpoint,
    ]);
    assert.equal(verified.code, 0, verified.out + verified.err);
    assert.match(verified.out, /^verified: \d+ entries/);
  });

  it('says when an export holds the event bodies of a time range only', async () => {
    const ranged = path.join(dir, 'ranged.jsonl');
    const exported = await run([
      'audit',
      'export',
      '-o',
      ranged,
      '--from',
      new Date(Date.now() + 3_600_000).toISOString(),
    ]);
    assert.equal(exported.code, 0, exported.err);
    const verified = await run(['audit', 'verify', ranged, '--key', `@${keyFile}`]);
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, /^verified: \d+ entries, 0 bodies/);
    assert.match(verified.out, /no event bodies: a time-range export with an empty range/);
    const whole = await run(['audit', 'verify', exportFile, '--key', `@${keyFile}`]);
    assert.doesNotMatch(whole.out, /time-range/);
    // From the time of a later entry on: the bodies of the entries from the first one at that time.
    const times = readFileSync(exportFile, 'utf8')
      .split('\n')
      .slice(1, -2)
      .map((l) => (JSON.parse(l) as { event: { time: string } }).event.time);
    const at = times.findIndex((t) => t > (times[0] as string));
    assert.ok(at > 0);
    await run(['audit', 'export', '-o', ranged, '--force', '--from', times[at] as string]);
    const part = await run(['audit', 'verify', ranged, '--key', `@${keyFile}`]);
    assert.equal(part.code, 0, part.err);
    assert.match(
      part.out,
      new RegExp(`event bodies only for entries ${at}\\.\\.\\d+ \\(a time-range export`),
    );
  });

  it('refuses to replace an existing export unless --force, leaving it and no temporary file', async () => {
    const before = readFileSync(exportFile);
    const refused = await run(['audit', 'export', '-o', exportFile]);
    assert.equal(refused.code, ExitCode.io);
    assert.match(refused.err, /already exists \(use --force to replace it\)/);
    assert.deepEqual(readFileSync(exportFile), before);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes('export.jsonl') && f !== 'export.jsonl'),
      [],
    );
    await kms.encrypt('audited', Buffer.from('even more'));
    const forced = await run(['audit', 'export', '-o', exportFile, '--force']);
    assert.equal(forced.code, 0, forced.err);
    assert.ok(readFileSync(exportFile).length > before.length);
  });

  it('names the output the user gave, not a temporary file, when it cannot be written', async () => {
    const missing = path.join(dir, 'no-such-directory', 'export.jsonl');
    const r = await run(['audit', 'export', '-o', missing]);
    assert.equal(r.code, ExitCode.io);
    assert.ok(r.err.includes(`${missing}: no such file or directory`), r.err);
    assert.doesNotMatch(r.err, /\.tmp|\.partial|~/);
  });

  it('names the path when the export or the saved checkpoint is a directory', async () => {
    for (const args of [
      ['audit', 'verify', dir, '--key', `@${keyFile}`],
      ['audit', 'verify', exportFile, '--key', `@${keyFile}`, '--previous', dir],
    ]) {
      const r = await run(args);
      assert.equal(r.code, ExitCode.io);
      assert.ok(r.err.includes(`${dir}: is a directory`), r.err);
    }
  });

  it('reports an edited entry with its position and exits 4', async () => {
    const lines = readFileSync(exportFile, 'utf8').split('\n');
    const victim = lines.findIndex((l) => l.includes('kms.crypto.encrypt'));
    assert.ok(victim > 0);
    lines[victim] = (lines[victim] ?? '').replace('kms.crypto.encrypt', 'kms.crypto.decrypt');
    const tampered = path.join(dir, 'tampered.jsonl');
    writeFileSync(tampered, lines.join('\n'));
    const r = await run(['audit', 'verify', tampered, '--key', `@${keyFile}`]);
    assert.equal(r.code, ExitCode.authentication);
    assert.match(r.out, /TAMPERING OR DAMAGE DETECTED/);
    assert.match(r.out, /at entry \d+|at line \d+/);
  });

  it('proves inclusion of an event and consistency with the saved checkpoint', async () => {
    const proof = await run(['audit', 'proof', '1']);
    assert.equal(proof.code, 0, proof.err);
    assert.match(proof.out, /event 1 is included in the signed tree of size \d+/);
    const consistent = await run(['audit', 'consistency', savedCheckpoint]);
    assert.equal(consistent.code, 0, consistent.err);
    assert.match(consistent.out, /extends the saved checkpoint/);
  });

  it('checks proofs against a pinned verifier key (--key), and says when the key came from the server', async () => {
    const unpinned = await run(['audit', 'proof', '1']);
    assert.match(
      unpinned.out,
      /checked with the verifier key the server publishes \(not pinned: give --key\)/,
    );
    const unpinnedConsistency = await run(['audit', 'consistency', savedCheckpoint]);
    assert.match(unpinnedConsistency.out, /checked with the verifier key the server publishes/);

    for (const args of [
      ['audit', 'proof', '1'],
      ['audit', 'consistency', savedCheckpoint],
    ]) {
      const pinned = await run([...args, '--key', `@${keyFile}`]);
      assert.equal(pinned.code, 0, pinned.err);
      assert.match(pinned.out, /checked with the pinned verifier key warden\.local\/audit\+[0-9a-f]{8}/);
      assert.doesNotMatch(pinned.out, /the server publishes/);
      const json = JSON.parse((await run([...args, '--key', `@${keyFile}`, '--json'])).out) as {
        verifierKey: string;
        verifierKeySource: string;
      };
      assert.equal(json.verifierKey, readFileSync(keyFile, 'utf8').trim());
      assert.equal(json.verifierKeySource, 'pinned');

      // A checkpoint key other than the pinned one (what a server answering with its own key pair would sign
      // with) does not verify: exit 4.
      const other = localEd25519NoteSigner(generateKeyPairSync('ed25519').privateKey, 'warden.local/audit');
      const refused = await run([...args, '--key', other.verifierKey]);
      assert.equal(refused.code, ExitCode.authentication, refused.out + refused.err);
      assert.match(refused.err, /does not verify/);
      const malformed = await run([...args, '--key', 'not-a-key']);
      assert.equal(malformed.code, ExitCode.usage, malformed.err);
    }
  });

  it('exits 4 naming what did not verify: checkpoint, saved checkpoint, fork, rolled-back log', async () => {
    const other = localEd25519NoteSigner(generateKeyPairSync('ed25519').privateKey, 'warden.local/audit');
    const wrongKey = await run(['audit', 'checkpoint', '--key', other.verifierKey]);
    assert.equal(wrongKey.code, ExitCode.authentication, wrongKey.err);
    assert.match(wrongKey.err, /the server's checkpoint does not verify: .*no_trusted_signature/);

    const saved = readFileSync(savedCheckpoint, 'utf8');
    const at = saved.lastIndexOf(' ') + 10;
    const forged = path.join(dir, 'forged-checkpoint.txt');
    writeFileSync(forged, saved.slice(0, at) + (saved[at] === 'A' ? 'B' : 'A') + saved.slice(at + 1));
    const badSaved = await run(['audit', 'consistency', forged]);
    assert.equal(badSaved.code, ExitCode.authentication, badSaved.err);
    assert.match(badSaved.err, /the saved checkpoint .* does not verify with the log's key/);

    // Checkpoints the log's own key signed, for a tree this log is not (a fork) and for a bigger one.
    const size = (await warden.audit.log.checkpoint()).treeSize;
    const signed = async (treeSize: number, name: string): Promise<string> => {
      const note = await signCheckpoint(
        { origin: warden.audit.log.origin, treeSize, rootHash: new Uint8Array(32).fill(1), extensions: [] },
        warden.audit.signer,
      );
      const file = path.join(dir, name);
      writeFileSync(file, note);
      return file;
    };
    const fork = await run(['audit', 'consistency', await signed(size - 1, 'fork.txt')]);
    assert.equal(fork.code, ExitCode.authentication, fork.err);
    assert.match(fork.err, /does not extend the saved checkpoint .*\(forked or rewritten log\)/);
    const longer = await run(['audit', 'consistency', await signed(size + 1000, 'longer.txt')]);
    assert.equal(longer.code, ExitCode.authentication, longer.err);
    assert.match(longer.err, /smaller than the saved checkpoint of size \d+: entries were removed/);
  });

  it('looks up the keyed hash of a value read from stdin, and queries events', async () => {
    const hashed = await run(['audit', 'hash'], 'alice@example.com\n');
    assert.equal(hashed.code, 0, hashed.err);
    assert.match(hashed.out.trim(), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.equal((await run(['audit', 'hash', 'alice@example.com'])).code, ExitCode.usage, 'never from argv');
    const found = await run(['audit', 'query', '--action', 'kms.crypto.encrypt', '--json']);
    assert.equal(found.code, 0, found.err);
    const events = (JSON.parse(found.out) as { events: unknown[] }).events;
    assert.ok(events.length >= 2);
    for (const limit of [0, 1]) {
      const limited = await run(['audit', 'query', '--limit', String(limit), '--json']);
      assert.equal(limited.code, 0, limited.err);
      const answer = JSON.parse(limited.out) as { events: unknown[]; more: boolean };
      assert.equal(answer.events.length, limit);
      assert.equal(answer.more, true);
    }
    // A reader of the table must not take the first page for the whole answer.
    const cut = await run(['audit', 'query', '--limit', '2']);
    assert.equal(cut.code, 0, cut.err);
    assert.equal(cut.out.trim().split('\n').length, 2);
    assert.match(cut.err, /more events match: stopped at --limit 2/);
    const whole = await run(['audit', 'query', '--action', 'kms.crypto.encrypt', '--limit', '1000000']);
    assert.equal(whole.code, 0, whole.err);
    assert.equal(whole.err, '');
    // Every read of the log's content is itself in the log: the hash lookup (its hash, never the value), the query.
    const reads = await warden.audit.log.query({ resource: 'audit:log', limit: 1000 });
    const recorded = reads.entries.map(
      (e) => e.entry as unknown as { action: string; details: Record<string, string> },
    );
    const lookup = recorded.find((e) => e.details.lookup === 'hash');
    assert.equal(lookup?.details.hash, hashed.out.trim());
    assert.ok(
      recorded.some((e) => e.action === 'audit.read' && e.details.queriedAction === 'kms.crypto.encrypt'),
    );
    assert.ok(recorded.some((e) => e.action === 'audit.export'));
    assert.ok(!JSON.stringify(recorded).includes('alice@example.com'));
  });
  // Last: it alters the stored log.
  it('does not vouch for an event whose stored body was altered: proof and query exit 4', async () => {
    const { events } = JSON.parse(
      (await run(['audit', 'query', '--action', 'kms.keys.create', '--json'])).out,
    ) as {
      events: { index: number; event: { resource: string } }[];
    };
    const victim = events.find((e) => e.event.resource === 'key:audited');
    assert.ok(victim);
    const db = new DatabaseSync(path.join(dir, 'audit.db'));
    try {
      db.exec('PRAGMA busy_timeout = 5000');
      const row = db.prepare('SELECT body FROM audit_entries WHERE idx = ?').get(victim.index) as {
        body: Uint8Array;
      };
      const edited = Buffer.from(row.body).toString('utf8').replace('key:audited', 'key:innocent');
      db.prepare('UPDATE audit_entries SET body = ? WHERE idx = ?').run(Buffer.from(edited), victim.index);
    } finally {
      db.close();
    }
    const proof = await run(['audit', 'proof', String(victim.index)]);
    assert.equal(proof.code, ExitCode.authentication, proof.out + proof.err);
    assert.match(proof.err, new RegExp(`event ${victim.index}.*does not match its leaf hash`));
    const query = await run(['audit', 'query', '--action', 'kms.keys.create']);
    assert.equal(query.code, ExitCode.authentication, query.out + query.err);
    assert.match(query.out, /key:innocent.*ALTERED/);
    assert.match(query.err, /1 event does not match its leaf hash/);
    // Other events still prove and query as before.
    assert.equal((await run(['audit', 'proof', '0'])).code, 0);
    assert.equal((await run(['audit', 'query', '--action', 'kms.crypto.encrypt'])).code, 0);
  });
});
