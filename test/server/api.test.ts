import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  verify as nodeVerify,
} from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import { KmsClient, KmsClientError } from '../../src/client/index.ts';
import type { KeyInfo as ClientKeyInfo } from '../../src/client/index.ts';
import { listRoutes } from '../../src/server/index.ts';
import type { KeyInfoView } from '../../src/server/index.ts';
import { startHarness } from './fixture.ts';
import type { Harness } from './fixture.ts';
import { alterChar } from '../support/tamper.ts';

let h: Harness;
let client: KmsClient;
/** Secrets sent during the tests; none may appear in the server's logs. */
const secrets: string[] = [];

function secret(label: string): Buffer {
  const value = Buffer.from(`${label}-${randomBytes(12).toString('hex')}`);
  secrets.push(value.toString('utf8'), value.toString('base64'));
  return value;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: { error?: { code: string; message: string }; [k: string]: unknown };
}

/** A raw HTTPS request, for what the SDK would never send. */
function raw(
  method: string,
  path: string,
  options: { body?: string | object; token?: string | null; contentType?: string } = {},
): Promise<RawResponse> {
  const token = options.token === undefined ? h.token : options.token;
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string'
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: h.port, method, path, ca: h.ca, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            json: JSON.parse(text) as RawResponse['json'],
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function assertError(r: RawResponse, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.deepEqual(Object.keys(r.json), ['error']);
  assert.equal(r.json.error?.code, code);
  assert.equal(typeof r.json.error.message, 'string');
}

async function rejectsWithCode(promise: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof KmsClientError, String(err));
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    return true;
  });
}

before(async () => {
  h = await startHarness();
  client = new KmsClient({ address: h.address, token: h.token, ca: h.ca });
});

after(async () => {
  await client.close();
  await h.close();
});

