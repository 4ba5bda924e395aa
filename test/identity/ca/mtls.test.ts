import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { request } from 'undici';
import {
  CaError,
  ClientCertificateRejectedError,
  RevocationList,
  TrustAnchors,
  mtlsAgent,
  mtlsPool,
  tlsClientOptions,
  tlsServerOptions,
  verifyClientCertificate,
} from '../../../src/identity/index.ts';
import type { ClientRejection, IssuedCertificate } from '../../../src/identity/index.ts';
import { admin, caFixture, ecKeyPair } from './support.ts';
import type { CaFixture, KeyPair } from './support.ts';

const HOUR = 60 * 60 * 1000;

interface Credential {
  readonly cert: string;
  readonly key: string;
  readonly issued: IssuedCertificate;
}

async function clientCredential(f: CaFixture, identity: string): Promise<Credential> {
  const key: KeyPair = ecKeyPair();
  const issued = await f.ca.issue(admin, { profile: 'client', publicKey: key.publicPem, identity });
  return { cert: issued.chain, key: key.privatePem, issued };
}

function rejection(reason: ClientRejection) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ClientCertificateRejectedError, String(err));
    assert.equal(err.reason, reason);
    assert.equal(err.code, 'client_certificate_rejected');
    assert.equal(err.httpStatus, 401);
    return true;
  };
}

