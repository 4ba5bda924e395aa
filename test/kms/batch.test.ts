import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import { AuditUnavailableError, SoftwareRootOfTrust, openKmsRuntime } from '../../src/kms/index.ts';
import type { KmsRuntime, Principal } from '../../src/kms/index.ts';
import { PolicyEngine, PolicyStore, cedarKmsAuthorizer } from '../../src/policy/index.ts';
import { tempDir } from '../envelope/support.ts';

/**
 * Batches are one authorised, audited operation: each distinct key is authorised once, and one audit event per
 * batch says what happened (counts, error codes, keys and versions), never what was encrypted.
 */

const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };
const user: Principal = {
  id: 'user:trainer',
  roles: ['key-user'],
  authMethod: 'test',
  request: { id: 'req-42', sourceIp: '10.0.0.7', userAgent: 'batch-test' },
};

type Event = Record<string, unknown> & { details?: Record<string, unknown> };

interface Fixture {
  kms: KmsRuntime;
  /** The resources the KMS asked the policy engine about, in order. */
  asked: string[];
  audit: JsonLinesAuditRecorder;
  auditFile: string;
}

/** A KMS on SQLite whose Cedar policies forbid every use of the key `vault` (and allow `key-user` the rest). */
async function fixture(): Promise<Fixture> {
  const dir = tempDir('warden-kms-batch-');
  const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
  const auditFile = path.join(dir, 'audit.jsonl');
  const audit = await JsonLinesAuditRecorder.open(auditFile);
  const store = new PolicyStore();
  store.add('deny-vault', 'forbid (principal, action, resource == Warden::Key::"vault");');
  const cedar = cedarKmsAuthorizer(new PolicyEngine({ store }));
  const asked: string[] = [];
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'warden.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root,
    audit,
    authorizer: {
      authorize(principal, action, resource) {
        asked.push(resource);
        return cedar.authorize(principal, action, resource);
      },
    },
  });
  return { kms, asked, audit, auditFile };
}

function events(f: Fixture): Event[] {
  return readFileSync(f.auditFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Event);
}

/** The one event a batch recorded. */
function only(list: readonly Event[]): Event {
  assert.equal(list.length, 1);
  const [event] = list;
  assert.ok(event !== undefined);
  return event;
}

/** Runs `fn` and returns the audit events it recorded. */
async function recorded<T>(f: Fixture, fn: () => Promise<T>): Promise<{ result: T; events: Event[] }> {
  const before = events(f).length;
  const result = await fn();
  return { result, events: events(f).slice(before) };
}

