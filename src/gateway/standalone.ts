import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { FastifyInstance } from 'fastify';
import { JsonLinesAuditRecorder } from '../audit/index.ts';
import type { Policy } from '../privacy/index.ts';
import { endpointsFromFile, GatewayConfigError } from './config.ts';
import { ExtractionConfigError, ExtractionMonitor } from './extraction/index.ts';
import type { ExtractionOptions } from './extraction/index.ts';
import type { EndpointConfig } from './config.ts';
import { createGateway, gatewayOf } from './gateway.ts';
import type { Authenticate } from './gateway.ts';
import type { LimiterStore } from './limits.ts';
import { startMetricsServer } from './metrics.ts';
import { MAX_STATUS_TTL_MS, RemoteAuthenticator } from './remote-auth.ts';
import { RemoteClientCertificates } from './remote-ca.ts';
import { RemotePolicies } from './remote-policy.ts';
import { RemoteServableSource } from './remote-servable.ts';
import { WardenLink } from './remote-warden.ts';
import { unknownSetting } from '../settings/index.ts';

/**
 * The standalone gateway process (`warden gateway`): a member of a Warden deployment. It authenticates callers
 * with the server's credentials (access tokens verified locally against the JWKS, API keys and token status by
 * introspection, client certificates of Warden's CA), authorises with Cedar over the server's policies, serves
 * only what the server's registry deems servable, audits to JSON lines, shares limits through Redis, and serves
 * metrics on their own listener. The file format is specified in docs/gateway.md.
 */
export interface StandaloneConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls?: {
    readonly key: Buffer;
    readonly cert: Buffer;
    /** `request`: a client certificate of Warden's CA authenticates; `require`: every request needs one. */
    readonly clientCertificates: 'off' | 'request' | 'require';
  };
  readonly metricsListen?: { readonly host: string; readonly port: number };
  readonly auditFile: string;
  readonly auditKey: Buffer;
  /** The deployment's environment in every Cedar decision's context. */
  readonly environment: 'dev' | 'staging' | 'prod';
  readonly warden: WardenConnection;
  readonly redis?: {
    readonly url: string;
    readonly failMode: 'fail-open' | 'fail-closed';
    readonly prefix?: string;
    readonly key: Buffer;
  };
  readonly outputPolicy?: Policy;
  /** The extraction monitor's configuration, one monitor per endpoint (default: its defaults). */
  readonly extraction?: ExtractionOptions;
  readonly endpoints: readonly EndpointConfig[];
  readonly trustProxy: boolean;
}

/** The Warden server the gateway belongs to, and the gateway's own service account there. */
export interface WardenConnection {
  readonly url: string;
  readonly ca?: Buffer;
  readonly clientId: string;
  readonly clientSecret: string;
  /** `aud` of accepted access tokens; default the server's issuer. */
  readonly audience?: string;
  /** Reuse of one credential's introspection answer, ms (default 2000, at most 5000). */
  readonly statusCacheMs: number;
  /** Poll interval of the server's policies, ms (default 2000). */
  readonly policyRefreshMs: number;
  /** Poll interval of the registry's change epoch, ms (default 1000). */
  readonly servableRefreshMs: number;
  /** Poll interval of the CA's trust bundle and CRL when client certificates are on, ms (default 5000). */
  readonly crlRefreshMs: number;
  /** How long the gateway keeps deciding on its last answers while the server is unreachable, ms (default 10 000). */
  readonly graceMs: number;
  /** Per-request timeout towards the server, ms (default 5000). */
  readonly timeoutMs: number;
}

interface ConfigFile {
  listen?: string;
  insecureHttp?: boolean;
  tls?: { certFile?: string; keyFile?: string; clientCertificates?: string };
  metrics?: { listen?: string };
  audit?: { file?: string; keyFile?: string };
  environment?: string;
  warden?: {
    url?: string;
    caFile?: string;
    clientId?: string;
    clientSecretFile?: string;
    audience?: string;
    statusCacheMs?: unknown;
    policyRefreshMs?: unknown;
    servableRefreshMs?: unknown;
    crlRefreshMs?: unknown;
    graceMs?: unknown;
    timeoutMs?: unknown;
  };
  redis?: { url?: string; failMode?: string; prefix?: string; keyFile?: string };
  outputPolicy?: Policy;
  extraction?: ExtractionOptions;
  trustProxy?: boolean;
  endpoints?: unknown;
}

