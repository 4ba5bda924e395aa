import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditEvent, AuditRecorder } from '../../../src/audit/index.ts';
import {
  CaError,
  CertificateAuthority,
  HARD_MAX_LIFETIME_MS,
  serialHex,
} from '../../../src/identity/index.ts';
import type { CertificateAuthorityOptions } from '../../../src/identity/index.ts';
import { admin, caFixture, ecKeyPair, opensslCsr, run, stopPostgres, x509 } from './support.ts';
import type { Dialect } from './support.ts';

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

after(stopPostgres);

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof CaError, `expected a CaError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** `openssl verify` exit status and output for a leaf against a CA file (and optionally a CRL). */
async function opensslVerify(
  dir: string,
  caPem: string,
  leafPem: string,
  extra: string[] = [],
  crlPem?: string,
): Promise<{ ok: boolean; output: string }> {
  const caFile = path.join(dir, 'verify-ca.pem');
  const leafFile = path.join(dir, 'verify-leaf.pem');
  await writeFile(caFile, caPem);
  await writeFile(leafFile, leafPem);
  const args = ['verify', '-CAfile', caFile, ...extra];
  if (crlPem !== undefined) {
    const crlFile = path.join(dir, 'verify-crl.pem');
    await writeFile(crlFile, crlPem);
    args.push('-crl_check', '-CRLfile', crlFile);
  }
  try {
    const { stdout, stderr } = await run('openssl', [...args, leafFile]);
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function parsed(pem: string): x509.X509Certificate {
  return new x509.X509Certificate(pem);
}

describe('CA certificate', async () => {
  const f = await caFixture();
  after(() => f.close());
  it('is a self-signed CA over the KMS key, with CA extensions', async () => {
    const info = await f.ca.current();
    assert.equal(info.keyVersion, 1);
    const cert = new X509Certificate(info.certificate);
    assert.equal(cert.ca, true);
    assert.ok(cert.checkIssued(cert));
    const { pem } = await f.kms.service.publicKey(admin, 'warden-ca');
    // The certified key is the KMS key: its public half verifies the self-signature.
    assert.ok(cert.verify(new X509Certificate(info.certificate).publicKey));
    assert.equal(cert.publicKey.export({ format: 'pem', type: 'spki' }).toString(), pem);
    const p = parsed(info.certificate);
    const bc = p.getExtension(x509.BasicConstraintsExtension);
    assert.equal(bc?.ca, true);
    assert.equal(bc.pathLength, 0);
    assert.equal(bc.critical, true);
    const ku = p.getExtension(x509.KeyUsagesExtension);
    assert.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku.critical, true);
    const ski = p.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    assert.ok(ski !== undefined && ski.length === 40);
    assert.equal(p.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, ski);
    assert.equal(p.subject, 'CN=Warden Internal CA v1, O=Warden');
    const self = await opensslVerify(f.dir, info.certificate, info.certificate);
    assert.ok(self.ok, self.output);
  });

  it('init is idempotent and audited', async () => {
    const before = await f.ca.current();
    const again = await f.ca.init(admin);
    assert.equal(again.serial, before.serial);
    const events = await f.events();
    assert.ok(
      events.some((e) => e.action === 'ca.init' && e.outcome === 'success' && e.principal.id === admin.id),
    );
    // Every CA signature went through the KMS, under the CA's own principal.
    assert.ok(events.some((e) => e.action === 'kms.crypto.sign' && e.principal.id === 'system:ca'));
  });

  it('refuses a KMS key that is not ECDSA', async () => {
    const g = await caFixture({ init: false });
    await g.kms.service.createKey(admin, { name: 'warden-ca', type: 'aes256-gcm' });
    await rejectsWith(g.ca.init(admin), 'ca_key_unsuitable');
    await g.close();
  });

  it('refuses to issue before init', async () => {
    const g = await caFixture({ init: false });
    await rejectsWith(
      g.ca.issue(admin, { profile: 'client', publicKey: ecKeyPair().publicPem, identity: 'service:x' }),
      'ca_not_initialized',
    );
    await g.close();
  });

  it('works on a P-384 KMS key (ecdsa-with-SHA384)', async () => {
    const g = await caFixture({ keyType: 'ecdsa-p384' });
    const info = await g.ca.current();
    assert.deepEqual(parsed(info.certificate).signatureAlgorithm, {
      name: 'ECDSA',
      hash: { name: 'SHA-384' },
    });
    const issued = await g.ca.issue(admin, {
      profile: 'server',
      publicKey: ecKeyPair('P-384').publicPem,
      dnsNames: ['big.warden.internal'],
    });
    assert.ok(
      new X509Certificate(issued.certificate).verify(new X509Certificate(info.certificate).publicKey),
    );
    const v = await opensslVerify(g.dir, info.certificate, issued.certificate, ['-purpose', 'sslserver']);
    assert.ok(v.ok, v.output);
    await g.close();
  });
});

describe('issuance', async () => {
  const f = await caFixture();
  const caPem = (await f.ca.current()).certificate;
  const caCert = new X509Certificate(caPem);
  after(() => f.close());

  it('issues a server certificate from an OpenSSL CSR: names from the request, never from the CSR', async () => {
    const key = ecKeyPair();
    const csrFile = path.join(f.dir, 'evil.key');
    await writeFile(csrFile, key.privatePem, { mode: 0o600 });
    const { stdout: csr } = await run('openssl', [
      'req',
      '-new',
      '-key',
      csrFile,
      '-subj',
      '/CN=evil.example/O=Attacker',
      '-addext',
      'subjectAltName=DNS:evil.example,IP:10.6.6.6',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    const issued = await f.ca.issue(admin, {
      profile: 'server',
      csr,
      dnsNames: ['Model.Warden.Internal', 'model.warden.internal'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const cert = new X509Certificate(issued.certificate);
    assert.ok(cert.verify(caCert.publicKey));
    assert.ok(cert.checkIssued(caCert));
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, 'CN=model.warden.internal');
    assert.equal(
      cert.subjectAltName,
      'DNS:model.warden.internal, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(cert.publicKey.export({ format: 'pem', type: 'spki' }).toString(), key.publicPem);
    assert.equal(issued.identity, 'dns:model.warden.internal,ip:127.0.0.1,ip:::1');
    assert.equal(issued.chain, issued.certificate + caPem);
    const p = parsed(issued.certificate);
    assert.equal(p.getExtension(x509.BasicConstraintsExtension)?.ca, false);
    assert.equal(p.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.equal(
      p.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
      parsed(caPem).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
    assert.ok(p.getExtension(x509.SubjectKeyIdentifierExtension) !== null);
    // Default server lifetime: 24 h (plus the one-minute backdating).
    assert.equal(issued.notAfter.getTime() - issued.notBefore.getTime(), 24 * HOUR + 60_000);
    const server = await opensslVerify(f.dir, caPem, issued.certificate, ['-purpose', 'sslserver']);
    assert.ok(server.ok, server.output);
    const asClient = await opensslVerify(f.dir, caPem, issued.certificate, ['-purpose', 'sslclient']);
    assert.equal(asClient.ok, false, 'a server certificate must not pass as a client certificate');
  });

  it('issues a client certificate binding a SPIFFE identity', async () => {
    const key = ecKeyPair();
    const issued = await f.ca.issue(admin, {
      profile: 'client',
      csr: await opensslCsr(f.dir, key),
      identity: 'service:gateway',
    });
    const cert = new X509Certificate(issued.certificate);
    assert.equal(cert.subjectAltName, 'URI:spiffe://warden/service/gateway');
    assert.equal(cert.subject, 'CN=service:gateway');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(issued.identity, 'service:gateway');
    assert.equal(issued.notAfter.getTime() - issued.notBefore.getTime(), HOUR + 60_000);
    const v = await opensslVerify(f.dir, caPem, issued.certificate, ['-purpose', 'sslclient']);
    assert.ok(v.ok, v.output);
    const asServer = await opensslVerify(f.dir, caPem, issued.certificate, ['-purpose', 'sslserver']);
    assert.equal(asServer.ok, false);
  });

  it('certifies Ed25519 and RSA keys, refuses weak or unsupported ones', async () => {
    for (const type of ['ed25519', 'rsa'] as const) {
      const { publicKey } =
        type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
      const issued = await f.ca.issue(admin, {
        profile: 'client',
        publicKey: publicKey.export({ format: 'der', type: 'spki' }),
        identity: 'user:alice@example.com',
      });
      assert.ok(new X509Certificate(issued.certificate).verify(caCert.publicKey));
    }
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    await rejectsWith(
      f.ca.issue(admin, {
        profile: 'client',
        publicKey: weak.export({ format: 'pem', type: 'spki' }).toString(),
        identity: 'service:x',
      }),
      'invalid_public_key',
    );
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey;
    await rejectsWith(
      f.ca.issue(admin, {
        profile: 'client',
        publicKey: k1.export({ format: 'der', type: 'spki' }),
        identity: 'service:x',
      }),
      'invalid_public_key',
    );
  });

  it('refuses a CSR whose signature does not verify', async () => {
    const csrPem = await opensslCsr(f.dir, ecKeyPair());
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    // Flip a bit of the subject (signed bytes) and, separately, of the signature value.
    const tamperedBody = Buffer.from(der);
    const cn = tamperedBody.indexOf(Buffer.from('ignored'));
    tamperedBody[cn] = (tamperedBody[cn] ?? 0) ^ 0x01;
    await rejectsWith(
      f.ca.issue(admin, { profile: 'client', csr: tamperedBody, identity: 'service:x' }),
      'csr_signature_invalid',
    );
    const tamperedSig = Buffer.from(der);
    const last = tamperedSig.length - 5;
    tamperedSig[last] = (tamperedSig[last] ?? 0) ^ 0x40;
    await rejectsWith(
      f.ca.issue(admin, { profile: 'client', csr: tamperedSig, identity: 'service:x' }),
      'csr_signature_invalid',
    );
    // A CSR signed by another key than the one it carries.
    const other = ecKeyPair();
    const swapped = await opensslCsr(f.dir, ecKeyPair());
    const otherSpki = other.spkiDer;
    const swappedDer = Buffer.from(swapped.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
    // A P-256 SPKI is a fixed 26-byte header then the 65-byte point: overwrite the point in place.
    const header = swappedDer.indexOf(otherSpki.subarray(0, 26));
    assert.ok(header > 0);
    otherSpki.subarray(26).copy(swappedDer, header + 26);
    await rejectsWith(
      f.ca.issue(admin, { profile: 'client', csr: swappedDer, identity: 'service:x' }),
      'csr_signature_invalid',
    );
  });

  it('needs exactly one key source and a valid profile', async () => {
    const key = ecKeyPair();
    await rejectsWith(
      f.ca.issue(admin, {
        profile: 'client',
        identity: 'service:x',
        publicKey: key.publicPem,
        csr: 'x',
      } as never),
      'invalid_request',
    );
    await rejectsWith(
      f.ca.issue(admin, { profile: 'client', identity: 'service:x' } as never),
      'invalid_request',
    );
    await rejectsWith(
      f.ca.issue(admin, { profile: 'root', publicKey: key.publicPem } as never),
      'invalid_request',
    );
  });

  it('enforces lifetimes: defaults, configured maxima, hard maxima, minimum', async () => {
    const publicKey = ecKeyPair().publicPem;
    const server = await f.ca.issue(admin, {
      profile: 'server',
      publicKey,
      dnsNames: ['a.warden.internal'],
      lifetimeMs: 72 * HOUR,
    });
    assert.equal(server.notAfter.getTime() - server.notBefore.getTime(), 72 * HOUR + 60_000);
    await rejectsWith(
      f.ca.issue(admin, { profile: 'server', publicKey, dnsNames: ['a.b'], lifetimeMs: 72 * HOUR + 1000 }),
      'lifetime_exceeded',
    );
    await rejectsWith(
      f.ca.issue(admin, {
        profile: 'client',
        publicKey,
        identity: 'service:x',
        lifetimeMs: 24 * HOUR + 1000,
      }),
      'lifetime_exceeded',
    );
    await rejectsWith(
      f.ca.issue(admin, { profile: 'client', publicKey, identity: 'service:x', lifetimeMs: 60_000 }),
      'invalid_request',
    );
    await rejectsWith(
      f.ca.issue(admin, {
        profile: 'client',
        publicKey,
        identity: 'service:x',
        lifetimeMs: 1.5 * HOUR + 0.5,
      }),
      'invalid_request',
    );
    const audit: AuditRecorder = { record: () => Promise.resolve(), close: () => Promise.resolve() };
    const base = { kms: f.kms.service, keyName: 'warden-ca', repository: f.repository, audit };
    for (const bad of [
      { client: { maxMs: HARD_MAX_LIFETIME_MS.client + 1 } },
      { server: { maxMs: HARD_MAX_LIFETIME_MS.server + 1 } },
      { server: { defaultMs: 80 * HOUR } },
      { caLifetimeMs: 10 * DAY },
      { crlValidityMs: 10 },
    ] satisfies Partial<CertificateAuthorityOptions>[]) {
      assert.throws(
        () => new CertificateAuthority({ ...base, ...bad }),
        (err: unknown) => err instanceof CaError && err.code === 'invalid_request',
      );
    }
  });

  it('validates names and identities', async () => {
    const publicKey = ecKeyPair().publicPem;
    for (const dnsNames of [
      ['*.warden.internal'],
      ['-bad.example'],
      ['a..b'],
      ['x'.repeat(64) + '.com'],
      ['ünï.example'],
    ]) {
      await rejectsWith(f.ca.issue(admin, { profile: 'server', publicKey, dnsNames }), 'invalid_request');
    }
    await rejectsWith(f.ca.issue(admin, { profile: 'server', publicKey }), 'invalid_request');
    await rejectsWith(
      f.ca.issue(admin, { profile: 'server', publicKey, ipAddresses: ['300.1.1.1'] }),
      'invalid_request',
    );
    for (const identity of [
      'gateway',
      'system:ca',
      'service:',
      'service:a/b',
      'service:-x',
      `service:${'a'.repeat(129)}`,
    ]) {
      await rejectsWith(f.ca.issue(admin, { profile: 'client', publicKey, identity }), 'invalid_request');
    }
    // A long identity does not fit the CN (64 characters): the subject is empty and the SAN critical.
    const long = await f.ca.issue(admin, {
      profile: 'client',
      publicKey,
      identity: `service:${'a'.repeat(100)}`,
    });
    const p = parsed(long.certificate);
    assert.equal(p.subject, '');
    assert.equal(p.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
    const v = await opensslVerify(f.dir, caPem, long.certificate, ['-purpose', 'sslclient']);
    assert.ok(v.ok, v.output);
  });

  it('draws random positive 128-bit serial numbers', async () => {
    const publicKey = ecKeyPair().publicPem;
    const serials = new Set<string>();
    let topBitSet = false;
    for (let i = 0; i < 16; i++) {
      const issued = await f.ca.issue(admin, { profile: 'client', publicKey, identity: 'service:serial' });
      const cert = new X509Certificate(issued.certificate);
      assert.equal(cert.serialNumber.toLowerCase().replace(/^0+/, ''), issued.serial.replace(/^0+/, ''));
      assert.ok(issued.serial.length <= 32 && /^[0-9a-f]+$/.test(issued.serial));
      if (issued.serial.length === 32 && /^[89a-f]/.test(issued.serial)) topBitSet = true;
      serials.add(issued.serial);
      // DER: the certificate parses in a strict parser that rejects negative serials (@peculiar/x509 too).
      assert.equal(serialHex(parsed(issued.certificate).serialNumber), issued.serial);
    }
    assert.equal(serials.size, 16);
    // With 16 draws, P(no top bit set) = 2^-16: the sign byte path is exercised.
    assert.ok(topBitSet);
  });

  it('applies the DNS and IP policy', async () => {
    const g = await caFixture({ ca: { allowedDnsSuffixes: ['warden.internal'], allowIpAddresses: false } });
    const publicKey = ecKeyPair().publicPem;
    await g.ca.issue(admin, {
      profile: 'server',
      publicKey,
      dnsNames: ['warden.internal', 'x.y.warden.internal'],
    });
    await rejectsWith(
      g.ca.issue(admin, { profile: 'server', publicKey, dnsNames: ['evilwarden.internal'] }),
      'name_not_allowed',
    );
    await rejectsWith(
      g.ca.issue(admin, {
        profile: 'server',
        publicKey,
        dnsNames: ['a.warden.internal'],
        ipAddresses: ['10.0.0.1'],
      }),
      'name_not_allowed',
    );
    const failures = (await g.events()).filter((e) => e.action === 'ca.issue' && e.outcome === 'failure');
    assert.ok(failures.length >= 2 && failures.every((e) => e.reason === 'name_not_allowed'));
    await g.close();
  });

  it('withholds the certificate when the audit event cannot be recorded', async () => {
    const failing: AuditRecorder = {
      record: (event: AuditEvent) =>
        event.action === 'ca.issue' ? Promise.reject(new Error('audit disk full')) : Promise.resolve(),
      close: () => Promise.resolve(),
    };
    const ca = new CertificateAuthority({
      kms: f.kms.service,
      keyName: 'warden-ca',
      repository: f.repository,
      audit: failing,
    });
    await assert.rejects(
      ca.issue(admin, { profile: 'client', publicKey: ecKeyPair().publicPem, identity: 'service:x' }),
      /audit disk full/,
    );
  });
});

describe('rotation and renewal', async () => {
  const f = await caFixture();
  after(() => f.close());
  const key = ecKeyPair();

  it('rotating the CA key yields a new CA certificate; the bundle keeps the old one', async () => {
    const v1 = await f.ca.current();
    const old = await f.ca.issue(admin, {
      profile: 'client',
      publicKey: key.publicPem,
      identity: 'service:a',
    });
    const v2 = await f.ca.rotate(admin);
    assert.equal(v2.keyVersion, 2);
    assert.notEqual(v2.serial, v1.serial);
    assert.equal(new X509Certificate(v2.certificate).subject, 'CN=Warden Internal CA v2\nO=Warden');
    const fresh = await f.ca.issue(admin, {
      profile: 'client',
      publicKey: key.publicPem,
      identity: 'service:a',
    });
    const freshCert = new X509Certificate(fresh.certificate);
    assert.ok(freshCert.verify(new X509Certificate(v2.certificate).publicKey));
    assert.equal(freshCert.verify(new X509Certificate(v1.certificate).publicKey), false);
    const bundle = await f.ca.trustBundle();
    assert.deepEqual(bundle.certificates.map((c) => c.keyVersion).sort(), [1, 2]);
    for (const leaf of [old, fresh]) {
      const v = await opensslVerify(f.dir, bundle.pem, leaf.certificate, ['-purpose', 'sslclient']);
      assert.ok(v.ok, v.output);
    }
    assert.ok((await f.events()).some((e) => e.action === 'ca.rotate' && e.outcome === 'success'));
  });

  it('adopts a KMS rotation made behind its back before signing with the new version', async () => {
    await f.kms.service.rotateKey(admin, 'warden-ca');
    const issued = await f.ca.issue(admin, {
      profile: 'client',
      publicKey: key.publicPem,
      identity: 'service:a',
    });
    const current = await f.ca.current();
    assert.equal(current.keyVersion, 3);
    assert.ok(
      new X509Certificate(issued.certificate).verify(new X509Certificate(current.certificate).publicKey),
    );
    assert.ok(
      (await f.events()).some((e) => e.action === 'ca.certificate.create' && e.principal.id === 'system:ca'),
    );
  });

  it('renews the CA certificate before a leaf could outlive it, and drops expired ones from the bundle', async () => {
    const before = await f.ca.current();
    f.clock.now += 365 * DAY - 5 * DAY;
    const issued = await f.ca.issue(admin, {
      profile: 'server',
      publicKey: key.publicPem,
      dnsNames: ['r.internal'],
    });
    const renewed = await f.ca.current();
    assert.notEqual(renewed.serial, before.serial);
    assert.equal(renewed.keyVersion, before.keyVersion);
    assert.equal(renewed.subject, before.subject);
    assert.ok(issued.notAfter.getTime() <= renewed.notAfter.getTime());
    f.clock.now += 10 * DAY;
    const bundle = await f.ca.trustBundle();
    assert.deepEqual(
      bundle.certificates.map((c) => c.serial),
      [renewed.serial],
    );
  });
});

for (const dialect of ['sqlite', 'postgres'] as Dialect[]) {
  describe(`inventory, revocation and CRL (${dialect})`, async () => {
    const f = await caFixture({ dialect });
    const caPem = (await f.ca.current()).certificate;
    after(() => f.close());
    const key = ecKeyPair();

    it('lists, revokes and publishes a CRL signed through the KMS', async () => {
      const a = await f.ca.issue(admin, {
        profile: 'client',
        publicKey: key.publicPem,
        identity: 'service:a',
      });
      const b = await f.ca.issue(admin, {
        profile: 'server',
        publicKey: key.publicPem,
        dnsNames: ['b.internal'],
      });
      const listed = await f.ca.list();
      assert.ok(
        listed.some((r) => r.serial === a.serial && r.identity === 'service:a' && r.issuedBy === admin.id),
      );
      assert.deepEqual(
        (await f.ca.list({ profile: 'server' })).map((r) => r.serial),
        [b.serial],
      );
      const empty = await f.ca.crl();
      assert.equal(empty.entries, 0);
      const revoked = await f.ca.revoke(admin, a.serial.toUpperCase(), 'keyCompromise');
      assert.equal(revoked.revocationReason, 'keyCompromise');
      assert.equal(await f.ca.isRevoked(a.serial), true);
      assert.equal(await f.ca.isRevoked(b.serial), false);
      await rejectsWith(f.ca.revoke(admin, a.serial), 'already_revoked');
      await rejectsWith(f.ca.revoke(admin, 'ab'.repeat(16)), 'certificate_not_found');
      await rejectsWith(f.ca.revoke(admin, 'not hex'), 'invalid_request');
      await rejectsWith(f.ca.revoke(admin, (await f.ca.current()).serial), 'invalid_request');
      const crl = await f.ca.crl();
      assert.equal(crl.entries, 1);
      const parsedCrl = new x509.X509Crl(crl.der);
      assert.equal(serialHex(parsedCrl.entries[0]?.serialNumber ?? ''), a.serial);
      assert.equal(parsedCrl.entries[0]?.reason, x509.X509CrlReason.keyCompromise);
      assert.ok(await parsedCrl.verify({ publicKey: parsed(caPem).publicKey }));
      assert.equal(crl.nextUpdate.getTime() - crl.thisUpdate.getTime(), HOUR);
      const bad = await opensslVerify(f.dir, caPem, a.certificate, [], crl.pem);
      assert.equal(bad.ok, false);
      assert.match(bad.output, /revoked/);
      const good = await opensslVerify(f.dir, caPem, b.certificate, [], crl.pem);
      assert.ok(good.ok, good.output);
      const events = await f.events();
      assert.ok(
        events.some(
          (e) => e.action === 'ca.revoke' && e.outcome === 'success' && e.details?.reason === 'keyCompromise',
        ),
      );
    });

    it('keeps expired certificates out of the CRL and the default listing', async () => {
      f.clock.now += 2 * HOUR;
      assert.equal((await f.ca.crl()).entries, 0);
      assert.ok((await f.ca.list()).every((r) => r.profile !== 'client'));
      assert.ok((await f.ca.list({ includeExpired: true })).some((r) => r.profile === 'client'));
    });
  });
}