describe('KMS batches', async () => {
  const f = await fixture();
  const kms = f.kms.service;
  before(async () => {
    for (const name of ['app', 'billing']) await kms.createKey(admin, { name, type: 'aes256-gcm' });
    await kms.createKey(admin, { name: 'signer', type: 'ed25519' });
    await kms.createKey(admin, { name: 'mac', type: 'hmac-sha256' });
  });
  after(async () => {
    await f.kms.close();
    await f.audit.close();
  });

  it('records one event for a whole batch, with counts and the key version, and nothing secret', async () => {
    const plaintexts = Array.from({ length: 50 }, (_, i) => Buffer.from(`secret-plaintext-${i}`));
    const { result, events: recordedEvents } = await recorded(f, () =>
      kms.encryptBatch(
        user,
        'app',
        plaintexts.map((plaintext) => ({ plaintext, context: Buffer.from('tenant=7') })),
      ),
    );
    assert.equal(result.length, 50);
    assert.ok(result.every((r) => r.ok && r.value.startsWith('warden:v1:app:1:')));
    assert.equal(recordedEvents.length, 1);
    const event = only(recordedEvents);
    assert.equal(event.action, 'kms.crypto.encrypt');
    assert.equal(event.resource, 'key:app');
    assert.equal(event.outcome, 'success');
    assert.equal(event.reason, undefined);
    assert.equal(event.keyVersion, 1);
    assert.equal(event.requestId, 'req-42');
    assert.equal(event.sourceIp, '10.0.0.7');
    assert.equal(event.userAgent, 'batch-test');
    assert.deepEqual(event.principal, { id: 'user:trainer', authMethod: 'test' });
    assert.deepEqual(event.details, { batch: true, items: 50, succeeded: 50, keys: 'app:1' });
    const text = JSON.stringify(event);
    for (const p of plaintexts) {
      assert.ok(!text.includes(p.toString()) && !text.includes(p.toString('base64')));
    }
    for (const r of result) assert.ok(r.ok && !text.includes(r.value.split(':')[4] ?? '?'));

    const decrypted = await recorded(f, () =>
      kms.decryptBatch(
        user,
        result.map((r) => ({ ciphertext: r.ok ? r.value : '', context: Buffer.from('tenant=7') })),
      ),
    );
    assert.deepEqual(
      decrypted.result.map((r) => (r.ok ? r.value.toString() : r.error.code)),
      plaintexts.map((p) => p.toString()),
    );
    assert.equal(decrypted.events.length, 1);
    assert.equal(only(decrypted.events).action, 'kms.crypto.decrypt');
    assert.deepEqual(only(decrypted.events).details, {
      batch: true,
      items: 50,
      succeeded: 50,
      keys: 'app:1',
    });
  });

  it('authorises each distinct key of a decrypt batch once; only the denied key’s items are forbidden', async () => {
    const app = await kms.encrypt(user, 'app', Buffer.from('a'));
    await kms.rotateKey(admin, 'billing');
    const billing = await kms.encrypt(user, 'billing', Buffer.from('b'));
    // A well-formed ciphertext naming the forbidden key: refused before anything about it is looked up.
    const vault = app.replace('warden:v1:app:', 'warden:v1:vault:');
    f.asked.length = 0;
    const { result, events: recordedEvents } = await recorded(f, () =>
      kms.decryptBatch(user, [
        { ciphertext: app },
        { ciphertext: vault },
        { ciphertext: billing },
        { ciphertext: vault },
        { ciphertext: 'not a ciphertext' },
        { ciphertext: app, context: Buffer.from('wrong') },
      ]),
    );
    assert.deepEqual(
      result.map((r) => (r.ok ? r.value.toString() : r.error.code)),
      ['a', 'forbidden', 'b', 'forbidden', 'decryption_failed', 'decryption_failed'],
    );
    assert.deepEqual(f.asked, ['key:app', 'key:vault', 'key:billing', 'key:?']);
    const forbidden = result[1];
    assert.ok(forbidden !== undefined && !forbidden.ok);
    assert.equal(forbidden.error.message, 'not allowed to crypto.decrypt');
    assert.equal(recordedEvents.length, 1);
    const event = only(recordedEvents);
    assert.equal(event.resource, 'key:*');
    assert.equal(event.outcome, 'denied');
    assert.equal(event.reason, 'forbidden');
    assert.equal(event.keyVersion, undefined);
    assert.deepEqual(event.details, {
      batch: true,
      items: 6,
      succeeded: 2,
      'errors.decryption_failed': 2,
      'errors.forbidden': 2,
      keys: 'app:1,billing:2',
      denied: 'vault',
    });
  });

  it('denies a single-key batch per item, without running any item', async () => {
    const { result, events: recordedEvents } = await recorded(f, () =>
      kms.encryptBatch(user, 'vault', [{ plaintext: Buffer.from('x') }, { plaintext: Buffer.from('y') }]),
    );
    assert.deepEqual(
      result.map((r) => (r.ok ? 'ok' : r.error.code)),
      ['forbidden', 'forbidden'],
    );
    assert.equal(recordedEvents.length, 1);
    assert.equal(only(recordedEvents).resource, 'key:vault');
    assert.equal(only(recordedEvents).outcome, 'denied');
    assert.deepEqual(only(recordedEvents).details, {
      batch: true,
      items: 2,
      succeeded: 0,
      'errors.forbidden': 2,
      denied: 'vault',
    });
  });

  it('reports mixed per-item errors: one code as the reason, several as multiple_errors', async () => {
    const tooBig = Buffer.alloc(64 * 1024 + 1);
    const one = await recorded(f, () =>
      kms.encryptBatch(user, 'app', [{ plaintext: Buffer.from('ok') }, { plaintext: tooBig }]),
    );
    assert.deepEqual(
      one.result.map((r) => (r.ok ? 'ok' : r.error.code)),
      ['ok', 'invalid_request'],
    );
    assert.equal(only(one.events).outcome, 'failure');
    assert.equal(only(one.events).reason, 'invalid_request');

    const ct = await kms.encrypt(user, 'app', Buffer.from('old'));
    await kms.disable(admin, 'app', 1);
    const rewrapped = await recorded(f, () =>
      kms.rewrapBatch(user, [
        { ciphertext: ct },
        { ciphertext: `${ct}A` },
        { ciphertext: 'warden:v1:nosuchkey:1:AAAA' },
      ]),
    );
    await kms.enable(admin, 'app', 1);
    assert.deepEqual(
      rewrapped.result.map((r) => (r.ok ? 'ok' : r.error.code)),
      ['version_unavailable', 'version_unavailable', 'key_not_found'],
    );
    assert.equal(rewrapped.events.length, 1);
    assert.equal(only(rewrapped.events).outcome, 'failure');
    assert.equal(only(rewrapped.events).reason, 'multiple_errors');
    assert.deepEqual(only(rewrapped.events).details, {
      batch: true,
      items: 3,
      succeeded: 0,
      'errors.key_not_found': 1,
      'errors.version_unavailable': 2,
    });
  });

  it('audits every batch operation once: data keys, signatures, MACs and their verification', async () => {
    const dataKeys = await recorded(f, () =>
      kms.generateDataKeyBatch(user, 'app', [{}, { context: Buffer.from('c') }], { includePlaintext: false }),
    );
    assert.ok(dataKeys.result.every((r) => r.ok && r.value.plaintext === undefined));
    const notADataKey = await kms.encrypt(user, 'app', Buffer.from('not 32 bytes'));
    const opened = await recorded(f, () =>
      kms.decryptDataKeyBatch(user, [
        { ciphertext: dataKeys.result[0]?.ok === true ? dataKeys.result[0].value.ciphertext : '' },
        { ciphertext: dataKeys.result[1]?.ok === true ? dataKeys.result[1].value.ciphertext : '' },
        { ciphertext: notADataKey },
      ]),
    );
    assert.deepEqual(
      opened.result.map((r) => (r.ok ? r.value.length : r.error.code)),
      [32, 'decryption_failed', 'decryption_failed'],
    );
    const messages = [Buffer.from('m1'), Buffer.from('m2')];
    const signatures = await recorded(f, () =>
      kms.signBatch(
        user,
        'signer',
        messages.map((message) => ({ message })),
      ),
    );
    const signed = signatures.result.map((r) => (r.ok ? r.value.signature : Buffer.alloc(64)));
    const verified = await recorded(f, () =>
      kms.verifyBatch(user, 'signer', [
        { message: messages[0] ?? Buffer.alloc(0), signature: signed[0] ?? Buffer.alloc(0) },
        { message: messages[0] ?? Buffer.alloc(0), signature: signed[1] ?? Buffer.alloc(0), version: 1 },
        { message: messages[1] ?? Buffer.alloc(0), signature: signed[1] ?? Buffer.alloc(0), version: 9 },
      ]),
    );
    assert.deepEqual(
      verified.result.map((r) => (r.ok ? r.value : r.error.code)),
      [true, false, 'key_not_found'],
    );
    const macs = await recorded(f, () => kms.hmacBatch(user, 'mac', [{ data: Buffer.from('d') }]));
    const mac = macs.result[0]?.ok === true ? macs.result[0].value.mac : Buffer.alloc(32);
    const checked = await recorded(f, () =>
      kms.verifyHmacBatch(user, 'mac', [
        { data: Buffer.from('d'), mac },
        { data: Buffer.from('e'), mac },
      ]),
    );
    assert.deepEqual(
      checked.result.map((r) => (r.ok ? r.value : r.error.code)),
      [true, false],
    );
    const all = [dataKeys, opened, signatures, verified, macs, checked];
    assert.deepEqual(
      all.map((r) => r.events.map((e) => `${String(e.action)} ${String(e.outcome)}`)),
      [
        ['kms.crypto.generate-data-key success'],
        ['kms.crypto.decrypt-data-key failure'],
        ['kms.crypto.sign success'],
        ['kms.crypto.verify failure'],
        ['kms.crypto.hmac success'],
        ['kms.crypto.verify-hmac success'],
      ],
    );
    assert.deepEqual(only(verified.events).details, {
      batch: true,
      items: 3,
      succeeded: 2,
      'errors.key_not_found': 1,
      keys: 'signer:1',
    });
  });

  it('lists at most 64 key versions in the event and counts the rest', async () => {
    await kms.createKey(admin, { name: 'many', type: 'aes256-gcm' });
    const ciphertexts = [await kms.encrypt(user, 'many', Buffer.from('v1'))];
    for (let v = 2; v <= 66; v++) {
      await kms.rotateKey(admin, 'many');
      ciphertexts.push(await kms.encrypt(user, 'many', Buffer.from(`v${v}`)));
    }
    const { result, events: recordedEvents } = await recorded(f, () =>
      kms.decryptBatch(
        user,
        ciphertexts.map((ciphertext) => ({ ciphertext })),
      ),
    );
    assert.ok(result.every((r, i) => r.ok && r.value.toString() === `v${i + 1}`));
    const details = only(recordedEvents).details ?? {};
    assert.equal(details.distinctKeys, 66);
    const listed = String(details.keys).split(',');
    assert.equal(listed.length, 64);
    assert.deepEqual(listed, [...listed].sort());
    assert.ok(listed.every((k) => /^many:\d+$/.test(k)));
    assert.equal(only(recordedEvents).keyVersion, undefined);
  });

  it('refuses malformed batches before authorising or auditing anything', async () => {
    const { events: recordedEvents } = await recorded(f, async () => {
      await assert.rejects(kms.encryptBatch(user, 'app', []), { code: 'invalid_request' });
      const tooMany = Array.from({ length: 1001 }, () => ({ plaintext: Buffer.from('x') }));
      await assert.rejects(kms.encryptBatch(user, 'app', tooMany), { code: 'invalid_request' });
      await assert.rejects(kms.decryptBatch(user, 'nope' as unknown as { ciphertext: string }[]), {
        code: 'invalid_request',
      });
    });
    assert.deepEqual(recordedEvents, []);
  });

  it('every item result matches the single call, and the event counts add up (property)', async () => {
    const good = await kms.encrypt(user, 'app', Buffer.from('p'));
    const kinds = ['good', 'vault', 'garbage', 'wrong-context', 'missing-key'] as const;
    const ciphertextOf: Record<(typeof kinds)[number], string> = {
      good,
      vault: good.replace(':app:', ':vault:'),
      garbage: 'garbage',
      'wrong-context': good,
      'missing-key': good.replace(':app:', ':nosuchkey:'),
    };
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...kinds), { minLength: 1, maxLength: 12 }),
        async (picked) => {
          const items = picked.map((kind) => ({
            ciphertext: ciphertextOf[kind],
            ...(kind === 'wrong-context' ? { context: Buffer.from('x') } : {}),
          }));
          const { result, events: recordedEvents } = await recorded(f, () => kms.decryptBatch(user, items));
          const singles = await Promise.all(
            items.map((item) =>
              kms.decrypt(user, item.ciphertext, item.context).then(
                (value) => value.toString(),
                (err: unknown) => (err as { code: string }).code,
              ),
            ),
          );
          assert.deepEqual(
            result.map((r) => (r.ok ? r.value.toString() : r.error.code)),
            singles,
          );
          assert.equal(recordedEvents.length, 1);
          const details = only(recordedEvents).details ?? {};
          const errorCounts = Object.entries(details)
            .filter(([k]) => k.startsWith('errors.'))
            .reduce((sum, [, v]) => sum + Number(v), 0);
          assert.equal(details.items, items.length);
          assert.equal(Number(details.succeeded) + errorCounts, items.length);
          assert.equal(details.denied, picked.includes('vault') ? 'vault' : undefined);
          assert.equal(
            only(recordedEvents).outcome,
            picked.includes('vault') ? 'denied' : errorCounts > 0 ? 'failure' : 'success',
          );
        },
      ),
      { numRuns: 25 },
    );
  });

  it('fails closed: when the batch event cannot be recorded no item result is released', async () => {
    const g = await fixture();
    try {
      await g.kms.service.createKey(admin, { name: 'k', type: 'aes256-gcm' });
      const ct = await g.kms.service.encrypt(user, 'k', Buffer.from('x'));
      await g.audit.close();
      await assert.rejects(
        g.kms.service.encryptBatch(user, 'k', [{ plaintext: Buffer.from('x') }]),
        AuditUnavailableError,
      );
      await assert.rejects(g.kms.service.decryptBatch(user, [{ ciphertext: ct }]), AuditUnavailableError);
      await assert.rejects(g.kms.service.generateDataKeyBatch(user, 'k', [{}]), AuditUnavailableError);
      // Denied and failed items are no exception: the batch is refused as a whole.
      await assert.rejects(
        g.kms.service.encryptBatch(user, 'vault', [{ plaintext: Buffer.from('x') }]),
        AuditUnavailableError,
      );
    } finally {
      await g.kms.close();
    }
  });
});
