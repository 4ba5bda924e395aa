import type { SecureContextOptions } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import {
  SoftwareRootOfTrust,
  fileSealStateStore,
  openKmsRuntime,
  openPkcs11Root,
  startKmsScheduler,
} from '../kms/index.ts';
import type { KmsRuntime, KmsScheduler, RootOfTrust } from '../kms/index.ts';
import {
  FILE_POLICY_PREFIX,
  PolicyEngine,
  PolicyStore,
  SqlPolicies,
  cedarKmsAuthorizer,
} from '../policy/index.ts';
import type { PoliciesDB } from '../policy/index.ts';
import {
  auditRoutes,
  bootstrapTokenAuthenticator,
  createKmsServer,
  identitiesRoutes,
  selfServiceAuthorizer,
  oauthRoutes,
  caRoutes,
  policyChangeCheck,
  policyRoutes,
  principalOf,
  registryRoutes,
} from '../server/index.ts';
import type { Authenticate } from '../server/index.ts';
import { openStore } from '../store/index.ts';
import { CertificateAuthority, SqlCaRepository } from '../identity/index.ts';
import type { CaSchema, IdentityDB } from '../identity/index.ts';
import type { OperatorControl } from '../server/index.ts';
import type { StoreConfig } from '../store/index.ts';
import { openAuditTrail } from './audit-trail.ts';
import type { AuditTrail } from './audit-trail.ts';
import type { WardenConfig } from './config.ts';
import { IdentityRuntime } from './identity.ts';
import { openIdentityFactors } from './identity-factors.ts';
import type { IdentityFactors } from './identity-factors.ts';
import { DEMO_MODEL, gatewayBodyLimit, openEmbeddedGateway } from './gateway.ts';
import { lateBound } from './late-bound.ts';
import { startClientTrust } from './client-trust.ts';
import type { ClientTrust } from './client-trust.ts';
import { openRegistry, publishDemoModel } from './registry.ts';
import type { OpenedRegistry } from './registry.ts';
import { CREDIT_BIAS, CREDIT_FEATURES, CREDIT_WEIGHTS, registerGatewayRoutes } from '../gateway/index.ts';
import type { EmbeddedGateway } from './gateway.ts';
import { ensureDevTls } from './dev-tls.ts';
import { pkcs11Operator, softwareOperator } from './operator.ts';
import { makeDirectoryDurably, writeFileDurably } from '../durable/index.ts';

export interface RunningWarden {
  readonly url: string;
  readonly caPath: string;
  readonly tokenPath: string;
  readonly tokenCreated: boolean;
  readonly root: RootOfTrust;
  readonly kms: KmsRuntime;
  readonly audit: AuditTrail;
  readonly identity: IdentityRuntime;
  readonly ca: CertificateAuthority;
  /** Mutual TLS: the listener's trust in the internal CA (refreshed every 30 s; `refresh` forces it). */
  readonly clientTrust: ClientTrust;
  readonly gateway: EmbeddedGateway | undefined;
  readonly registry: OpenedRegistry | undefined;
  readonly policy: PolicyEngine;
  readonly server: FastifyInstance;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Operational messages (maintenance runs, warnings). */
  readonly log?: (line: string) => void;
  /** Where JSON request logs go (default stderr); they never contain bodies, tokens or key material. */
  readonly requestLog?: NodeJS.WritableStream;
}

/**
 * Starts Warden: data directory, stores (SQLite by default, PostgreSQL when configured), root of trust, the
 * tamper-evident audit log, the KMS with its rotation scheduler, identity, policies, the internal CA, the registry
 * and the inference gateway, behind one HTTPS API. On embedded defaults everything lives in the data directory:
 * warden.db and keystore.db (separate), audit.db, identity.db, registry.db with blobs/, webauthn.db, tls/, and the
 * bootstrap token. Services that need KMS keys open once the root is unsealed.
 */
/** The internal CA's KMS key: used only by the CA (`componentKeys`). */
const CA_KEY = 'internal-ca';