describe('KMS HTTP API through the SDK (TLS 1.3)', () => {
  it('serves health, status and its OpenAPI document without a token', async () => {
    const anonymous = new KmsClient({ address: h.address, ca: h.ca });
    try {
      assert.deepEqual(await anonymous.health(), { status: 'ok', initialized: true, sealed: false });
      assert.equal((await anonymous.status()).sealed, false);
      const doc = await anonymous.openapi();
      assert.equal(doc.openapi, '3.1.0');
      await rejectsWithCode(anonymous.listKeys(), 401, 'unauthenticated');
    } finally {
      await anonymous.close();
    }
  });

  it('administers keys: create, list, show, update, rotate, disable, enable, destroy, cancel', async () => {
    const created = await client.createKey({
      name: 'orders',
      type: 'aes256-gcm',
      rotationPeriodDays: 30,
      description: 'order data',
    });
    assert.equal(created.key.name, 'orders');
    assert.equal(created.key.rotationPeriodDays, 30);
    assert.equal(created.versions[0]?.state, 'enabled');
    assert.match(created.key.createdAt, /^\d{4}-\d\d-\d\dT/);
    await rejectsWithCode(client.createKey({ name: 'orders', type: 'aes256-gcm' }), 409, 'key_exists');

    assert.deepEqual(
      (await client.listKeys()).map((k) => k.name),
      ['orders'],
    );
    const v2 = await client.rotateKey('orders');
    assert.equal(v2.version, 2);
    const shown = await client.getKey('orders');
    assert.equal(shown.key.latestVersion, 2);
    assert.equal(shown.versions.length, 2);

    const updated = await client.updateKey('orders', {
      minDecryptionVersion: 2,
      rotationPeriodDays: 0,
      autoFloorGraceDays: 10,
      description: 'changed',
    });
    assert.equal(updated.minDecryptionVersion, 2);
    assert.equal(updated.rotationPeriodDays, null);
    assert.equal(updated.autoFloorGraceDays, 10);
    assert.equal((await client.updateKey('orders', { autoFloorGraceDays: null })).autoFloorGraceDays, null);

    assert.deepEqual(
      (await client.disableKey('orders', 1)).map((v) => [v.version, v.state]),
      [[1, 'disabled']],
    );
    assert.deepEqual(
      (await client.disableKey('orders')).map((v) => v.version),
      [2],
    );
    assert.equal((await client.enableKey('orders')).length, 2);

    const scheduled = await client.destroyVersion('orders', 1, 3);
    assert.equal(scheduled.state, 'scheduled_destruction');
    assert.ok(scheduled.destroyAt !== null && Date.parse(scheduled.destroyAt) > Date.now() + 2 * 86400_000);
    assert.equal((await client.cancelDestroy('orders', 1)).state, 'disabled');
    const destroyed = await client.destroyVersion('orders', 1, 0);
    assert.equal(destroyed.state, 'destroyed');
    await rejectsWithCode(client.enableKey('orders', 1), 409, 'version_unavailable');
    await rejectsWithCode(client.getKey('missing'), 404, 'key_not_found');
  });

  it('encrypts, decrypts, rewraps and handles data keys, with and without context', async () => {
    await client.createKey({ name: 'app', type: 'aes256-gcm' });
    const plaintext = secret('plaintext');
    const context = Buffer.from('tenant=42');
    const ciphertext = await client.encrypt('app', plaintext, context);
    assert.match(ciphertext, /^warden:v1:app:1:[A-Za-z0-9_-]+$/);
    assert.deepEqual(await client.decrypt(ciphertext, context), plaintext);
    await rejectsWithCode(client.decrypt(ciphertext), 400, 'decryption_failed');
    await rejectsWithCode(client.decrypt('garbage'), 400, 'decryption_failed');
    assert.deepEqual(await client.decrypt(await client.encrypt('app', new Uint8Array(0))), Buffer.alloc(0));

    await client.rotateKey('app');
    const rewrapped = await client.rewrap(ciphertext, context);
    assert.match(rewrapped, /^warden:v1:app:2:/);
    assert.deepEqual(await client.decrypt(rewrapped, context), plaintext);

    const dataKey = await client.generateDataKey('app', { context });
    const clearKey = dataKey.plaintext;
    assert.ok(clearKey !== undefined);
    assert.equal(clearKey.length, 32);
    assert.equal(dataKey.keyVersion, 2);
    secrets.push(clearKey.toString('base64'));
    assert.deepEqual(await client.decryptDataKey(dataKey.ciphertext, context), dataKey.plaintext);
    const wrappedOnly = await client.generateDataKey('app', { plaintext: false });
    assert.equal(wrappedOnly.plaintext, undefined);
    assert.equal((await client.decryptDataKey(wrappedOnly.ciphertext)).length, 32);
    // A ciphertext of something other than a data key is not a data key.
    await rejectsWithCode(client.decryptDataKey(ciphertext, context), 400, 'decryption_failed');
  });

  it('signs and verifies with Ed25519 and ECDSA, and serves public keys', async () => {
    for (const type of ['ed25519', 'ecdsa-p256', 'ecdsa-p384'] as const) {
      const name = `signer-${type}`;
      await client.createKey({ name, type });
      const message = secret('message');
      const { signature, keyVersion } = await client.sign(name, message);
      assert.equal(keyVersion, 1);
      assert.equal(await client.verify(name, message, signature), true);
      assert.equal(await client.verify(name, Buffer.from('other'), signature, 1), false);
      const { pem } = await client.publicKey(name);
      const publicKey = createPublicKey(pem);
      const hash = type === 'ed25519' ? null : type === 'ecdsa-p256' ? 'sha256' : 'sha384';
      assert.equal(nodeVerify(hash, message, publicKey, signature), true, type);
      assert.equal((await client.publicKey(name, 1)).keyVersion, 1);
    }
    await rejectsWithCode(client.sign('app', Buffer.from('x')), 400, 'wrong_key_type');
  });

  it('computes and verifies HMACs and returns random bytes', async () => {
    await client.createKey({ name: 'mac', type: 'hmac-sha256' });
    const data = secret('data');
    const { mac, keyVersion } = await client.hmac('mac', data);
    assert.equal(mac.length, 32);
    assert.equal(keyVersion, 1);
    assert.equal(await client.verifyHmac('mac', data, mac), true);
    assert.equal(await client.verifyHmac('mac', data, Buffer.alloc(32), 1), false);
    const random = await client.random(48);
    assert.equal(random.length, 48);
    await rejectsWithCode(client.random(0), 400, 'invalid_request');
    await rejectsWithCode(client.random(1025), 400, 'invalid_request');
  });

  it('imports wrapped key material (BYOK) and exports exportable keys', async () => {
    const { pem, algorithm } = await client.importWrappingKey();
    assert.match(pem, /BEGIN PUBLIC KEY/);
    assert.match(algorithm, /RSA-OAEP/);

    const material = randomBytes(32);
    secrets.push(material.toString('base64'));
    const imported = await client.importKey('byok', { type: 'aes256-gcm', material, exportable: true });
    assert.equal(imported.versions[0]?.origin, 'imported');
    const exported = await client.exportKey('byok');
    assert.deepEqual(exported, { version: 1, material });
    // Importing again adds a version.
    const second = randomBytes(32);
    secrets.push(second.toString('base64'));
    assert.equal(
      (await client.importKey('byok', { type: 'aes256-gcm', material: second })).versions[0]?.version,
      2,
    );
    assert.deepEqual((await client.exportKey('byok', 2)).material, second);
    await rejectsWithCode(client.exportKey('app'), 409, 'not_exportable');

    const ed = generateKeyPairSync('ed25519');
    const der = ed.privateKey.export({ type: 'pkcs8', format: 'der' });
    const signer = await client.importKey('byok-ed', { type: 'ed25519', material: der });
    assert.equal(signer.key.type, 'ed25519');
    const { signature } = await client.sign('byok-ed', Buffer.from('hi'));
    assert.equal(nodeVerify(null, Buffer.from('hi'), ed.publicKey, signature), true);

    // Garbage blobs are one decryption error.
    await rejectsWithCode(
      client.importKeyBlob('bad-blob', { type: 'aes256-gcm', blob: randomBytes(600) }),
      400,
      'decryption_failed',
    );
    assert.ok(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
  });

  it('runs batches with per-item results and errors', async () => {
    await client.createKey({ name: 'batch', type: 'aes256-gcm' });
    const a = secret('batch-a');
    const b = secret('batch-b');
    const encrypted = await client.encryptBatch('batch', [
      { plaintext: a },
      { plaintext: b, context: Buffer.from('ctx') },
    ]);
    assert.ok(encrypted.every((r) => r.ok));
    const [ea = '', eb = ''] = encrypted.map((r) => r.value);
    const tampered = alterChar(ea, 2);

    const decrypted = await client.decryptBatch([
      { ciphertext: ea },
      { ciphertext: eb, context: Buffer.from('ctx') },
      { ciphertext: tampered },
      { ciphertext: eb },
      { ciphertext: 'warden:v1:nope:1:AAAA' },
    ]);
    assert.deepEqual(decrypted[0], { ok: true, value: a });
    assert.deepEqual(decrypted[1], { ok: true, value: b });
    assert.deepEqual(decrypted[2], {
      ok: false,
      error: { code: 'decryption_failed', message: 'decryption failed' },
    });
    assert.equal(decrypted[3]?.ok, false);
    const fifth = decrypted[4];
    assert.ok(fifth !== undefined && !fifth.ok);
    assert.equal(fifth.error.code, 'key_not_found');

    const missing = await client.encryptBatch('no-such-key', [{ plaintext: a }]);
    assert.equal(!missing[0]!.ok && missing[0]!.error.code, 'key_not_found');

    await client.rotateKey('batch');
    const rewrapped = await client.rewrapBatch([{ ciphertext: ea }, { ciphertext: tampered }]);
    assert.ok(rewrapped[0]?.ok && rewrapped[0].value.startsWith('warden:v1:batch:2:'));
    assert.equal(rewrapped[1]?.ok, false);

    const keys = await client.generateDataKeyBatch('batch', [{}, { context: Buffer.from('x') }], {
      plaintext: false,
    });
    assert.ok(keys.every((k) => k.ok && k.value.plaintext === undefined && k.value.keyVersion === 2));
    const unwrapped = await client.decryptDataKeyBatch([
      { ciphertext: keys[0]!.ok ? keys[0]!.value.ciphertext : '' },
      { ciphertext: keys[1]!.ok ? keys[1]!.value.ciphertext : '' },
    ]);
    assert.equal(unwrapped[0]?.ok && unwrapped[0].value.length, 32);
    assert.equal(!unwrapped[1]!.ok && unwrapped[1]!.error.code, 'decryption_failed');

    const signatures = await client.signBatch('signer-ed25519', [Buffer.from('m1'), Buffer.from('m2')]);
    const sig1 = signatures[0]!.ok ? signatures[0]!.value.signature : Buffer.alloc(0);
    const verified = await client.verifyBatch('signer-ed25519', [
      { message: Buffer.from('m1'), signature: sig1 },
      { message: Buffer.from('m2'), signature: sig1 },
      { message: Buffer.from('m1'), signature: sig1, version: 9 },
    ]);
    assert.deepEqual(
      verified.map((v) => (v.ok ? v.value : v.error.code)),
      [true, false, 'key_not_found'],
    );

    const macs = await client.hmacBatch('mac', [Buffer.from('d1'), Buffer.from('d2')]);
    const mac1 = macs[0]!.ok ? macs[0]!.value.mac : Buffer.alloc(0);
    const macChecks = await client.verifyHmacBatch('mac', [
      { data: Buffer.from('d1'), mac: mac1 },
      { data: Buffer.from('d2'), mac: mac1 },
    ]);
    assert.deepEqual(
      macChecks.map((v) => v.ok && v.value),
      [true, false],
    );
  });

  it('audits a batch request as one event carrying the request id and item counts', async () => {
    await client.createKey({ name: 'batch-audit', type: 'aes256-gcm' });
    const before = h.audit.events.length;
    const r = await raw('POST', '/v1/kms/encrypt/batch-audit', {
      body: { items: [{ plaintext: 'aGk=' }, { plaintext: 'aGk=', context: 'Yw==' }, { plaintext: 'aGk=' }] },
    });
    assert.equal(r.status, 200);
    const recorded = h.audit.events.slice(before);
    assert.equal(recorded.length, 1);
    assert.ok(recorded[0] !== undefined);
    assert.equal(recorded[0].action, 'kms.crypto.encrypt');
    assert.equal(recorded[0].resource, 'key:batch-audit');
    assert.equal(recorded[0].outcome, 'success');
    assert.equal(typeof recorded[0].requestId, 'string');
    assert.deepEqual(recorded[0].details, { batch: true, items: 3, succeeded: 3, keys: 'batch-audit:1' });

    const decryptBefore = h.audit.events.length;
    const items = r.json.items as { ciphertext: string }[];
    const d = await raw('POST', '/v1/kms/decrypt', {
      body: { items: [...items.map((i) => ({ ciphertext: i.ciphertext })), { ciphertext: 'garbage' }] },
    });
    assert.equal(d.status, 200);
    assert.deepEqual(
      (d.json.items as ({ plaintext: string } | { error: { code: string } })[]).map((i) =>
        'error' in i ? i.error.code : i.plaintext,
      ),
      ['aGk=', 'decryption_failed', 'aGk=', 'decryption_failed'],
    );
    const decryptEvents = h.audit.events.slice(decryptBefore);
    assert.equal(decryptEvents.length, 1);
    assert.ok(decryptEvents[0] !== undefined);
    assert.equal(decryptEvents[0].resource, 'key:*');
    assert.equal(decryptEvents[0].outcome, 'failure');
    assert.equal(decryptEvents[0].reason, 'decryption_failed');
    assert.deepEqual(decryptEvents[0].details, {
      batch: true,
      items: 4,
      succeeded: 2,
      'errors.decryption_failed': 2,
      keys: 'batch-audit:1',
    });
  });

  it('refuses callers without the right role (403) and serves operator status', async () => {
    const user = new KmsClient({ address: h.address, token: h.userToken, ca: h.ca });
    try {
      await rejectsWithCode(user.createKey({ name: 'nope', type: 'aes256-gcm' }), 403, 'forbidden');
      await rejectsWithCode(user.seal(), 403, 'forbidden');
      await rejectsWithCode(user.init({ shares: 3, threshold: 2 }), 403, 'forbidden');
      assert.match(await user.encrypt('app', Buffer.from('ok')), /^warden:v1:app:/);
    } finally {
      await user.close();
    }
  });

  it('initialises, seals and unseals through the operator routes', async () => {
    const { shares } = await client.init({ shares: 3, threshold: 2 });
    assert.equal(shares.length, 3);
    secrets.push(...shares);
    let status = await client.status();
    assert.equal(status.sealed, true);
    assert.equal((await client.health()).status, 'sealed');
    await rejectsWithCode(client.encrypt('app', Buffer.from('x')), 503, 'sealed');
    await rejectsWithCode(client.unseal('not a share'), 400, 'invalid_request');
    status = await client.unseal(shares[0]!);
    assert.deepEqual([status.sealed, status.progress, status.threshold], [true, 1, 2]);
    status = await client.unseal(shares[2]!);
    assert.equal(status.sealed, false);
    assert.match(await client.encrypt('app', Buffer.from('x')), /^warden:v1:app:2:/);
    await rejectsWithCode(client.init({ shares: 3, threshold: 2 }), 409, 'already_initialized');
    await rejectsWithCode(client.init({ shares: 2, threshold: 3 }), 400, 'invalid_request');
    assert.equal((await client.seal()).sealed, true);
    await rejectsWithCode(client.decryptDataKey('warden:v1:app:2:AAAA'), 503, 'sealed');
    await client.unseal(shares[1]!);
    assert.equal((await client.unseal(shares[0]!)).sealed, false);
  });
});

describe('KMS HTTP API: authentication, validation, TLS, logs, OpenAPI', () => {
  const sample: Record<string, string> = { name: 'app', version: '1' };
  const concrete = (url: string) => url.replace(/:(\w+)/g, (_, p: string) => sample[p] ?? 'x');

  it('answers 401 on every protected route without a token, with a wrong one, or a malformed header', async () => {
    const routes = listRoutes(h.app);
    assert.ok(routes.length >= 27, `only ${routes.length} routes`);
    const publicOnes = routes.filter((r) => 'public' in r.authz).map((r) => `${r.method} ${r.url}`);
    assert.deepEqual(publicOnes.sort(), [
      'GET /v1/health',
      'GET /v1/openapi.json',
      'GET /v1/operator/status',
      'POST /v1/operator/unseal',
    ]);
    for (const route of routes.filter((r) => !('public' in r.authz))) {
      const path = concrete(route.url);
      for (const token of [null, 'wrong-token-value-0123456789', `${h.token}x`, '']) {
        const r = await raw(route.method, path, { token, body: route.method === 'GET' ? undefined : {} });
        assertError(r, 401, 'unauthenticated');
        assert.equal(r.headers['www-authenticate'], 'Bearer', `${route.method} ${path}`);
      }
    }
    secrets.push('wrong-token-value-0123456789');
    const denied = h.audit.events.filter((e) => e.action === 'auth.request');
    assert.ok(denied.length >= routes.filter((r) => !('public' in r.authz)).length * 4);
    assert.ok(denied.every((e) => e.outcome === 'denied' && e.sourceIp === '127.0.0.1'));
    assert.ok(
      denied.some((e) => e.reason === 'missing_credentials' && e.resource === 'POST /v1/kms/encrypt/:name'),
    );
    assert.equal(JSON.stringify(denied).includes('wrong-token-value'), false);
    const basic = await raw('GET', '/v1/kms/keys', { token: null });
    assertError(basic, 401, 'unauthenticated');
  });

  it('refuses TLS 1.2 clients', async () => {
    const error = await new Promise<Error | undefined>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: h.port, ca: h.ca, maxVersion: 'TLSv1.2' });
      socket.on('secureConnect', () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.on('error', resolve);
    });
    assert.ok(error !== undefined, 'a TLS 1.2 handshake succeeded');
    const ok = await new Promise<string | null>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: h.port, ca: h.ca }, () => {
        resolve(socket.getProtocol());
        socket.destroy();
      });
      socket.on('error', reject);
    });
    assert.equal(ok, 'TLSv1.3');
  });

  it('rejects schema violations with 400 and the error shape, without echoing values', async () => {
    const bad: [string, string, object | string, RegExp][] = [
      ['POST', '/v1/kms/encrypt/app', { plaintext: 'not base64!' }, /body\.plaintext must be base64/],
      ['POST', '/v1/kms/encrypt/app', { plaintext: 'aGk=', extra: 1 }, /must not have the property "extra"/],
      ['POST', '/v1/kms/encrypt/app', { plaintext: 5 }, /body\.plaintext must be string/],
      ['POST', '/v1/kms/encrypt/app', {}, /required property 'plaintext'/],
      ['POST', '/v1/kms/encrypt/app', { items: [] }, /body\.items must NOT have fewer than 1 items/],
      [
        'POST',
        '/v1/kms/encrypt/app',
        { items: [{ plaintext: 'aGk=' }, { plaintext: 'bad*' }] },
        /body\.items\.1\.plaintext must be base64/,
      ],
      [
        'POST',
        '/v1/kms/encrypt/app',
        { items: Array.from({ length: 1001 }, () => ({ plaintext: 'aGk=' })) },
        /body\.items must NOT have more than 1000 items/,
      ],
      ['POST', '/v1/kms/encrypt/app', { plaintext: 'aGk=', context: 'aGk' }, /body\.context must be base64/],
      ['POST', '/v1/kms/encrypt/Bad_Name', { plaintext: 'aGk=' }, /params\.name must match pattern/],
      [
        'POST',
        '/v1/kms/keys',
        { name: 'k', type: 'rsa' },
        /body\.type must be equal to one of the allowed values/,
      ],
      [
        'POST',
        '/v1/kms/keys',
        { name: 'k', type: 'aes256-gcm', exportable: 'yes' },
        /body\.exportable must be boolean/,
      ],
      ['POST', '/v1/kms/keys/app/versions/0/destroy', {}, /params\.version must match pattern/],
      ['PATCH', '/v1/kms/keys/app', {}, /body must NOT have fewer than 1 properties/],
      ['POST', '/v1/kms/random', { bytes: '16' }, /body\.bytes must be integer/],
      ['POST', '/v1/kms/verify/app', { message: 'aGk=' }, /required property 'signature'/],
      ['POST', '/v1/kms/datakey/app', { plaintext: 'yes' }, /body\.plaintext must be boolean/],
      ['GET', '/v1/kms/keys/app/public-key?version=abc', '', /querystring\.version must match pattern/],
      ['POST', '/v1/kms/decrypt', '{"ciphertext": "secret-in-broken-json', /not valid JSON/],
      ['POST', '/v1/kms/decrypt', [1, 2], /body must be object/],
      ['POST', '/v1/operator/unseal', { share: '' }, /body\.share must NOT have fewer than 1 characters/],
    ];
    secrets.push('secret-in-broken-json');
    for (const [method, path, body, message] of bad) {
      const r = await raw(method, path, { body: method === 'GET' ? undefined : body });
      assertError(r, 400, 'invalid_request');
      assert.match(r.json.error!.message, message, `${method} ${path}`);
      assert.doesNotMatch(r.json.error!.message, /not base64!|secret-in-broken-json|bad\*/);
    }
    const unsupported = await raw('POST', '/v1/kms/decrypt', { body: 'x', contentType: 'text/plain' });
    assertError(unsupported, 415, 'unsupported_media_type');
    // One message for JSON routes and the registry's raw uploads alike: it names what each takes.
    assert.match(unsupported.json.error!.message, /application\/json.*application\/octet-stream/);
    const huge = { plaintext: Buffer.alloc(1024 * 1024).toString('base64') };
    assertError(await raw('POST', '/v1/kms/random', { body: huge }), 413, 'payload_too_large');
    assertError(await raw('GET', '/v1/nope'), 404, 'not_found');
    assertError(await raw('DELETE', '/v1/kms/keys/app'), 404, 'not_found');
  });

  it('describes every route in the OpenAPI document, with request, response and error schemas', async () => {
    const doc = (await client.openapi()) as {
      paths: Record<string, Record<string, { requestBody?: unknown; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, unknown> };
    };
    assert.ok(doc.components.schemas.ErrorResponse, 'error schema missing');
    const errorRef = JSON.stringify(doc.components.schemas.ErrorResponse);
    assert.match(errorRef, /"error"/);
    for (const route of listRoutes(h.app)) {
      const path = route.url.replace(/:(\w+)/g, '{$1}');
      const operation = doc.paths[path]?.[route.method.toLowerCase()];
      assert.ok(operation, `${route.method} ${route.url} missing from the OpenAPI document`);
      const success = Object.keys(operation.responses).find((s) => s.startsWith('2'));
      assert.ok(success, `${route.method} ${route.url} has no success response`);
      assert.ok(operation.responses['4XX'] ?? operation.responses['4xx'], `${route.url} has no 4xx response`);
      assert.match(JSON.stringify(operation.responses['4XX'] ?? operation.responses['4xx']), /ErrorResponse/);
      if (route.method === 'POST' && !/rotate|cancel-destroy|seal$/.test(route.url)) {
        assert.ok(operation.requestBody, `${route.method} ${route.url} has no request body schema`);
      }
    }
  });

  it('answers 500 with a generic error for unexpected failures, and 503 when audit fails', async () => {
    h.audit.failing = true;
    try {
      const r = await raw('POST', '/v1/kms/encrypt/app', { body: { plaintext: 'aGk=' } });
      assertError(r, 503, 'audit_unavailable');
      // A batch is one audited operation: no item result leaves without its event.
      const batch = await raw('POST', '/v1/kms/encrypt/app', {
        body: { items: [{ plaintext: 'aGk=' }, { plaintext: 'aGk=' }] },
      });
      assertError(batch, 503, 'audit_unavailable');
    } finally {
      h.audit.failing = false;
    }
    const original = h.operator.init.bind(h.operator);
    h.operator.init = () => Promise.reject(new Error('internal detail: share bytes 0xdeadbeef'));
    try {
      const r = await raw('POST', '/v1/operator/init', { body: { shares: 3, threshold: 2 } });
      assert.deepEqual(r.json, { error: { code: 'internal_error', message: 'internal error' } });
      assert.equal(r.status, 500);
    } finally {
      h.operator.init = original;
    }
    secrets.push('0xdeadbeef');
  });

  it('sends no-store and nosniff headers', async () => {
    const r = await raw('GET', '/v1/kms/keys');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  });

  it('keeps the wire types of server and SDK in step', () => {
    const fromServer: KeyInfoView = {
      key: {
        name: 'k',
        type: 'ed25519',
        createdAt: '',
        rotationPeriodDays: null,
        nextRotationAt: null,
        latestVersion: 1,
        minDecryptionVersion: 1,
        autoFloorGraceDays: null,
        exportable: false,
        description: '',
      },
      versions: [],
    };
    const inClient: ClientKeyInfo = fromServer;
    const back: KeyInfoView = { key: inClient.key, versions: [...inClient.versions] };
    assert.equal(back.key.name, 'k');
  });

  it('exercised every route through the SDK, and never logged a token or a secret', () => {
    const logs = h.logs.text();
    assert.match(logs, /request completed/);
    assert.doesNotMatch(logs, /incoming request/, 'one line per request');
    const seen = new Set<string>();
    for (const line of logs.split('\n')) {
      if (line === '') continue;
      const entry = JSON.parse(line) as { req?: { method: string; url: string } };
      if (entry.req !== undefined) seen.add(`${entry.req.method} ${entry.req.url.split('?')[0] ?? ''}`);
    }
    for (const route of listRoutes(h.app)) {
      const pattern = new RegExp(`^${route.method} ${route.url.replace(/:(\w+)/g, '[^/]+')}$`);
      assert.ok(
        [...seen].some((s) => pattern.test(s)),
        `${route.method} ${route.url} never called`,
      );
    }
    for (const value of [h.token, h.userToken, ...secrets]) {
      assert.ok(value.length > 0);
      assert.equal(logs.includes(value), false, `a secret reached the logs: ${value.slice(0, 12)}...`);
    }
    assert.doesNotMatch(logs, /authorization|Bearer/i);
  });
});
