import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import pg from 'pg';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { BuiltInRoleAuthorizer, KmsService, SoftwareRootOfTrust } from '../../src/kms/index.ts';
import type { Principal } from '../../src/kms/index.ts';
import type { ActionId, AuthzResource } from '../../src/policy/index.ts';
import {
  ArtifactVault,
  FsBlobStore,
  kmsRegistryKeys,
  Registry,
  RegistryForbiddenError,
  RegistryRepository,
  type RegistryOptions,
  type RegistrySchema,
  type TrustedSigner,
} from '../../src/registry/index.ts';
import { openStore, type StoreConfig } from '../../src/store/index.ts';
import { startPostgres } from '../support/postgres.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';

export const alice: Principal = { id: 'user:alice', roles: ['ml-engineer'], authMethod: 'test' };
export const bob: Principal = { id: 'user:bob', roles: ['ml-engineer'], authMethod: 'test' };
export const mallory: Principal = { id: 'user:mallory', roles: [], authMethod: 'test' };
/** The registry's own identity towards the KMS. */
export const registryService: Principal = {
  id: 'service:registry',
  roles: ['key-user'],
  authMethod: 'internal',
};
const kmsAdmin: Principal = { id: 'user:kms-admin', roles: ['admin'], authMethod: 'test' };

