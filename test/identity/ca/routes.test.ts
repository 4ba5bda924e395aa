import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { createKmsServer, bootstrapTokenAuthenticator, firstOf } from '../../../src/server/index.ts';
import { caRoutes } from '../../../src/server/routes/ca.ts';
import type { Principal } from '../../../src/kms/index.ts';
import { TestOperator, TestRoot } from '../../server/fixture.ts';
import { caFixture, ecKeyPair, opensslCsr, x509 } from './support.ts';

const adminToken = randomBytes(24).toString('base64url');
const userToken = randomBytes(24).toString('base64url');
const USER: Principal = { id: 'user:bob', roles: ['key-user'], authMethod: 'test-token' };

describe('CA routes on the Warden server', async () => {
  const f = await caFixture();
  const app = await createKmsServer({
    kms: f.kms.service,
    operator: new TestOperator(new TestRoot()),
    authenticate: firstOf(
      bootstrapTokenAuthenticator(adminToken),
      bootstrapTokenAuthenticator(userToken, USER),
    ),
    routes: [
      (server) => {
        caRoutes(server, { ca: f.ca });
      },
    ],
  });
  after(async () => {
    await app.close();
    await f.close();
  });
  const auth = (token: string) => ({ authorization: `Bearer ${token}` });

  it('serves the trust bundle and the CRL without a token', async () => {
    const bundle = await app.inject({ method: 'GET', url: '/v1/ca/certificates' });
    assert.equal(bundle.statusCode, 200);
    const body = bundle.json<{ pem: string; certificates: { keyVersion: number; certificate: string }[] }>();
    assert.equal(body.certificates.length, 1);
    assert.equal(body.certificates[0]?.keyVersion, 1);
    assert.ok(new X509Certificate(body.pem).ca);
    const der = await app.inject({ method: 'GET', url: '/v1/ca/crl' });
    assert.equal(der.statusCode, 200);
    assert.equal(der.headers['content-type'], 'application/pkix-crl');
    assert.ok(new x509.X509Crl(der.rawPayload).issuer.startsWith('CN=Warden Internal CA v1'));
    const pem = await app.inject({ method: 'GET', url: '/v1/ca/crl?format=pem' });
    assert.match(pem.body, /^-----BEGIN X509 CRL-----/);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/ca/crl?format=txt' })).statusCode, 400);
  });

  it('issues from a CSR for an authorised caller, refuses others', async () => {
    const csr = await opensslCsr(f.dir, ecKeyPair());
    const payload = { profile: 'client', csr, identity: 'service:trainer', lifetimeSeconds: 1800 };
    const none = await app.inject({ method: 'POST', url: '/v1/ca/issue', payload });
    assert.equal(none.statusCode, 401);
    const denied = await app.inject({
      method: 'POST',
      url: '/v1/ca/issue',
      payload,
      headers: auth(userToken),
    });
    assert.equal(denied.statusCode, 403);
    const ok = await app.inject({ method: 'POST', url: '/v1/ca/issue', payload, headers: auth(adminToken) });
    assert.equal(ok.statusCode, 200, ok.body);
    const issued = ok.json<{
      serial: string;
      certificate: string;
      chain: string;
      notAfter: string;
      notBefore: string;
    }>();
    assert.equal(
      new X509Certificate(issued.certificate).subjectAltName,
      'URI:spiffe://warden/service/trainer',
    );
    assert.equal(Date.parse(issued.notAfter) - Date.parse(issued.notBefore), 1800_000 + 60_000);
    const record = await app.inject({
      method: 'GET',
      url: `/v1/ca/issued/${issued.serial}`,
      headers: auth(adminToken),
    });
    assert.equal(record.statusCode, 200);
    assert.equal(record.json<{ issuedBy: string }>().issuedBy, 'bootstrap-admin');
  });

  it('maps CA errors to their codes and statuses', async () => {
    const post = (payload: Record<string, unknown>) =>
      app.inject({ method: 'POST', url: '/v1/ca/issue', payload, headers: auth(adminToken) });
    const bad = await post({ profile: 'client', csr: 'not a csr', identity: 'service:x' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json<{ error: { code: string } }>().error.code, 'invalid_csr');
    const long = await post({
      profile: 'server',
      publicKey: ecKeyPair().publicPem,
      dnsNames: ['a.internal'],
      lifetimeSeconds: 6 * 24 * 3600,
    });
    assert.equal(long.statusCode, 400);
    assert.equal(long.json<{ error: { code: string } }>().error.code, 'lifetime_exceeded');
    const extra = await post({
      profile: 'client',
      publicKey: ecKeyPair().publicPem,
      identity: 'service:x',
      ca: true,
    });
    assert.equal(extra.statusCode, 400);
    const missing = await app.inject({
      method: 'GET',
      url: `/v1/ca/issued/${'ab'.repeat(16)}`,
      headers: auth(adminToken),
    });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json<{ error: { code: string } }>().error.code, 'certificate_not_found');
  });

  it('revokes, and the CRL and inventory show it', async () => {
    const issued = await app.inject({
      method: 'POST',
      url: '/v1/ca/issue',
      payload: { profile: 'server', publicKey: ecKeyPair().publicPem, dnsNames: ['m.internal'] },
      headers: auth(adminToken),
    });
    const serial = issued.json<{ serial: string }>().serial;
    const denied = await app.inject({
      method: 'POST',
      url: '/v1/ca/revoke',
      payload: { serial },
      headers: auth(userToken),
    });
    assert.equal(denied.statusCode, 403);
    const revoked = await app.inject({
      method: 'POST',
      url: '/v1/ca/revoke',
      payload: { serial, reason: 'superseded' },
      headers: auth(adminToken),
    });
    assert.equal(revoked.statusCode, 200, revoked.body);
    assert.equal(revoked.json<{ revocationReason: string }>().revocationReason, 'superseded');
    const again = await app.inject({
      method: 'POST',
      url: '/v1/ca/revoke',
      payload: { serial },
      headers: auth(adminToken),
    });
    assert.equal(again.statusCode, 409);
    const crl = new x509.X509Crl((await app.inject({ method: 'GET', url: '/v1/ca/crl' })).rawPayload);
    assert.ok(crl.findRevoked(serial) !== null);
    const list = await app.inject({
      method: 'GET',
      url: '/v1/ca/issued?profile=server',
      headers: auth(adminToken),
    });
    const certificates = list.json<{ certificates: { serial: string; revokedAt: string | null }[] }>()
      .certificates;
    assert.ok(certificates.some((c) => c.serial === serial && c.revokedAt !== null));
    const forbidden = await app.inject({ method: 'GET', url: '/v1/ca/issued', headers: auth(userToken) });
    assert.equal(forbidden.statusCode, 403);
  });

  it('init is idempotent, rotate makes a new CA certificate; both need identity.manage', async () => {
    const current = await f.ca.current();
    const init = await app.inject({ method: 'POST', url: '/v1/ca/init', headers: auth(adminToken) });
    assert.equal(init.statusCode, 200, init.body);
    assert.equal(init.json<{ serial: string }>().serial, current.serial);
    const denied = await app.inject({ method: 'POST', url: '/v1/ca/rotate', headers: auth(userToken) });
    assert.equal(denied.statusCode, 403);
    const rotated = await app.inject({ method: 'POST', url: '/v1/ca/rotate', headers: auth(adminToken) });
    assert.equal(rotated.statusCode, 200, rotated.body);
    assert.equal(rotated.json<{ keyVersion: number }>().keyVersion, 2);
    const bundle = await app.inject({ method: 'GET', url: '/v1/ca/certificates' });
    assert.equal(bundle.json<{ certificates: unknown[] }>().certificates.length, 2);
    const crl = await app.inject({ method: 'GET', url: '/v1/ca/crl?format=json' });
    const body = crl.json<{ crl: string; entries: number; nextUpdate: string }>();
    assert.match(body.crl, /^-----BEGIN X509 CRL-----/);
    assert.ok(new x509.X509Crl(body.crl).issuer.startsWith('CN=Warden Internal CA v2'));
    assert.ok(Date.parse(body.nextUpdate) > Date.now());
  });
});