/** Every setting the file may hold, by section (anything else is refused: `unknownSetting`). */
const SETTINGS = {
  '': [
    'listen',
    'insecureHttp',
    'tls',
    'metrics',
    'audit',
    'environment',
    'warden',
    'redis',
    'outputPolicy',
    'extraction',
    'trustProxy',
    'endpoints',
  ] satisfies (keyof ConfigFile)[],
  tls: ['certFile', 'keyFile', 'clientCertificates'] satisfies (keyof NonNullable<ConfigFile['tls']>)[],
  metrics: ['listen'] satisfies (keyof NonNullable<ConfigFile['metrics']>)[],
  audit: ['file', 'keyFile'] satisfies (keyof NonNullable<ConfigFile['audit']>)[],
  warden: [
    'url',
    'caFile',
    'clientId',
    'clientSecretFile',
    'audience',
    'statusCacheMs',
    'policyRefreshMs',
    'servableRefreshMs',
    'crlRefreshMs',
    'graceMs',
    'timeoutMs',
  ] satisfies (keyof NonNullable<ConfigFile['warden']>)[],
  redis: ['url', 'failMode', 'prefix', 'keyFile'] satisfies (keyof NonNullable<ConfigFile['redis']>)[],
} as const;

function parseListen(value: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (m === null || port > 65_535) throw new GatewayConfigError(`${what} must be host:port`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

function secretFile(file: string, what: string, base: string): Buffer {
  const value = readFileSync(path.resolve(base, file));
  if (value.length < 32) throw new GatewayConfigError(`${what} must hold at least 32 bytes`);
  return value;
}

function millis(value: unknown, what: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new GatewayConfigError(`${what} must be an integer from ${min} to ${max} (ms)`);
  }
  return value;
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

const ENVIRONMENTS = ['dev', 'staging', 'prod'] as const;
const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function parseWarden(raw: ConfigFile['warden'], env: NodeJS.ProcessEnv, base: string): WardenConnection {
  const url = env.WARDEN_GATEWAY_SERVER_URL ?? raw?.url;
  if (url === undefined || raw === undefined) {
    throw new GatewayConfigError('warden.url, warden.clientId and warden.clientSecretFile are required');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GatewayConfigError('warden.url must be https://host:port');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new GatewayConfigError('warden.url must be https://host:port');
  }
  // The gateway's client secret and every caller's credential go there (the server's SDK refuses the same).
  if (parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname)) {
    throw new GatewayConfigError('warden.url must be https://host:port (plain http:// only to loopback)');
  }
  if (typeof raw.clientId !== 'string' || !CLIENT_ID.test(raw.clientId)) {
    throw new GatewayConfigError('warden.clientId must be the client id of the gateway’s service account');
  }
  if (typeof raw.clientSecretFile !== 'string') {
    throw new GatewayConfigError('warden.clientSecretFile is required');
  }
  let clientSecret: string;
  try {
    clientSecret = readFileSync(path.resolve(base, raw.clientSecretFile), 'utf8').trim();
  } catch {
    throw new GatewayConfigError('cannot read warden.clientSecretFile');
  }
  // Never echo the file's content: it is a credential.
  if (!/^[\x21-\x7e]{16,512}$/.test(clientSecret)) {
    throw new GatewayConfigError(
      'warden.clientSecretFile must hold one client secret (16-512 printable characters)',
    );
  }
  if (raw.audience !== undefined && (typeof raw.audience !== 'string' || raw.audience === '')) {
    throw new GatewayConfigError('warden.audience must be a non-empty string');
  }
  let ca: Buffer | undefined;
  if (raw.caFile !== undefined) {
    try {
      ca = readFileSync(path.resolve(base, raw.caFile));
    } catch {
      throw new GatewayConfigError('cannot read warden.caFile');
    }
  }
  return {
    url,
    ...(ca === undefined ? {} : { ca }),
    clientId: raw.clientId,
    clientSecret,
    ...(raw.audience === undefined ? {} : { audience: raw.audience }),
    statusCacheMs: millis(raw.statusCacheMs, 'warden.statusCacheMs', 2000, 0, MAX_STATUS_TTL_MS),
    policyRefreshMs: millis(raw.policyRefreshMs, 'warden.policyRefreshMs', 2000, 100, 60_000),
    servableRefreshMs: millis(raw.servableRefreshMs, 'warden.servableRefreshMs', 1000, 100, 60_000),
    crlRefreshMs: millis(raw.crlRefreshMs, 'warden.crlRefreshMs', 5000, 100, 3_600_000),
    graceMs: millis(raw.graceMs, 'warden.graceMs', 10_000, 0, 3_600_000),
    timeoutMs: millis(raw.timeoutMs, 'warden.timeoutMs', 5000, 100, 60_000),
  };
}

/** `extraction` as the monitor will take it: checked now, so a bad setting stops the gateway at start. */
function extractionOptions(raw: unknown): ExtractionOptions {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new GatewayConfigError('extraction must be an object');
  }
  try {
    new ExtractionMonitor(raw);
  } catch (err) {
    if (err instanceof ExtractionConfigError) throw new GatewayConfigError(`extraction: ${err.message}`);
    throw err;
  }
  return raw;
}

