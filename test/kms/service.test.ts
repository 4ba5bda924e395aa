import { after, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, createVerify, randomBytes, verify as nodeVerify } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import {
  RsaOaepPublicKey,
  WrappingKey,
  aesKeyWrapPadded,
  open as openSealed,
  AeadKey,
  rsaOaepEncrypt,
} from '../../src/crypto/index.ts';
import {
  AuditUnavailableError,
  ForbiddenError,
  KmsDecryptionError,
  KmsSealedError,
  NotExportableError,
  SoftwareRootOfTrust,
  VersionUnavailableError,
  WrongKeyTypeError,
  openKmsRuntime,
  parseCiphertext,
} from '../../src/kms/index.ts';
import type { KmsRuntime, Principal } from '../../src/kms/index.ts';
import { tempDir } from '../envelope/support.ts';
import { startPostgres } from '../support/postgres.ts';
import type { StoreConfig } from '../../src/store/index.ts';

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };
const user: Principal = { id: 'svc:trainer', roles: ['key-user'], authMethod: 'test' };
const auditor: Principal = { id: 'user:audrey', roles: ['auditor'], authMethod: 'test' };
const DAY = 24 * 60 * 60 * 1000;
const START = Date.UTC(2026, 0, 1);

interface Fixture {
  kms: KmsRuntime;
  dir: string;
  auditFile: string;
  clock: { now: number };
  root: SoftwareRootOfTrust;
  audit: JsonLinesAuditRecorder;
}

type Dialect = 'sqlite' | 'postgres';

