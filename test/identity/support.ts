import { after } from 'node:test';
import path from 'node:path';
import pg from 'pg';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { AeadKey, MacKey } from '../../src/crypto/index.ts';
import { BuiltInRoleAuthorizer, KmsService, SoftwareRootOfTrust } from '../../src/kms/index.ts';
import type { KeyType, Principal } from '../../src/kms/index.ts';
import {
  IdentityService,
  kmsSecretSealer,
  localSecretSealer,
  IDENTITY_SYSTEM_PRINCIPAL,
} from '../../src/identity/index.ts';
import type { IdentityDB, IdentityServiceOptions } from '../../src/identity/index.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store, StoreConfig } from '../../src/store/index.ts';
import { tempDir } from '../envelope/support.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';
import { startPostgres } from '../support/postgres.ts';

export const ISSUER = 'https://warden.test:8443';
export const ADMIN: Principal = { id: 'user:root-admin', roles: ['admin'], authMethod: 'test', kind: 'user' };
export const START = Date.UTC(2026, 0, 1);
/** Cheap argon2id parameters: the tests exercise the flows, not the cost. */
export const FAST_PASSWORDS = { memoryKiB: 64, passes: 1 } as const;

export class MemoryAudit implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  failing = false;
  record(event: AuditEvent): Promise<void> {
    if (this.failing) return Promise.reject(new Error('audit store down'));
    this.events.push(event);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  of(action: string): AuditEvent[] {
    return this.events.filter((e) => e.action === action);
  }
}

export type Dialect = 'sqlite' | 'postgres';

let postgres: Promise<{ url: string; stop(): Promise<void> }> | undefined;
let databases = 0;
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

export async function storeConfig(dialect: Dialect): Promise<StoreConfig> {
  if (dialect === 'sqlite')
    return { kind: 'sqlite', path: path.join(tempDir('warden-identity-'), 'warden.db') };
  postgres ??= startPostgres();
  const server = await postgres;
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  const name = `identity_${++databases}`;
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return { kind: 'postgres', url: server.url.replace(/\/warden_test$/, `/${name}`) };
}

export interface Fixture {
  readonly identity: IdentityService;
  readonly kms: KmsService;
  readonly store: Store<IdentityDB>;
  readonly audit: MemoryAudit;
  readonly clock: { now: number };
  readonly bootstrapToken: string;
  close(): Promise<void>;
}

export interface FixtureOptions {
  readonly dialect?: Dialect;
  readonly keyType?: KeyType;
  readonly sealer?: 'kms' | 'local';
  readonly identity?: Partial<IdentityServiceOptions>;
}

/** A real KmsService (dev root, in-memory repository) and an IdentityService over a real store. */
export async function fixture(options: FixtureOptions = {}): Promise<Fixture> {
  const dir = tempDir('warden-identity-kms-');
  const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
  const audit = new MemoryAudit();
  const kms = new KmsService({
    repository: new MemoryKmsRepository(),
    root,
    audit,
    authorizer: new BuiltInRoleAuthorizer(),
  });
  await kms.createKey(ADMIN, { name: 'identity-tokens', type: options.keyType ?? 'ecdsa-p256' });
  await kms.createKey(ADMIN, { name: 'identity-secrets', type: 'aes256-gcm' });
  const store = await openStore<IdentityDB>(await storeConfig(options.dialect ?? 'sqlite'));
  const clock = { now: START };
  const bootstrapToken = 'bootstrap-token-0123456789abcdef';
  const identity = await IdentityService.open({
    store,
    kms,
    signingKeyName: 'identity-tokens',
    macKey: MacKey.generate(),
    sealer:
      options.sealer === 'local'
        ? localSecretSealer(AeadKey.generate())
        : kmsSecretSealer(kms, IDENTITY_SYSTEM_PRINCIPAL, 'identity-secrets'),
    audit,
    issuer: ISSUER,
    bootstrapToken,
    passwordHashParams: FAST_PASSWORDS,
    now: () => clock.now,
    ...options.identity,
  });
  return {
    identity,
    kms,
    store,
    audit,
    clock,
    bootstrapToken,
    close: () => store.close(),
  };
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}