/** Records events; `failing` makes every record reject, to test fail-closed behaviour. */
export class MemoryAudit implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  failing = false;
  record(event: AuditEvent): Promise<void> {
    if (this.failing) return Promise.reject(new Error('audit sink down'));
    this.events.push(event);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Role check standing in for Cedar: principals without roles are refused; every call is remembered. */
export class RecordingAuthorizer {
  readonly calls: { principal: string; action: ActionId; resource: AuthzResource }[] = [];
  readonly authorize = (principal: Principal, action: ActionId, resource: AuthzResource): Promise<void> => {
    this.calls.push({ principal: principal.id, action, resource });
    if (principal.roles.length === 0) return Promise.reject(new RegistryForbiddenError());
    return Promise.resolve();
  };
}

let postgres: Promise<{ url: string; stop(): Promise<void> }> | undefined;
let databases = 0;
after(async () => {
  if (postgres !== undefined) await (await postgres).stop();
});

export async function storeConfig(dialect: 'sqlite' | 'postgres', dir: string): Promise<StoreConfig> {
  if (dialect === 'sqlite') return { kind: 'sqlite', path: path.join(dir, 'registry.db') };
  postgres ??= startPostgres();
  const server = await postgres;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const name = `registry_${process.pid}_${++databases}`;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return { kind: 'postgres', url: server.url.replace(/\/warden_test$/, `/${name}`) };
}

export interface Fixture {
  readonly dir: string;
  readonly registry: Registry;
  readonly repository: RegistryRepository;
  readonly blobs: FsBlobStore;
  readonly kms: KmsService;
  readonly audit: MemoryAudit;
  readonly authz: RecordingAuthorizer;
  readonly trusted: TrustedSigner[];
  /** A registry over the same store/blobs/KMS with other options (e.g. another scanner). */
  reopen(overrides: Partial<RegistryOptions>): Registry;
  close(): Promise<void>;
}

export async function fixture(
  dialect: 'sqlite' | 'postgres' = 'sqlite',
  overrides: Partial<RegistryOptions> = {},
): Promise<Fixture> {
  // Not tempDir(): its after() hook would fire at the end of the before() hook that builds the fixture.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-registry-'));
  const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
  const kmsAudit = new MemoryAudit();
  const kms = new KmsService({
    repository: new MemoryKmsRepository(),
    root,
    audit: kmsAudit,
    authorizer: new BuiltInRoleAuthorizer(),
  });
  await kms.createKey(kmsAdmin, { name: 'registry-data', type: 'aes256-gcm' });
  await kms.createKey(kmsAdmin, { name: 'registry-signing', type: 'ecdsa-p256' });
  const { pem } = await kms.publicKey(kmsAdmin, 'registry-signing');
  const trusted: TrustedSigner[] = [{ id: 'registry-signing', trust: { publicKey: pem } }];
  const store = await openStore<RegistrySchema>(await storeConfig(dialect, dir));
  const repository = await RegistryRepository.open(store);
  const blobs = await FsBlobStore.open(path.join(dir, 'blobs'));
  const { keys, signer } = kmsRegistryKeys(kms, registryService, {
    dataKeyName: 'registry-data',
    signingKeyName: 'registry-signing',
  });
  // 64 KiB chunks keep the tests' files multi-chunk so random access and tampering cross chunk boundaries.
  const vault = new ArtifactVault(blobs, keys, { chunkExponent: 16 });
  const audit = new MemoryAudit();
  const authz = new RecordingAuthorizer();
  const base: RegistryOptions = {
    repository,
    vault,
    audit,
    authorize: authz.authorize,
    trustedSigners: trusted,
    signer,
    stagingDir: path.join(dir, 'staging'),
    hashConcurrency: 1,
    ...overrides,
  };
  return {
    dir,
    registry: new Registry(base),
    repository,
    blobs,
    kms,
    audit,
    authz,
    trusted,
    reopen: (more) => new Registry({ ...base, ...more }),
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs Python (standard library only) with `out` as argv[1]. */
export function python(code: string, out: string): void {
  execFileSync('python3', ['-c', `import sys\nout = sys.argv[1]\n${code}`, out], { stdio: 'pipe' });
}

let modelCount = 0;

/**
 * A small model directory: a benign protocol-4 pickle state dict, a config, a tokenizer in a subdirectory, and
 * (with `malicious`) a pickle that calls os.system — built with python3's pickle, as test/scanner does.
 */
/** A fresh temp directory, removed by the returned cleanup. */
export function workDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-registry-work-'));
  return {
    dir,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function makeModel(
  base: string,
  options: { malicious?: boolean; suspicious?: boolean; seed?: number } = {},
): string {
  const dir = path.join(base, `model-${++modelCount}`);
  mkdirSync(path.join(dir, 'tokenizer'), { recursive: true });
  python(
    `import pickle, collections\nseed = ${options.seed ?? modelCount}\nsd = collections.OrderedDict((f"layer{i}.weight", [float((i * seed) % 7)] * 40000) for i in range(4))\nopen(out, "wb").write(pickle.dumps(sd, protocol=4))`,
    path.join(dir, 'weights.pkl'),
  );
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ hidden: 64, layers: 4, seed: options.seed ?? modelCount }),
  );
  writeFileSync(path.join(dir, 'tokenizer', 'vocab.txt'), 'a\nb\nc\n');
  if (options.malicious === true) {
    python(
      `import pickle, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ("echo pwned",))\nopen(out, "wb").write(pickle.dumps(P(), protocol=2))`,
      path.join(dir, 'extra.pkl'),
    );
  }
  if (options.suspicious === true) {
    // GLOBAL somepkg.module.Klass called with (): an import outside the allow-list (pickle.unknown-global).
    writeFileSync(path.join(dir, 'custom.pkl'), Buffer.from('\x80\x02csomepkg.module\nKlass\n)R.', 'latin1'));
  }
  return dir;
}

export function makeDataset(base: string, rows: number, seed = 1): string {
  const dir = path.join(base, `dataset-${++modelCount}`);
  mkdirSync(dir, { recursive: true });
  const lines = Array.from({ length: rows }, (_, i) => `${i},${(i * seed) % 97},label${i % 3}`).join('\n');
  writeFileSync(path.join(dir, 'train.csv'), `id,x,y\n${lines}\n`);
  writeFileSync(path.join(dir, 'README.md'), `# dataset seed ${seed}\n`);
  return dir;
}
