// @peculiar/x509 needs the Reflect metadata shim loaded first.
import 'reflect-metadata';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import pg from 'pg';
import { JsonLinesAuditRecorder } from '../../../src/audit/index.ts';
import type { AuditEvent } from '../../../src/audit/index.ts';
import { CertificateAuthority, SqlCaRepository } from '../../../src/identity/index.ts';
import type { CaSchema, CertificateAuthorityOptions } from '../../../src/identity/index.ts';
import { SoftwareRootOfTrust, openKmsRuntime } from '../../../src/kms/index.ts';
import type { KmsRuntime, Principal, RootOfTrust } from '../../../src/kms/index.ts';
import { openStore } from '../../../src/store/index.ts';
import type { Store, StoreConfig } from '../../../src/store/index.ts';
import { tempDir } from '../../envelope/support.ts';
import { startPostgres } from '../../support/postgres.ts';

export { x509 };
export const run = promisify(execFile);

export const admin: Principal = { id: 'user:alice', roles: ['admin'], authMethod: 'test' };

export interface CaFixture {
  readonly ca: CertificateAuthority;
  readonly kms: KmsRuntime;
  readonly store: Store<CaSchema>;
  readonly repository: SqlCaRepository;
  readonly dir: string;
  readonly clock: { now: number };
  readonly auditFile: string;
  events(): Promise<AuditEvent[]>;
  close(): Promise<void>;
}

export type Dialect = 'sqlite' | 'postgres';

let postgres: ReturnType<typeof startPostgres> | undefined;
let databases = 0;

/** A fresh database on one PostgreSQL cluster shared by the test file (stopped by `stopPostgres`). */
async function postgresDatabase(): Promise<StoreConfig> {
  postgres ??= startPostgres();
  const server = await postgres;
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  const name = `ca_${process.pid}_${++databases}`;
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return { kind: 'postgres', url: server.url.replace(/\/warden_test$/, `/${name}`) };
}

export async function stopPostgres(): Promise<void> {
  if (postgres !== undefined) await (await postgres).stop();
  postgres = undefined;
}

/**
 * A CA on a real KmsService (SQLite metadata and keystore, a dev software root unless one is given), its inventory
 * on SQLite or PostgreSQL, and a JSON-lines audit file. `clock.now` drives both the KMS and the CA.
 */
export async function caFixture(
  options: {
    dialect?: Dialect;
    root?: RootOfTrust;
    init?: boolean;
    keyType?: 'ecdsa-p256' | 'ecdsa-p384';
    ca?: Partial<CertificateAuthorityOptions>;
  } = {},
): Promise<CaFixture> {
  const dir = tempDir('warden-ca-');
  const clock = { now: Date.now() };
  const now = (): number => clock.now;
  const auditFile = path.join(dir, 'audit.jsonl');
  const audit = await JsonLinesAuditRecorder.open(auditFile);
  const root = options.root ?? (await SoftwareRootOfTrust.openDevMode(path.join(dir, 'root.key')));
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'meta.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root,
    audit,
    now,
  });
  const storeConfig: StoreConfig =
    options.dialect === 'postgres'
      ? await postgresDatabase()
      : { kind: 'sqlite', path: path.join(dir, 'ca.db') };
  const store = await openStore<CaSchema>(storeConfig);
  const repository = await SqlCaRepository.open(store);
  const ca = new CertificateAuthority({
    kms: kms.service,
    keyName: 'warden-ca',
    repository,
    audit,
    now,
    ...options.ca,
  });
  if (options.init !== false) await ca.init(admin, options.keyType);
  return {
    ca,
    kms,
    store,
    repository,
    dir,
    clock,
    auditFile,
    async events() {
      return (await readFile(auditFile, 'utf8'))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as AuditEvent);
    },
    async close() {
      await store.close();
      await kms.close();
      await audit.close();
    },
  };
}

export interface KeyPair {
  readonly privatePem: string;
  readonly publicPem: string;
  readonly spkiDer: Buffer;
}

export function ecKeyPair(curve: 'P-256' | 'P-384' = 'P-256'): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    spkiDer: publicKey.export({ format: 'der', type: 'spki' }),
  };
}

/** A PKCS#10 request made by OpenSSL (a separate implementation from the CA's parser). */
export async function opensslCsr(dir: string, key: KeyPair, subject = '/CN=ignored'): Promise<string> {
  const keyFile = path.join(dir, `csr-${Math.random().toString(36).slice(2)}.key`);
  await writeFile(keyFile, key.privatePem, { mode: 0o600 });
  const { stdout } = await run('openssl', ['req', '-new', '-key', keyFile, '-subj', subject]);
  return stdout;
}
