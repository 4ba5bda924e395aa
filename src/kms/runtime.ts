import type { AuditRecorder } from '../audit/index.ts';
import { openStore } from '../store/index.ts';
import type { StoreConfig } from '../store/index.ts';
import { BuiltInRoleAuthorizer } from './authz.ts';
import type { Authorizer } from './authz.ts';
import type { RootOfTrust } from './root/types.ts';
import { SqlKmsRepository } from './sql-repository.ts';
import type { KeystoreSchema, KmsMetadataSchema } from './sql-repository.ts';
import { KmsService } from './service.ts';

export interface KmsRuntimeOptions {
  /** Warden's metadata store (key names, versions, states). */
  readonly metadata: StoreConfig;
  /** The keystore: wrapped key material only, in a separate database. */
  readonly keystore: StoreConfig;
  readonly root: RootOfTrust;
  readonly audit: AuditRecorder;
  readonly authorizer?: Authorizer;
  readonly now?: () => number;
  /** Keys besides `warden.*` that only Warden's components use (`KmsServiceOptions.componentKeys`). */
  readonly componentKeys?: readonly string[];
}

export interface KmsRuntime {
  readonly service: KmsService;
  readonly repository: SqlKmsRepository;
  close(): Promise<void>;
}

/** Opens both stores, migrates them, repairs what a crash may have left, and assembles the service. */
export async function openKmsRuntime(options: KmsRuntimeOptions): Promise<KmsRuntime> {
  if (sameDatabase(options.metadata, options.keystore)) {
    throw new Error('the keystore must be a separate database from the metadata store');
  }
  const metadata = await openStore<KmsMetadataSchema>(options.metadata);
  const keystore = await openStore<KeystoreSchema>(options.keystore);
  const repository = await SqlKmsRepository.open(metadata, keystore, options.now);
  await repository.reconcile();
  const service = new KmsService({
    repository,
    root: options.root,
    audit: options.audit,
    authorizer: options.authorizer ?? new BuiltInRoleAuthorizer(),
    now: options.now,
    ...(options.componentKeys === undefined ? {} : { componentKeys: options.componentKeys }),
  });
  return {
    service,
    repository,
    async close() {
      await repository.close();
    },
  };
}

function sameDatabase(a: StoreConfig, b: StoreConfig): boolean {
  if (a.kind === 'sqlite' && b.kind === 'sqlite') return a.path !== ':memory:' && a.path === b.path;
  if (a.kind === 'postgres' && b.kind === 'postgres')
    return a.url === b.url && (a.schema ?? '') === (b.schema ?? '');
  return false;
}