/** One PostgreSQL server for the file; each fixture gets two fresh databases (metadata, keystore). */
let postgres: Promise<{ url: string; stop(): Promise<void> }> | undefined;
let databases = 0;
async function postgresDatabases(): Promise<[StoreConfig, StoreConfig]> {
  postgres ??= startPostgres();
  const server = await postgres;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  databases++;
  const names = [`kms_meta_${databases}`, `kms_keys_${databases}`] as const;
  try {
    for (const name of names) await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = (name: string) => server.url.replace(/\/warden_test$/, `/${name}`);
  return [
    { kind: 'postgres', url: url(names[0]) },
    { kind: 'postgres', url: url(names[1]) },
  ];
}
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

async function fixture(dialect: Dialect): Promise<Fixture> {
  const dir = tempDir('warden-kms-');
  const clock = { now: START };
  const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
  const auditFile = path.join(dir, 'audit.jsonl');
  const audit = await JsonLinesAuditRecorder.open(auditFile);
  const [metadata, keystore]: [StoreConfig, StoreConfig] =
    dialect === 'sqlite'
      ? [
          { kind: 'sqlite', path: path.join(dir, 'warden.db') },
          { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
        ]
      : await postgresDatabases();
  const kms = await openKmsRuntime({ metadata, keystore, root, audit, now: () => clock.now });
  return { kms, dir, auditFile, clock, root, audit };
}

const ctx = (s: string) => Buffer.from(s);

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`KMS service on ${dialect}`, async () => {
    const f = await fixture(dialect);
    beforeEach(() => {
      f.clock.now = START;
    });
    const kms = f.kms.service;

    it('encrypts and decrypts small payloads bound to key, version and context, with one error for every failure', async () => {
      await kms.createKey(admin, { name: 'app', type: 'aes256-gcm' });
      const ct = await kms.encrypt(user, 'app', Buffer.from('card 4111'), ctx('tenant=a'));
      assert.match(ct, /^warden:v1:app:1:[A-Za-z0-9_-]+$/);
      assert.deepEqual(await kms.decrypt(user, ct, ctx('tenant=a')), Buffer.from('card 4111'));
      await kms.createKey(admin, { name: 'other', type: 'aes256-gcm' });
      const moved = ct.replace('warden:v1:app:', 'warden:v1:other:');
      const at = ct.length - 2;
      const flipped = ct.slice(0, at) + (ct[at] === 'A' ? 'B' : 'A') + ct.slice(at + 1);
      for (const [bad, c] of [
        [ct, ctx('tenant=b')],
        [ct, ctx('')],
        [moved, ctx('tenant=a')],
        [flipped, ctx('tenant=a')],
        ['warden:v1:app:1:', ctx('tenant=a')],
        ['garbage', ctx('tenant=a')],
      ] as const) {
        await assert.rejects(
          kms.decrypt(user, bad, c),
          (e: unknown) => e instanceof KmsDecryptionError && e.message === 'decryption failed',
        );
      }
    });

    it('rotates: new data uses the latest version, old ciphertexts still decrypt, rewrap keeps the context', async () => {
      await kms.createKey(admin, { name: 'rot', type: 'aes256-gcm' });
      const v1 = await kms.encrypt(user, 'rot', Buffer.from('old'), ctx('c'));
      const v2 = await kms.rotateKey(admin, 'rot');
      assert.equal(v2.version, 2);
      const fresh = await kms.encrypt(user, 'rot', Buffer.from('new'), ctx('c'));
      assert.equal(parseCiphertext(fresh).version, 2);
      assert.deepEqual(await kms.decrypt(user, v1, ctx('c')), Buffer.from('old'));
      const rewrapped = await kms.rewrap(user, v1, ctx('c'));
      assert.equal(parseCiphertext(rewrapped).version, 2);
      assert.deepEqual(await kms.decrypt(user, rewrapped, ctx('c')), Buffer.from('old'));
      await assert.rejects(kms.decrypt(user, rewrapped, ctx('other')), KmsDecryptionError);
      await kms.updateKey(admin, 'rot', { minDecryptionVersion: 2 });
      await assert.rejects(kms.decrypt(user, v1, ctx('c')), VersionUnavailableError);
      await assert.rejects(kms.rewrap(user, v1, ctx('c')), VersionUnavailableError);
    });

    it('serialises concurrent rotations: every version number is used exactly once', async () => {
      await kms.createKey(admin, { name: 'busy', type: 'hmac-sha256' });
      const versions = await Promise.all(Array.from({ length: 10 }, () => kms.rotateKey(admin, 'busy')));
      assert.deepEqual(
        versions.map((v) => v.version).sort((a, b) => a - b),
        [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
      );
      assert.equal((await kms.getKey(admin, 'busy')).key.latestVersion, 11);
    });

    it('generates data keys with and without the plaintext, and opens them', async () => {
      const withPlain = await kms.generateDataKey(user, 'app', ctx('file=a'));
      assert.equal(withPlain.plaintext?.length, 32);
      assert.deepEqual(
        await kms.decryptDataKey(user, withPlain.ciphertext, ctx('file=a')),
        withPlain.plaintext,
      );
      const wrappedOnly = await kms.generateDataKey(user, 'app', ctx('file=b'), { includePlaintext: false });
      assert.equal(wrappedOnly.plaintext, undefined);
      assert.equal((await kms.decryptDataKey(user, wrappedOnly.ciphertext, ctx('file=b'))).length, 32);
      const small = await kms.encrypt(user, 'app', Buffer.from('not a key'));
      await assert.rejects(kms.decryptDataKey(user, small), KmsDecryptionError);
    });

    it('signs with Ed25519 and ECDSA P-256/P-384 (verifiable with the exported public key) and computes HMACs', async () => {
      const message = Buffer.from('model digest sha256:abc');
      for (const type of ['ed25519', 'ecdsa-p256', 'ecdsa-p384'] as const) {
        await kms.createKey(admin, { name: `sig-${type}`, type });
        const { signature, keyVersion } = await kms.sign(user, `sig-${type}`, message);
        const { pem } = await kms.publicKey(user, `sig-${type}`, keyVersion);
        const pub = createPublicKey(pem);
        const ok =
          type === 'ed25519'
            ? nodeVerify(null, message, pub, signature)
            : createVerify(type === 'ecdsa-p256' ? 'sha256' : 'sha384')
                .update(message)
                .verify(pub, signature);
        assert.ok(ok, type);
        assert.equal(await kms.verify(user, `sig-${type}`, message, signature), true);
        assert.equal(await kms.verify(user, `sig-${type}`, Buffer.from('other'), signature), false);
      }
      await kms.createKey(admin, { name: 'mac', type: 'hmac-sha256' });
      const { mac } = await kms.hmac(user, 'mac', Buffer.from('x'));
      assert.equal(await kms.verifyHmac(user, 'mac', Buffer.from('x'), mac), true);
      assert.equal(await kms.verifyHmac(user, 'mac', Buffer.from('y'), mac), false);
      await assert.rejects(kms.sign(user, 'mac', message), WrongKeyTypeError);
      await assert.rejects(kms.encrypt(user, 'sig-ed25519', message), WrongKeyTypeError);
    });

    it('disabled versions refuse use until enabled again', async () => {
      await kms.createKey(admin, { name: 'toggle', type: 'aes256-gcm' });
      const ct = await kms.encrypt(user, 'toggle', Buffer.from('x'));
      await kms.disable(admin, 'toggle');
      await assert.rejects(kms.encrypt(user, 'toggle', Buffer.from('x')), VersionUnavailableError);
      await assert.rejects(kms.decrypt(user, ct), VersionUnavailableError);
      await kms.enable(admin, 'toggle');
      assert.deepEqual(await kms.decrypt(user, ct), Buffer.from('x'));
    });

    it('crypto-shreds: a destroyed version leaves no material in the keystore files and nothing it protected opens', async () => {
      await kms.createKey(admin, { name: 'shred', type: 'aes256-gcm' });
      const ct = await kms.encrypt(user, 'shred', Buffer.from('patient record'));
      const dataKey = await kms.generateDataKey(user, 'shred');
      const wrapped = await f.kms.repository.getWrappedMaterial('shred', 1);
      assert.ok(wrapped !== undefined && wrapped.length > 32);
      const keystoreBytes = () =>
        Buffer.concat(
          readdirSync(f.dir)
            .filter((n) => n.startsWith('keystore.db'))
            .map((n) => readFileSync(path.join(f.dir, n))),
        );
      // The file-level check is SQLite's: PostgreSQL keeps dead tuples until VACUUM (see docs/store.md).
      const onFiles = dialect === 'sqlite';
      assert.ok(
        !onFiles || keystoreBytes().includes(wrapped),
        'the wrapped material is in the keystore before destruction',
      );
      await kms.rotateKey(admin, 'shred');
      const scheduled = await kms.scheduleDestruction(admin, 'shred', 1, 7);
      assert.equal(scheduled.state, 'scheduled_destruction');
      await assert.rejects(kms.decrypt(user, ct), VersionUnavailableError);
      await kms.cancelDestruction(admin, 'shred', 1);
      await kms.enable(admin, 'shred', 1);
      assert.deepEqual(await kms.decrypt(user, ct), Buffer.from('patient record'));
      await kms.scheduleDestruction(admin, 'shred', 1, 7);
      f.clock.now += 8 * DAY;
      const maintenance = await kms.runMaintenance();
      assert.ok(maintenance.destroyed.includes('shred:1'));
      assert.equal(await f.kms.repository.getWrappedMaterial('shred', 1), undefined);
      assert.equal(
        onFiles && keystoreBytes().includes(wrapped),
        false,
        'no copy of the wrapped material survives in the keystore files',
      );
      for (const op of [
        () => kms.decrypt(user, ct),
        () => kms.decryptDataKey(user, dataKey.ciphertext),
        () => kms.rewrap(user, ct),
      ]) {
        await assert.rejects(op(), VersionUnavailableError);
      }
    });

    it('rotates on schedule, including rotations missed while down, and raises the decryption floor after a grace period', async () => {
      await kms.createKey(admin, {
        name: 'sched',
        type: 'aes256-gcm',
        rotationPeriodDays: 30,
        autoFloorGraceDays: 10,
      });
      const before = (await kms.getKey(admin, 'sched')).key;
      assert.equal(before.nextRotationAt, f.clock.now + 30 * DAY);
      f.clock.now += 200 * DAY; // down for 200 days: one rotation at start-up, not six
      const result = await kms.runMaintenance();
      assert.ok(result.rotated.includes('sched'));
      const after = (await kms.getKey(admin, 'sched')).key;
      assert.equal(after.latestVersion, 2);
      assert.equal(after.nextRotationAt, f.clock.now + 30 * DAY);
      assert.ok(!(await kms.runMaintenance()).rotated.includes('sched'));
      f.clock.now += 11 * DAY;
      const floors = await kms.runMaintenance();
      assert.ok(floors.floorsRaised.includes('sched:2'));
      assert.equal((await kms.getKey(admin, 'sched')).key.minDecryptionVersion, 2);
    });

    it('enforces built-in roles through the one authorisation call-out, and audits denials', async () => {
      await assert.rejects(kms.createKey(user, { name: 'nope', type: 'aes256-gcm' }), ForbiddenError);
      await assert.rejects(kms.encrypt(auditor, 'app', Buffer.from('x')), ForbiddenError);
      await assert.rejects(kms.exportKey(user, 'app'), ForbiddenError);
      assert.ok((await kms.listKeys(auditor)).some((k) => k.name === 'app'));
      const lines = readFileSync(f.auditFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(
        lines.some(
          (e) =>
            e.action === 'kms.keys.create' &&
            e.outcome === 'denied' &&
            (e.principal as { id: string }).id === 'svc:trainer',
        ),
      );
      assert.ok(
        lines.some((e) => e.action === 'kms.crypto.encrypt' && e.outcome === 'success' && e.keyVersion === 1),
      );
      assert.ok(
        lines.some(
          (e) =>
            e.action === 'kms.crypto.decrypt' && e.outcome === 'failure' && e.reason === 'decryption_failed',
        ),
      );
    });

    it('batches return per-item results and per-item errors', async () => {
      const items = await kms.encryptBatch(user, 'app', [
        { plaintext: Buffer.from('a') },
        { plaintext: Buffer.from('b'), context: ctx('k') },
      ]);
      const cts = items.map((i) => {
        assert.ok(i.ok, 'every item encrypts');
        return i.value;
      });
      const decrypted = await kms.decryptBatch(user, [
        { ciphertext: cts[0]! },
        { ciphertext: cts[1]! }, // missing context
        { ciphertext: 'warden:v1:nosuchkey:1:AAAA' },
      ]);
      assert.deepEqual(decrypted[0], { ok: true, value: Buffer.from('a') });
      assert.deepEqual(decrypted[1], {
        ok: false,
        error: { code: 'decryption_failed', message: 'decryption failed' },
      });
      assert.equal(decrypted[2]?.ok, false);
    });

    it('imports keys (BYOK: RSA-OAEP-SHA256 || AES-KWP) and exports only exportable keys', async () => {
      const wrappingPem = await kms.importWrappingKey(admin);
      const target = randomBytes(32);
      const ephemeral = randomBytes(32);
      const blob = Buffer.concat([
        rsaOaepEncrypt(RsaOaepPublicKey.fromPem(wrappingPem), ephemeral),
        aesKeyWrapPadded(WrappingKey.fromBytes(ephemeral), target),
      ]);
      const info = await kms.importKey(admin, { name: 'byok', type: 'aes256-gcm', blob, exportable: true });
      assert.equal(info.versions[0]?.origin, 'imported');
      // The KMS really holds our key: its ciphertext opens locally with the imported bytes.
      const ct = parseCiphertext(await kms.encrypt(user, 'byok', Buffer.from('hello'), ctx('x')));
      const aad = Buffer.concat([
        Buffer.from('warden/kms/v1 ciphertext\0', 'ascii'),
        Buffer.from([0, 0, 0, 1, 0, 4, 0, 0, 0, 1]),
        Buffer.from('byok'),
        ctx('x'),
      ]);
      assert.deepEqual(openSealed(AeadKey.fromBytes(target), ct.sealed, aad), Buffer.from('hello'));
      assert.deepEqual((await kms.exportKey(admin, 'byok')).material, target);
      await assert.rejects(kms.exportKey(admin, 'app'), NotExportableError);
      const corrupted = Buffer.from(blob);
      corrupted[530] = corrupted[530]! ^ 1;
      await assert.rejects(
        kms.importKey(admin, { name: 'byok2', type: 'aes256-gcm', blob: corrupted }),
        KmsDecryptionError,
      );
    });

    it('refuses every key operation while sealed', async () => {
      const ct = await kms.encrypt(user, 'app', Buffer.from('x'));
      await f.root.seal();
      // No forgetKeys(): keys cached before the seal must not be usable after it.
      await assert.rejects(kms.encrypt(user, 'app', Buffer.from('x')), KmsSealedError);
      await assert.rejects(kms.decrypt(user, ct), KmsSealedError);
      await assert.rejects(
        kms.createKey(admin, { name: 'while-sealed', type: 'aes256-gcm' }),
        KmsSealedError,
      );
    });

    it('refuses every change to a key while sealed: sealing stops a stolen token from shredding keys', async () => {
      const g = await fixture(dialect);
      await g.kms.service.createKey(admin, { name: 'brake', type: 'aes256-gcm' });
      await g.kms.service.rotateKey(admin, 'brake');
      await g.kms.service.scheduleDestruction(admin, 'brake', 1);
      await g.root.seal();
      const s = g.kms.service;
      for (const change of [
        () => s.scheduleDestruction(admin, 'brake', 2, 0),
        () => s.cancelDestruction(admin, 'brake', 1),
        () => s.disable(admin, 'brake'),
        () => s.disable(admin, 'brake', 2),
        () => s.enable(admin, 'brake'),
        () => s.updateKey(admin, 'brake', { minDecryptionVersion: 2 }),
      ]) {
        await assert.rejects(change(), KmsSealedError);
      }
      const info = await s.getKey(admin, 'brake');
      assert.deepEqual(
        info.versions.map((v) => v.state),
        ['scheduled_destruction', 'enabled'],
      );
      assert.equal(info.key.minDecryptionVersion, 1);
      await g.kms.close();
    });

    it('fails closed when the audit event cannot be recorded', async () => {
      const g = await fixture(dialect);
      await g.kms.service.createKey(admin, { name: 'k', type: 'aes256-gcm' });
      await g.audit.close();
      await assert.rejects(g.kms.service.encrypt(user, 'k', Buffer.from('x')), AuditUnavailableError);
      await assert.rejects(
        g.kms.service.createKey(admin, { name: 'k2', type: 'aes256-gcm' }),
        AuditUnavailableError,
      );
      await g.kms.close();
    });
  });
}
