import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Pkcs11RootOfTrust } from '../../../src/kms/root/pkcs11.ts';
import { createSoftHsmToken } from '../../support/softhsm.ts';
import { admin, caFixture, ecKeyPair, run } from './support.ts';

/** The CA on a KMS whose root key is inside a PKCS#11 token (SoftHSM2): nothing in the CA changes. */
describe('CA on a PKCS#11 root (SoftHSM2)', async () => {
  const token = await createSoftHsmToken();
  const root = await Pkcs11RootOfTrust.open({
    modulePath: token.modulePath,
    tokenLabel: token.tokenLabel,
    pin: token.pin,
  });
  await root.initialize();
  const f = await caFixture({ root, keyType: 'ecdsa-p384' });
  after(async () => {
    await f.close();
    await root.close();
    await token.cleanup();
  });

  it('issues certificates and CRLs that OpenSSL verifies', async () => {
    const ca = await f.ca.current();
    const issued = await f.ca.issue(admin, {
      profile: 'server',
      publicKey: ecKeyPair().publicPem,
      dnsNames: ['hsm.warden.internal'],
    });
    assert.ok(new X509Certificate(issued.certificate).verify(new X509Certificate(ca.certificate).publicKey));
    await f.ca.revoke(admin, issued.serial, 'cessationOfOperation');
    const crl = await f.ca.crl();
    const files = {
      ca: path.join(f.dir, 'ca.pem'),
      leaf: path.join(f.dir, 'leaf.pem'),
      crl: path.join(f.dir, 'crl.pem'),
    };
    await writeFile(files.ca, ca.certificate);
    await writeFile(files.leaf, issued.certificate);
    await writeFile(files.crl, crl.pem);
    const { stdout } = await run('openssl', ['verify', '-CAfile', files.ca, files.leaf]);
    assert.match(stdout, /OK/);
    await assert.rejects(
      run('openssl', ['verify', '-crl_check', '-CAfile', files.ca, '-CRLfile', files.crl, files.leaf]),
      (err: { stdout: string; stderr: string }) => /revoked/.test(err.stdout + err.stderr),
    );
  });
});