/**
 * Reads the configuration: `file` (JSON) overlaid by `WARDEN_GATEWAY_LISTEN`, `WARDEN_GATEWAY_METRICS_LISTEN`,
 * `WARDEN_GATEWAY_REDIS_URL`, `WARDEN_GATEWAY_SERVER_URL`. Relative paths are relative to the file. Throws
 * `GatewayConfigError`, whose messages never carry a secret.
 */
export function loadStandaloneConfig(file: string, env: NodeJS.ProcessEnv = process.env): StandaloneConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new GatewayConfigError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new GatewayConfigError('the configuration must be a JSON object');
  }
  const unknown = unknownSetting(parsed, SETTINGS);
  if (unknown !== undefined) throw new GatewayConfigError(unknown);
  const raw = parsed as ConfigFile;
  const base = path.dirname(path.resolve(file));
  const read = (p: string): Buffer => readFileSync(path.resolve(base, p));
  const listen = parseListen(env.WARDEN_GATEWAY_LISTEN ?? raw.listen ?? '127.0.0.1:8443', 'listen');
  let tls: StandaloneConfig['tls'];
  if (raw.tls?.certFile !== undefined && raw.tls.keyFile !== undefined) {
    const clientCertificates = raw.tls.clientCertificates ?? 'off';
    if (
      clientCertificates !== 'off' &&
      clientCertificates !== 'request' &&
      clientCertificates !== 'require'
    ) {
      throw new GatewayConfigError('tls.clientCertificates must be off, request or require');
    }
    tls = { cert: read(raw.tls.certFile), key: read(raw.tls.keyFile), clientCertificates };
  } else if (raw.insecureHttp !== true) {
    throw new GatewayConfigError(
      'tls.certFile and tls.keyFile are required (or insecureHttp: true behind a TLS proxy)',
    );
  }
  const metrics = env.WARDEN_GATEWAY_METRICS_LISTEN ?? raw.metrics?.listen;
  if (raw.audit?.file === undefined || raw.audit.keyFile === undefined) {
    throw new GatewayConfigError('audit.file and audit.keyFile are required');
  }
  const environment = raw.environment ?? 'prod';
  if (!(ENVIRONMENTS as readonly string[]).includes(environment)) {
    throw new GatewayConfigError('environment must be dev, staging or prod');
  }
  const warden = parseWarden(raw.warden, env, base);
  const redisUrl = env.WARDEN_GATEWAY_REDIS_URL ?? raw.redis?.url;
  let redis: StandaloneConfig['redis'];
  if (redisUrl !== undefined) {
    const failMode = raw.redis?.failMode ?? 'fail-closed';
    if (failMode !== 'fail-open' && failMode !== 'fail-closed') {
      throw new GatewayConfigError('redis.failMode must be fail-open or fail-closed');
    }
    if (raw.redis?.keyFile === undefined) {
      throw new GatewayConfigError('redis.keyFile is required: every node hashes limiter keys with it');
    }
    redis = {
      url: redisUrl,
      failMode,
      key: secretFile(raw.redis.keyFile, 'redis.keyFile', base),
      ...(raw.redis.prefix === undefined ? {} : { prefix: raw.redis.prefix }),
    };
  }
  return {
    listen,
    ...(tls === undefined ? {} : { tls }),
    ...(metrics === undefined ? {} : { metricsListen: parseListen(metrics, 'metrics.listen') }),
    auditFile: path.resolve(base, raw.audit.file),
    auditKey: secretFile(raw.audit.keyFile, 'audit.keyFile', base),
    environment: environment as StandaloneConfig['environment'],
    warden,
    ...(redis === undefined ? {} : { redis }),
    ...(raw.outputPolicy === undefined ? {} : { outputPolicy: raw.outputPolicy }),
    ...(raw.extraction === undefined ? {} : { extraction: extractionOptions(raw.extraction) }),
    endpoints: endpointsFromFile(raw.endpoints, read),
    trustProxy: raw.trustProxy === true,
  };
}

