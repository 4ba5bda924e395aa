import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { makeDirectoryDurably, writeFileDurably } from '../durable/index.ts';

/**
 * The development TLS identity generated at first start: a local CA and a server certificate it signs for
 * localhost, 127.0.0.1 and ::1 (ECDSA P-256). Clients trust `ca.pem` (WARDEN_CACERT). The identity issue replaces
 * this with certificates from Warden's internal CA.
 */
export interface DevTls {
  readonly caPath: string;
  readonly key: string;
  readonly cert: string;
  readonly created: boolean;
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export async function ensureDevTls(dir: string, hostnames: readonly string[] = []): Promise<DevTls> {
  const caPath = path.join(dir, 'ca.pem');
  const certPath = path.join(dir, 'server.pem');
  const keyPath = path.join(dir, 'server.key');
  try {
    return {
      caPath,
      key: await readFile(keyPath, 'utf8'),
      cert: await readFile(certPath, 'utf8'),
      created: false,
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await makeDirectoryDurably(dir);
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const now = new Date();
  const caKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: 'CN=Warden development CA',
    notBefore: now,
    notAfter: new Date(now.getTime() + 365 * 24 * 3600 * 1000),
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const serverKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const names = ['localhost', ...hostnames.filter((h) => h !== 'localhost')];
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore: now,
    notAfter: new Date(now.getTime() + 90 * 24 * 3600 * 1000),
    signingKey: caKeys.privateKey,
    publicKey: serverKeys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        ...names.map((value) => ({ type: 'dns' as const, value })),
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8' })
    .toString();
  pkcs8.fill(0);
  const cert = `${server.toString('pem')}\n${ca.toString('pem')}\n`;
  // Each file whole or absent after a crash; the certificate last, since its presence (with the key's) is what
  // the next start takes for a complete identity.
  await writeFileDurably(caPath, `${ca.toString('pem')}\n`, { mode: 0o644 });
  await writeFileDurably(keyPath, key, { mode: 0o600 });
  await writeFileDurably(certPath, cert, { mode: 0o644 });
  return { caPath, key, cert, created: true };
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}