export async function startWarden(config: WardenConfig, options: StartOptions = {}): Promise<RunningWarden> {
  const log = options.log ?? (() => undefined);
  await makeDirectoryDurably(config.dataDir);
  const file = (name: string) => path.join(config.dataDir, name);
  const { root, operatorFor } = await openRoot(config, file);
  const stores: Record<'metadata' | 'keystore' | 'audit' | 'identity' | 'registry', StoreConfig> =
    config.databaseUrl !== undefined && config.keystoreUrl !== undefined
      ? {
          metadata: { kind: 'postgres', url: config.databaseUrl },
          keystore: { kind: 'postgres', url: config.keystoreUrl },
          audit: { kind: 'postgres', url: config.databaseUrl },
          identity: { kind: 'postgres', url: config.databaseUrl },
          registry: { kind: 'postgres', url: config.databaseUrl },
        }
      : {
          metadata: { kind: 'sqlite', path: file('warden.db') },
          keystore: { kind: 'sqlite', path: file('keystore.db') },
          audit: { kind: 'sqlite', path: file('audit.db') },
          identity: { kind: 'sqlite', path: file('identity.db') },
          registry: { kind: 'sqlite', path: file('registry.db') },
        };
  const audit = await openAuditTrail({
    store: stores.audit,
    origin: config.audit.origin,
    retentionDays: config.audit.retentionDays,
    sinks: config.audit.sinks,
    log,
  });
  const policyStore = new PolicyStore({ guardrails: config.policies.guardrails });
  for (const [name, text] of config.policies.files) policyStore.add(`${FILE_POLICY_PREFIX}${name}`, text);
  const policy = new PolicyEngine({ store: policyStore, timeZone: config.policies.timeZone });
  const kms = await openKmsRuntime({
    metadata: stores.metadata,
    keystore: stores.keystore,
    root,
    audit: audit.recorder,
    authorizer: cedarKmsAuthorizer(policy, { context: () => ({ environment: config.environment }) }),
    // Whoever could sign with the CA's key could issue certificates, mTLS client identities included.
    componentKeys: [CA_KEY],
  });
  audit.attach(kms.service);
  // Learns the checkpoint key now when the root is unsealed (dev mode); otherwise after the unseal.
  audit.signer.load().catch(() => undefined);
  const scheduler: KmsScheduler = startKmsScheduler(kms.service, {
    intervalMs: config.rotationCheckSeconds * 1000,
    onRun: (r) => {
      if (r.rotated.length + r.destroyed.length + r.floorsRaised.length > 0)
        log(`maintenance: ${JSON.stringify(r)}`);
    },
    onError: (err) => {
      log(`maintenance skipped: ${err instanceof Error ? err.message : String(err)}`);
    },
  });
  const { token, created: tokenCreated } = await ensureBootstrapToken(file('bootstrap-token'));
  const tls = await ensureDevTls(file('tls'));
  const identityStore = await openStore<IdentityDB & PoliciesDB & CaSchema>(stores.identity);
  const ca = new CertificateAuthority({
    kms: kms.service,
    keyName: CA_KEY,
    repository: await SqlCaRepository.open(identityStore),
    audit: audit.recorder,
  });
  const customPolicies = await SqlPolicies.open(identityStore, policyStore, {
    onInvalid: (id, err) => {
      log(`custom policy ${id} not installed: ${err instanceof Error ? err.message : String(err)}`);
    },
  });
  // Security keys are opened after the identity runtime, which asks them about a user's second factors.
  const securityKeys: { factors?: IdentityFactors } = {};
  const identity = new IdentityRuntime({
    store: identityStore,
    kms: kms.service,
    audit: audit.recorder,
    bootstrapToken: token,
    otherMfaFactors: (principalId) =>
      securityKeys.factors?.hasSecurityKey(principalId) ?? Promise.resolve(false),
  });
  const bootstrap = bootstrapTokenAuthenticator(token);
  // The bootstrap token is a bearer only until it is redeemed for the first administrator (POST /v1/auth/bootstrap).
  const authenticate: Authenticate = async (input) => {
    const admin = await bootstrap(input);
    if (admin === undefined) return identity.ready?.authenticate(input);
    return (await identity.bootstrapRedeemed()) ? undefined : admin;
  };
  const authorizeSelf = selfServiceAuthorizer(policy, config.environment, audit.recorder);
  let issuer = '';
  const factors = await openIdentityFactors({
    identity,
    config: config.identityFactors,
    store:
      config.databaseUrl !== undefined && config.keystoreUrl !== undefined
        ? { kind: 'postgres', url: config.databaseUrl }
        : { kind: 'sqlite', path: file('webauthn.db') },
    audit: audit.recorder,
    hasher: () => audit.hasher(),
    publicUrl: () => issuer,
    log,
    authorizeSelf,
  });
  securityKeys.factors = factors;
  const openIdentity = () => {
    identity.open(issuer).catch((err: unknown) => {
      if (!(err instanceof Error && err.name === 'KmsSealedError')) {
        log(`identity service not started: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  };
  // The registry and the gateway need KMS keys to open: at start-up when the root is unsealed, else after the
  // unseal. Their routes are registered now and answer 503 `sealed` until then.
  const services: { registry?: OpenedRegistry; gateway?: EmbeddedGateway } = {};
  let opening: Promise<void> | undefined;
  const openServices = (): Promise<void> => {
    opening ??= (async () => {
      const registry = await openRegistry({
        store: stores.registry,
        dataDir: config.dataDir,
        kms: kms.service,
        audit: audit.recorder,
        policy,
        environment: config.environment,
      });
      services.registry = registry;
      const gateway = await openEmbeddedGateway({
        endpoints: config.gateway.endpoints,
        demo: config.gateway.demo,
        environment: config.environment,
        kms: kms.service,
        audit: audit.recorder,
        servable: {
          epoch: () => registry.registry.quarantineEpoch(),
          servable: async (model: string, version: string) =>
            (await registry.registry.servable(model, version)).servable,
        },
      });
      services.gateway = gateway;
      if (gateway.demo !== undefined) {
        for (const endpoint of gateway.endpoints) {
          await publishDemoModel(
            registry.registry,
            file('demo'),
            endpoint.model,
            endpoint.model === DEMO_MODEL.name
              ? { features: CREDIT_FEATURES, weights: CREDIT_WEIGHTS, bias: CREDIT_BIAS }
              : { template: 'echo' },
            config.environment,
          );
        }
      }
    })().catch((err: unknown) => {
      opening = undefined;
      throw err;
    });
    return opening;
  };
  const operator = operatorFor(kms);
  const server = await createKmsServer({
    kms: kms.service,
    operator: {
      status: () => operator.status(),
      init: (request) => operator.init(request),
      seal: () => operator.seal(),
      async unseal(share) {
        const status = await operator.unseal(share);
        if (!status.sealed) {
          audit.signer.load().catch(() => undefined);
          openIdentity();
          openServices().catch((err: unknown) => {
            log(servicesNotStarted(err));
          });
        }
        return status;
      },
    },
    authenticate,
    policy,
    environment: config.environment,
    // Client certificates are requested from the start; the internal CA's bundle replaces this trust once it exists.
    tls: { ...tls, clientCa: tls.cert },
    audit: audit.recorder,
    routes: [
      (app) => {
        auditRoutes(app, {
          log: audit.log,
          audit: audit.recorder,
          hasher: () => audit.hasher(),
          verifierKey: () => audit.signer.verifierKey,
        });
      },
      (app) => {
        policyRoutes(app, {
          policies: policyStore,
          persistence: customPolicies,
          audit: audit.recorder,
          checkChange: policyChangeCheck(policy, config.environment),
          decide: (request, candidate) =>
            candidate === undefined ? policy.authorize(request) : policy.authorizeAgainst(candidate, request),
          environment: config.environment,
        });
        caRoutes(app, { ca });
      },
      (app) => {
        registerGatewayRoutes(app, {
          gateway: lateBound(() => services.gateway?.gateway, {
            bodyLimit: gatewayBodyLimit(config.gateway.endpoints),
          }),
          principalOf,
        });
        registryRoutes(app, { registry: lateBound(() => services.registry?.registry) });
      },
      ...factors.routes,
      (app) => {
        oauthRoutes(app, { identity: identity.proxy() });
        identitiesRoutes(app, { identity: identity.proxy(), authorizeSelf });
      },
    ],
    logger: { level: 'info', stream: options.requestLog ?? process.stderr },
  });
  await server.listen({ host: config.listen.host, port: config.listen.port });
  const clientTrust = startClientTrust({
    // The listener is an https.Server (TLS configured above); Fastify types it as a plain http.Server.
    server: server.server as unknown as { setSecureContext(options: SecureContextOptions): void },
    key: tls.key,
    cert: tls.cert,
    ca,
    log,
  });
  await clientTrust.refresh().catch(() => undefined);
  const address = server.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.listen.port;
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  issuer = config.publicUrl ?? url;
  const purge = setInterval(() => {
    identity.ready?.purgeExpired().catch((err: unknown) => {
      log(`identity purge failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }, 3_600_000);
  purge.unref();
  const close = async (): Promise<void> => {
    clearInterval(purge);
    clientTrust.stop();
    customPolicies.close();
    await server.close();
    await factors.close();
    await opening?.catch(() => undefined);
    await services.gateway?.close();
    await services.registry?.close();
    await scheduler.stop();
    // The audit log signs a last checkpoint through the KMS as it closes.
    await audit.close();
    await identityStore.close();
    await kms.close();
    await root.close();
  };
  if (!root.status().sealed) {
    try {
      await identity.open(issuer);
    } catch (err) {
      // Nothing half-started: a listener left open would keep the process serving without its identity service.
      await close().catch(() => undefined);
      throw err;
    }
    // As after an unseal: the KMS, identity and policy API keep serving, so that what stopped the registry (a
    // custom policy denying Warden's own principals, most likely) can be put right over the API.
    await openServices().catch((err: unknown) => {
      log(servicesNotStarted(err));
    });
  }
  return {
    url,
    caPath: tls.caPath,
    tokenPath: file('bootstrap-token'),
    tokenCreated,
    root,
    kms,
    audit,
    identity,
    ca,
    clientTrust,
    get gateway() {
      return services.gateway;
    },
    get registry() {
      return services.registry;
    },
    policy,
    server,
    close,
  };
}

/** The operator's message when the registry and gateway could not start; the server goes on without them. */
function servicesNotStarted(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const denied =
    (err as { code?: unknown } | null)?.code === 'forbidden'
      ? " (a Cedar policy denies one of Warden's own principals — service:registry, system:demo, system:ca: " +
        'check the custom policies with `warden policies list`, fix them, and restart)'
      : '';
  return `registry and gateway not started: ${message}${denied}`;
}

async function openRoot(
  config: WardenConfig,
  file: (name: string) => string,
): Promise<{ root: RootOfTrust; operatorFor: (kms: KmsRuntime) => OperatorControl }> {
  switch (config.root) {
    case 'dev': {
      const root = await SoftwareRootOfTrust.openDevMode(file('dev-root.key'));
      return { root, operatorFor: (kms) => softwareOperator(root, kms.service) };
    }
    case 'shamir': {
      const root = await SoftwareRootOfTrust.open(fileSealStateStore(file('seal-state.json')));
      return { root, operatorFor: (kms) => softwareOperator(root, kms.service) };
    }
    case 'pkcs11': {
      const root = await openPkcs11Root();
      return { root, operatorFor: (kms) => pkcs11Operator(root, kms.service) };
    }
  }
}

/**
 * The bootstrap admin token: generated at first start into a 0600 file the CLI reads (WARDEN_TOKEN_FILE). The
 * identity work turns it into a one-time bootstrap credential.
 */
async function ensureBootstrapToken(tokenFile: string): Promise<{ token: string; created: boolean }> {
  try {
    return { token: (await readFile(tokenFile, 'utf8')).trim(), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = `wdn_boot_${randomBytes(32).toString('base64url')}`;
  await writeFileDurably(tokenFile, `${token}\n`, { mode: 0o600, exclusive: true });
  return { token, created: true };
}