export interface RunningGateway {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly metricsUrl: string | undefined;
  readonly policies: RemotePolicies;
  /** Whether the first policy load from the server succeeded (until it does, every request is refused). */
  readonly connected: boolean;
  close(): Promise<void>;
}

async function connectRedis(url: string): Promise<Redis> {
  const redis = new Redis(url, {
    // Commands fail at once while disconnected, so the fail mode applies instead of requests queueing.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  redis.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    // A node starting while Redis is down still starts, in its configured fail mode.
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, 3000);
    redis.once('ready', done);
  });
  return redis;
}

/**
 * Starts the standalone gateway from a loaded configuration. A server that cannot be reached at start does not
 * stop it: it starts refusing (401/403/503) and serves once the server answers.
 */
export async function startStandaloneGateway(config: StandaloneConfig): Promise<RunningGateway> {
  const w = config.warden;
  const link = new WardenLink({
    url: w.url,
    clientId: w.clientId,
    clientSecret: w.clientSecret,
    timeoutMs: w.timeoutMs,
    ...(w.ca === undefined ? {} : { ca: w.ca }),
  });
  const clientCertificates = config.tls?.clientCertificates ?? 'off';
  const certificates =
    clientCertificates === 'off'
      ? undefined
      : new RemoteClientCertificates(link, { refreshMs: w.crlRefreshMs });
  const auth = new RemoteAuthenticator({
    link,
    statusTtlMs: w.statusCacheMs,
    graceMs: w.graceMs,
    ...(w.audience === undefined ? {} : { audience: w.audience }),
    ...(certificates === undefined ? {} : { clientCertificates: certificates }),
    requireClientCertificate: clientCertificates === 'require',
  });
  const policies = new RemotePolicies(link, {
    environment: config.environment,
    refreshMs: w.policyRefreshMs,
    graceMs: w.graceMs,
  });
  const audit = await JsonLinesAuditRecorder.open(config.auditFile);
  let redis: Redis | undefined;
  let limiter: LimiterStore = { kind: 'memory' };
  let app: FastifyInstance | undefined;
  try {
    await Promise.all([policies.start(), certificates?.start(), link.issuer().catch(() => undefined)]);
    if (config.redis !== undefined) {
      redis = await connectRedis(config.redis.url);
      limiter = {
        kind: 'redis',
        client: redis,
        failMode: config.redis.failMode,
        ...(config.redis.prefix === undefined ? {} : { prefix: config.redis.prefix }),
      };
    }
    const authenticate: Authenticate = async (request) => {
      const principal = await auth.authenticate(request);
      if (principal !== undefined) policies.notePurpose(principal, request);
      return principal;
    };
    app = await createGateway({
      endpoints: config.endpoints,
      authenticate,
      authorize: policies.authorize,
      servable: new RemoteServableSource(link, { graceMs: w.graceMs }),
      servableRefreshMs: w.servableRefreshMs,
      // Per endpoint and per process, as in `warden server`: each node watches the traffic it serves.
      extraction: () => new ExtractionMonitor(config.extraction ?? {}),
      audit,
      auditKey: config.auditKey,
      limiter,
      ...(config.redis === undefined ? {} : { limiterKey: config.redis.key }),
      ...(config.outputPolicy === undefined ? {} : { outputPolicy: config.outputPolicy }),
      ...(config.tls === undefined
        ? {}
        : {
            tls: {
              key: config.tls.key,
              cert: config.tls.cert,
              requestClientCertificate: clientCertificates !== 'off',
            },
          }),
      trustProxy: config.trustProxy,
    });
    const url = await app.listen({ host: config.listen.host, port: config.listen.port });
    const metrics =
      config.metricsListen === undefined
        ? undefined
        : await startMetricsServer(gatewayOf(app).metrics.registry, config.metricsListen);
    const started = app;
    return {
      app,
      url,
      metricsUrl: metrics?.url,
      policies,
      connected: policies.current,
      close: async () => {
        policies.stop();
        certificates?.stop();
        await metrics?.close();
        await started.close();
        redis?.disconnect();
        await link.close();
        await audit.close();
      },
    };
  } catch (err) {
    // A listener already open (the metrics one failed after it) would keep the process running half-started.
    await app?.close().catch(() => undefined);
    policies.stop();
    certificates?.stop();
    redis?.disconnect();
    await link.close();
    await audit.close();
    throw err;
  }
}
