import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditRecorder } from '../audit/index.ts';
import type { KmsService, Principal } from '../kms/index.ts';
import { kmsPrincipal, principalContext } from '../policy/index.ts';
import type { PolicyEngine } from '../policy/index.ts';
import {
  ArtifactVault,
  FsBlobStore,
  Registry,
  RegistryForbiddenError,
  RegistryRepository,
  kmsRegistryKeys,
} from '../registry/index.ts';
import type { RegistrySchema } from '../registry/index.ts';
import { openStore } from '../store/index.ts';
import type { Store, StoreConfig } from '../store/index.ts';
import { DEMO_MODEL } from './gateway.ts';

/** Warden's registry keys: artifact data keys and the OMS signing key (private half never leaves the KMS). */
const DATA_KEY = 'warden.registry-data';
const SIGNING_KEY = 'warden.registry-signing';
/** The registry's identity towards the KMS (Cedar: key-user). */
const REGISTRY_PRINCIPAL: Principal = { id: 'service:registry', roles: ['key-user'], authMethod: 'internal' };
/** Registers, signs and deploys the demo model at start-up. */
const DEMO_PUBLISHER: Principal = {
  id: 'system:demo',
  roles: ['admin'],
  authMethod: 'internal',
  kind: 'service',
};

export interface OpenedRegistry {
  readonly registry: Registry;
  close(): Promise<void>;
}

/**
 * The registry as `warden server` runs it: metadata in its own store (registry.db or the PostgreSQL database),
 * artifacts envelope-encrypted with KMS data keys in a content-addressed blob store under the data directory,
 * signatures by a KMS-held ECDSA key that is also the trusted signer, and every operation authorised by Cedar.
 */
export async function openRegistry(options: {
  readonly store: StoreConfig;
  readonly dataDir: string;
  readonly kms: KmsService;
  readonly audit: AuditRecorder;
  readonly policy: PolicyEngine;
  readonly environment: string;
}): Promise<OpenedRegistry> {
  const { kms } = options;
  await kms.ensureSystemKey({ name: DATA_KEY, type: 'aes256-gcm' });
  await kms.ensureSystemKey({ name: SIGNING_KEY, type: 'ecdsa-p256', rotationPeriodDays: 0 });
  const { pem } = await kms.publicKey(REGISTRY_PRINCIPAL, SIGNING_KEY);
  const store: Store<RegistrySchema> = await openStore<RegistrySchema>(options.store);
  try {
    const repository = await RegistryRepository.open(store);
    const blobs = await FsBlobStore.open(path.join(options.dataDir, 'blobs'));
    const { keys, signer } = kmsRegistryKeys(kms, REGISTRY_PRINCIPAL, {
      dataKeyName: DATA_KEY,
      signingKeyName: SIGNING_KEY,
    });
    const registry = new Registry({
      repository,
      vault: new ArtifactVault(blobs, keys),
      audit: options.audit,
      trustedSigners: [{ id: SIGNING_KEY, trust: { publicKey: pem } }],
      signer,
      stagingDir: path.join(options.dataDir, 'staging'),
      authorize: (principal, action, resource) => {
        const decision = options.policy.authorize({
          principal: kmsPrincipal(principal),
          action,
          resource,
          context: { ...principalContext(principal), environment: options.environment },
        });
        return decision.decision === 'allow'
          ? Promise.resolve()
          : Promise.reject(new RegistryForbiddenError(`not allowed to ${action}`));
      },
    });
    return {
      registry,
      close: () => store.close(),
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * The quickstart's demo model as a registry entry: its weights as a model directory, registered, scanned,
 * signed with the registry key and deployed to the configured environment's stage, so that the gateway's
 * servable check (signed, verified, clean, deployed, not quarantined) passes for it — and a quarantine stops it.
 */
export async function publishDemoModel(
  registry: Registry,
  workDir: string,
  name: string,
  weights: Readonly<Record<string, unknown>>,
  stage: string,
): Promise<void> {
  const version = DEMO_MODEL.version;
  const existing = await registry.servable(name, version).catch(() => undefined);
  if (existing?.servable === true) return;
  const dir = path.join(workDir, name);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'weights.json'), `${JSON.stringify(weights, null, 2)}\n`);
  await writeFile(
    path.join(dir, 'README.md'),
    'Warden demo: logistic-regression credit scoring (src/gateway/demo-model.ts).\n',
  );
  try {
    await registry.getModelVersion(DEMO_PUBLISHER, name, version);
  } catch {
    await registry.registerModelVersion(DEMO_PUBLISHER, {
      model: name,
      version,
      dir,
      metadata: { description: `Warden demo model ${name}` },
    });
  }
  await registry.sign(DEMO_PUBLISHER, name, version);
  await registry.promote(DEMO_PUBLISHER, name, version, stage);
}
