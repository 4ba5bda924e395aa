// Mutual TLS into warden server: a service account bound to the subject of a certificate from Warden's internal
// CA gets tokens by presenting that certificate (RFC 8705 tls_client_auth, certificate-bound tokens); another
// identity's certificate does not; once the certificate is revoked, the TLS layer no longer vouches for it.

import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { BOOTSTRAP_PRINCIPAL } from '../../src/server/index.ts';
import { tempDir } from '../envelope/support.ts';

describe('warden server: mutual TLS with certificates from the internal CA', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-mtls-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const serverCa = readFileSync(warden.caPath);
  await warden.ca.init(BOOTSTRAP_PRINCIPAL);
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await warden.ca.issue(BOOTSTRAP_PRINCIPAL, {
    profile: 'client',
    identity: 'service:pipeline',
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }),
  });
  const subject = new X509Certificate(issued.certificate).subject;
  await warden.identity.current().createServiceAccount(BOOTSTRAP_PRINCIPAL, {
    clientId: 'pipeline',
    authMethod: 'tls_client_auth',
    tlsSubjectDn: subject.split('\n').join(','),
    roles: ['key-user'],
  });
  await warden.clientTrust.refresh();
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' });

  const token = async (cert: string | undefined) => {
    const dispatcher = new Agent({
      connect: { ca: serverCa, ...(cert === undefined ? {} : { cert, key }) },
    });
    try {
      const r = await request(`${warden.url}/oauth/token`, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&client_id=pipeline',
      });
      return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
    } finally {
      await dispatcher.close();
    }
  };

  it('issues a certificate-bound token to the service account presenting its certificate', async () => {
    const r = await token(issued.chain);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const claims = JSON.parse(
      Buffer.from(String(r.body.access_token).split('.')[1] ?? '', 'base64url').toString('utf8'),
    ) as { cnf?: Record<string, string> };
    assert.match(claims.cnf?.['x5t#S256'] ?? '', /^[A-Za-z0-9_-]{43}$/);
  });

  it("refuses no certificate, and another identity's certificate from the same CA", async () => {
    assert.equal((await token(undefined)).status, 401);
    const foreign = await warden.ca.issue(BOOTSTRAP_PRINCIPAL, {
      profile: 'client',
      identity: 'service:other',
      publicKey: publicKey.export({ type: 'spki', format: 'pem' }),
    });
    assert.equal((await token(foreign.chain)).status, 401, 'another identity of the same CA');
  });

  it("refuses the CA's key to everyone but the CA: an administrator cannot sign a certificate of their own", async () => {
    const tbs = Buffer.from('a tbsCertificate naming service:pipeline').toString('base64');
    const signed = await warden.kms.service
      .sign(BOOTSTRAP_PRINCIPAL, 'internal-ca', Buffer.from(tbs, 'base64'))
      .then(
        () => 'signed',
        (err: unknown) => (err as { code?: string }).code,
      );
    assert.equal(signed, 'forbidden');
  });

  it('stops vouching for a revoked certificate', async () => {
    await warden.ca.revoke(BOOTSTRAP_PRINCIPAL, issued.serial, 'keyCompromise');
    await warden.clientTrust.refresh();
    const r = await token(issued.chain);
    assert.equal(r.status, 401, JSON.stringify(r.body));
  });
});