describe('mutual TLS with CA-issued certificates', async () => {
  const f = await caFixture();
  const other = await caFixture();
  const bundle = await f.ca.trustBundle();
  const anchors = TrustAnchors.fromPem(bundle.pem);
  const serverKey = ecKeyPair();
  const server = await f.ca.issue(admin, {
    profile: 'server',
    publicKey: serverKey.publicPem,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const good = await clientCredential(f, 'service:gateway');
  const revoked = await clientCredential(f, 'service:revoked');
  const foreign = await clientCredential(other, 'service:gateway');
  await f.ca.revoke(admin, revoked.issued.serial, 'keyCompromise');
  const crl = await RevocationList.parse((await f.ca.crl()).der, anchors);

  /** The server side of a Warden component: TLS stack checks the chain, the handler checks revocation/identity. */
  function handler(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    try {
      if (!(socket instanceof TLSSocket)) throw new Error('not a TLS socket');
      const client = verifyClientCertificate(socket.getPeerCertificate(), anchors, crl);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ principal: client.principalId, protocol: socket.getProtocol() }));
    } catch (err) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ reason: err instanceof ClientCertificateRejectedError ? err.reason : 'error' }),
      );
    }
  }

  const strict = https.createServer(
    tlsServerOptions({ cert: server.chain, key: serverKey.privatePem, trust: anchors }),
    handler,
  );
  const lenient = https.createServer(
    tlsServerOptions({
      cert: server.chain,
      key: serverKey.privatePem,
      trust: bundle.pem,
      requireClientCert: false,
    }),
    handler,
  );
  let strictUrl = '';
  let lenientUrl = '';
  before(async () => {
    for (const s of [strict, lenient])
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    strictUrl = `https://127.0.0.1:${(strict.address() as AddressInfo).port}`;
    lenientUrl = `https://127.0.0.1:${(lenient.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const s of [strict, lenient]) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
    await f.close();
    await other.close();
  });

  async function get(
    url: string,
    credential?: Credential,
    extra: ConnectionOptions = {},
  ): Promise<{ status: number; body: Record<string, string> }> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        url,
        {
          ca: bundle.pem,
          ...(credential === undefined ? {} : { cert: credential.cert, key: credential.key }),
          agent: false,
          ...extra,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, string>,
            });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
  }

  it('accepts a client with a CA-issued certificate over TLS 1.3 and extracts its identity', async () => {
    const res = await get(strictUrl, good);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { principal: 'service:gateway', protocol: 'TLSv1.3' });
  });

  it('refuses a client without a certificate in the handshake', async () => {
    await assert.rejects(get(strictUrl), (err: NodeJS.ErrnoException) => {
      assert.match(`${err.code ?? ''} ${err.message}`, /certificate required|ECONNRESET|socket hang up/i);
      return true;
    });
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    await assert.rejects(get(strictUrl, foreign), (err: NodeJS.ErrnoException) => {
      assert.match(`${err.code ?? ''} ${err.message}`, /unknown ca|ECONNRESET|socket hang up/i);
      return true;
    });
    assert.throws(
      () => verifyClientCertificate(foreign.issued.certificate, anchors, crl),
      rejection('unknown_issuer'),
    );
  });

  it('refuses a revoked client certificate in verifyClientCertificate', async () => {
    const res = await get(strictUrl, revoked);
    assert.equal(res.status, 403);
    assert.deepEqual(res.body, { reason: 'revoked' });
  });

  it('refuses TLS 1.2 clients', async () => {
    await assert.rejects(get(strictUrl, good, { maxVersion: 'TLSv1.2' }), (err: NodeJS.ErrnoException) => {
      assert.match(
        `${err.code ?? ''} ${err.message}`,
        /protocol version|unsupported protocol|wrong version/i,
      );
      return true;
    });
  });

  it('without requireClientCert, verifyClientCertificate alone decides', async () => {
    assert.deepEqual(await get(lenientUrl), { status: 403, body: { reason: 'no_certificate' } });
    assert.deepEqual(await get(lenientUrl, foreign), { status: 403, body: { reason: 'unknown_issuer' } });
    assert.equal((await get(lenientUrl, good)).status, 200);
  });

  it('undici Agent and Pool reach a model server with mutual TLS 1.3', async () => {
    const agent = mtlsAgent({ cert: good.cert, key: good.key, trust: bundle.pem });
    const pool = mtlsPool(strictUrl, { cert: good.cert, key: good.key, trust: anchors, connections: 2 });
    try {
      const viaAgent = await request(strictUrl, { dispatcher: agent });
      assert.equal(viaAgent.statusCode, 200);
      assert.deepEqual(await viaAgent.body.json(), { principal: 'service:gateway', protocol: 'TLSv1.3' });
      const viaPool = await pool.request({ path: '/', method: 'GET' });
      assert.equal(viaPool.statusCode, 200);
      await viaPool.body.dump();
    } finally {
      await agent.close();
      await pool.close();
    }
    // A server certificate from another CA is not trusted by the client.
    const otherServerKey = ecKeyPair();
    const otherServer = await other.ca.issue(admin, {
      profile: 'server',
      publicKey: otherServerKey.publicPem,
      ipAddresses: ['127.0.0.1'],
    });
    const impostor = https.createServer(
      tlsServerOptions({
        cert: otherServer.chain,
        key: otherServerKey.privatePem,
        trust: (await other.ca.trustBundle()).pem,
        requireClientCert: false,
      }),
      (_req, res) => res.end('{}'),
    );
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    const impostorAgent = mtlsAgent({ cert: good.cert, key: good.key, trust: anchors });
    try {
      await assert.rejects(
        request(`https://127.0.0.1:${(impostor.address() as AddressInfo).port}`, {
          dispatcher: impostorAgent,
        }),
        /self.signed|unable to verify|unknown ca|certificate/i,
      );
    } finally {
      await impostorAgent.close();
      impostor.closeAllConnections();
      await new Promise((resolve) => impostor.close(resolve));
    }
  });

  it('the client side speaks TLS 1.3 only', async () => {
    const legacy = https.createServer(
      { cert: server.chain, key: serverKey.privatePem, maxVersion: 'TLSv1.2' },
      (_req, res) => res.end('{}'),
    );
    await new Promise<void>((resolve) => legacy.listen(0, '127.0.0.1', resolve));
    const agent = mtlsAgent({ cert: good.cert, key: good.key, trust: anchors });
    try {
      await assert.rejects(
        request(`https://127.0.0.1:${(legacy.address() as AddressInfo).port}`, { dispatcher: agent }),
        /protocol version|unsupported protocol|alert/i,
      );
    } finally {
      await agent.close();
      legacy.closeAllConnections();
      await new Promise((resolve) => legacy.close(resolve));
    }
    const options = tlsClientOptions({ cert: good.cert, key: good.key, trust: anchors });
    assert.equal(options.minVersion, 'TLSv1.3');
    assert.equal(options.maxVersion, 'TLSv1.3');
  });

  describe('verifyClientCertificate', () => {
    it('returns the bound identity, serial and issuer', () => {
      const verified = verifyClientCertificate(good.issued.certificate, anchors, crl);
      assert.equal(verified.principalId, 'service:gateway');
      assert.equal(verified.kind, 'service');
      assert.equal(verified.name, 'gateway');
      assert.equal(verified.serial, good.issued.serial);
      assert.equal(verified.issuer, 'CN=Warden Internal CA v1\nO=Warden');
    });

    it('checks validity periods, usage, leaf-ness, CRL freshness and the trust domain', async () => {
      const now = Date.now();
      assert.throws(
        () => verifyClientCertificate(good.issued.certificate, anchors, crl, { now: now + 2 * HOUR }),
        rejection('expired'),
      );
      assert.throws(
        () => verifyClientCertificate(good.issued.certificate, anchors, crl, { now: now - 2 * HOUR }),
        rejection('not_yet_valid'),
      );
      assert.throws(
        () => verifyClientCertificate(server.certificate, anchors, crl),
        rejection('wrong_usage'),
      );
      const caCertificate = bundle.certificates[0]?.certificate ?? '';
      assert.throws(() => verifyClientCertificate(caCertificate, anchors, crl), rejection('not_a_leaf'));
      const longer = await f.ca.issue(admin, {
        profile: 'client',
        publicKey: ecKeyPair().publicPem,
        identity: 'service:batch',
        lifetimeMs: 3 * HOUR,
      });
      assert.throws(
        () => verifyClientCertificate(longer.certificate, anchors, crl, { now: now + 90 * 60 * 1000 }),
        rejection('crl_stale'),
      );
      assert.throws(
        () => verifyClientCertificate(good.issued.certificate, anchors, crl, { trustDomain: 'elsewhere' }),
        rejection('no_identity'),
      );
      assert.throws(() => verifyClientCertificate({}, anchors, crl), rejection('no_certificate'));
      assert.throws(() => verifyClientCertificate(undefined, anchors, crl), rejection('no_certificate'));
      assert.throws(
        () => verifyClientCertificate(Buffer.from('garbage'), anchors, crl),
        rejection('malformed'),
      );
    });

    it('accepts only a CRL signed by a trust anchor and current', async () => {
      const foreignCrl = (await other.ca.crl()).der;
      await assert.rejects(RevocationList.parse(foreignCrl, anchors), (err: unknown) => {
        return err instanceof CaError && err.code === 'invalid_crl';
      });
      const der = Buffer.from((await f.ca.crl()).der);
      der[der.length - 3] = (der[der.length - 3] ?? 0) ^ 0x01;
      await assert.rejects(RevocationList.parse(der, anchors), (err: unknown) => {
        return err instanceof CaError && err.code === 'invalid_crl';
      });
      await assert.rejects(
        RevocationList.parse((await f.ca.crl()).pem, anchors, Date.now() + 2 * HOUR),
        /not current/,
      );
      const fresh = await RevocationList.parse((await f.ca.crl()).pem, anchors);
      assert.equal(fresh.size, 1);
      assert.equal(fresh.has(revoked.issued.serial.toUpperCase()), true);
    });

    it('refuses trust anchors that are not CA certificates', () => {
      assert.throws(
        () => TrustAnchors.fromPem(good.issued.certificate),
        (err: unknown) => {
          return err instanceof CaError && err.code === 'invalid_certificate';
        },
      );
      assert.throws(() => TrustAnchors.fromPem('no pem here'), CaError);
    });
  });
});
