import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { JsonLinesAuditRecorder } from '../audit/index.ts';
import type { Principal } from '../kms/index.ts';
import type { Policy } from '../privacy/index.ts';
import { endpointsFromFile, GatewayConfigError } from './config.ts';
import type { EndpointConfig } from './config.ts';
import { createGateway, gatewayOf } from './gateway.ts';
import type { Authenticate, Authorize } from './gateway.ts';
import type { LimiterStore } from './limits.ts';
import { startMetricsServer } from './metrics.ts';
import { ALWAYS_SERVABLE } from './servable.ts';
import type { ServableSource } from './servable.ts';

/**
 * The standalone gateway process (`warden gateway`): configuration file + environment, static API tokens,
 * a file-backed servable list, JSON-lines audit, optional Redis for limits shared by several nodes, and the
 * metrics listener. The file format is specified in docs/gateway.md.
 */
export interface StandaloneConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls?: { readonly key: Buffer; readonly cert: Buffer };
  readonly metricsListen?: { readonly host: string; readonly port: number };
  readonly auditFile: string;
  readonly auditKey: Buffer;
  readonly tokens: readonly TokenEntry[];
  readonly servableFile?: string;
  readonly redis?: {
    readonly url: string;
    readonly failMode: 'fail-open' | 'fail-closed';
    readonly prefix?: string;
    readonly key: Buffer;
  };
  readonly outputPolicy?: Policy;
  readonly endpoints: readonly EndpointConfig[];
  readonly trustProxy: boolean;
}

export interface TokenEntry {
  /** Hex SHA-256 of the bearer token: the file never holds a usable credential. */
  readonly sha256: string;
  readonly principal: {
    readonly id: string;
    readonly roles?: readonly string[];
    readonly groups?: readonly string[];
  };
  /** Endpoint names this token may invoke, or `*`. */
  readonly endpoints: readonly string[];
}

interface ConfigFile {
  listen?: string;
  insecureHttp?: boolean;
  tls?: { certFile?: string; keyFile?: string };
  metrics?: { listen?: string };
  audit?: { file?: string; keyFile?: string };
  tokensFile?: string;
  servableFile?: string;
  redis?: { url?: string; failMode?: string; prefix?: string; keyFile?: string };
  outputPolicy?: Policy;
  trustProxy?: boolean;
  endpoints?: unknown;
}

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

function parseTokens(value: unknown): TokenEntry[] {
  if (!Array.isArray(value)) throw new GatewayConfigError('the tokens file must be a JSON array');
  return value.map((entry: unknown, i) => {
    const e = entry as Partial<TokenEntry> | null;
    if (
      e === null ||
      typeof e.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(e.sha256) ||
      typeof e.principal?.id !== 'string' ||
      e.principal.id === '' ||
      !Array.isArray(e.endpoints) ||
      !e.endpoints.every((x) => typeof x === 'string')
    ) {
      throw new GatewayConfigError(`tokens[${i}]: needs sha256 (64 hex), principal.id and endpoints`);
    }
    return e as TokenEntry;
  });
}

/**
 * Reads the configuration: `file` (JSON) overlaid by `WARDEN_GATEWAY_LISTEN`, `WARDEN_GATEWAY_METRICS_LISTEN`,
 * `WARDEN_GATEWAY_REDIS_URL`. Relative paths are relative to the file. Throws `GatewayConfigError`.
 */
export function loadStandaloneConfig(file: string, env: NodeJS.ProcessEnv = process.env): StandaloneConfig {
  let raw: ConfigFile;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as ConfigFile;
  } catch (err) {
    throw new GatewayConfigError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const base = path.dirname(path.resolve(file));
  const read = (p: string): Buffer => readFileSync(path.resolve(base, p));
  const listen = parseListen(env.WARDEN_GATEWAY_LISTEN ?? raw.listen ?? '127.0.0.1:8443', 'listen');
  let tls: StandaloneConfig['tls'];
  if (raw.tls?.certFile !== undefined && raw.tls.keyFile !== undefined) {
    tls = { cert: read(raw.tls.certFile), key: read(raw.tls.keyFile) };
  } else if (raw.insecureHttp !== true) {
    throw new GatewayConfigError(
      'tls.certFile and tls.keyFile are required (or insecureHttp: true behind a TLS proxy)',
    );
  }
  const metrics = env.WARDEN_GATEWAY_METRICS_LISTEN ?? raw.metrics?.listen;
  if (raw.audit?.file === undefined || raw.audit.keyFile === undefined) {
    throw new GatewayConfigError('audit.file and audit.keyFile are required');
  }
  if (raw.tokensFile === undefined) throw new GatewayConfigError('tokensFile is required');
  const tokens = parseTokens(JSON.parse(read(raw.tokensFile).toString('utf8')));
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
    tokens,
    ...(raw.servableFile === undefined ? {} : { servableFile: path.resolve(base, raw.servableFile) }),
    ...(redis === undefined ? {} : { redis }),
    ...(raw.outputPolicy === undefined ? {} : { outputPolicy: raw.outputPolicy }),
    endpoints: endpointsFromFile(raw.endpoints, read),
    trustProxy: raw.trustProxy === true,
  };
}

/** Bearer tokens looked up by their SHA-256: a hash-map hit on a digest leaks nothing about other tokens. */
export function tokenAuth(tokens: readonly TokenEntry[]): {
  authenticate: Authenticate;
  authorize: Authorize;
} {
  const byHash = new Map<string, TokenEntry>(tokens.map((t) => [t.sha256, t]));
  const allowed = new WeakMap<Principal, readonly string[]>();
  return {
    authenticate: (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (header === undefined || !/^Bearer [\x21-\x7e]{16,512}$/.test(header)) return undefined;
      const entry = byHash.get(createHash('sha256').update(header.slice(7)).digest('hex'));
      if (entry === undefined) return undefined;
      const principal: Principal = {
        id: entry.principal.id,
        roles: entry.principal.roles ?? [],
        authMethod: 'api-token',
        kind: 'service',
        ...(entry.principal.groups === undefined ? {} : { groups: entry.principal.groups }),
      };
      allowed.set(principal, entry.endpoints);
      return principal;
    },
    authorize: (principal, target) => {
      const endpoints = allowed.get(principal) ?? [];
      return endpoints.includes('*') || endpoints.includes(target.endpoint);
    },
  };
}

/**
 * Servable versions from a JSON file `{"quarantined": ["model@version", ...]}`: the epoch is the file's
 * modification time and size, so editing it quarantines within a second. An unreadable file makes every
 * version unservable (fail closed).
 */
export function fileServableSource(file: string): ServableSource {
  let cached: { epoch: string; quarantined: Set<string> } | undefined;
  const load = (): { epoch: string; quarantined: Set<string> } => {
    const s = statSync(file);
    const epoch = `${s.mtimeMs}:${s.size}`;
    if (cached?.epoch !== epoch) {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as { quarantined?: unknown };
      if (!Array.isArray(parsed.quarantined) || !parsed.quarantined.every((q) => typeof q === 'string')) {
        throw new GatewayConfigError('the servable file needs a "quarantined" array of "model@version"');
      }
      cached = { epoch, quarantined: new Set(parsed.quarantined) };
    }
    return cached;
  };
  return {
    epoch: () => load().epoch,
    servable: (model, version) => !load().quarantined.has(`${model}@${version}`),
  };
}

export interface RunningGateway {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly metricsUrl: string | undefined;
  close(): Promise<void>;
}

/** Starts the standalone gateway from a loaded configuration. */
export async function startStandaloneGateway(config: StandaloneConfig): Promise<RunningGateway> {
  const audit = await JsonLinesAuditRecorder.open(config.auditFile);
  let redis: Redis | undefined;
  let limiter: LimiterStore = { kind: 'memory' };
  if (config.redis !== undefined) {
    redis = new Redis(config.redis.url, {
      // Commands fail at once while disconnected, so the fail mode applies instead of requests queueing.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    });
    redis.on('error', () => undefined);
    const client = redis;
    await new Promise<void>((resolve) => {
      // A node starting while Redis is down still starts, in its configured fail mode.
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, 3000);
      client.once('ready', done);
    });
    limiter = {
      kind: 'redis',
      client,
      failMode: config.redis.failMode,
      ...(config.redis.prefix === undefined ? {} : { prefix: config.redis.prefix }),
    };
  }
  const { authenticate, authorize } = tokenAuth(config.tokens);
  const app = await createGateway({
    endpoints: config.endpoints,
    authenticate,
    authorize,
    servable: config.servableFile === undefined ? ALWAYS_SERVABLE : fileServableSource(config.servableFile),
    audit,
    auditKey: config.auditKey,
    limiter,
    ...(config.redis === undefined ? {} : { limiterKey: config.redis.key }),
    ...(config.outputPolicy === undefined ? {} : { outputPolicy: config.outputPolicy }),
    ...(config.tls === undefined ? {} : { tls: config.tls }),
    trustProxy: config.trustProxy,
  });
  const url = await app.listen({ host: config.listen.host, port: config.listen.port });
  const metrics =
    config.metricsListen === undefined
      ? undefined
      : await startMetricsServer(gatewayOf(app).metrics.registry, config.metricsListen);
  return {
    app,
    url,
    metricsUrl: metrics?.url,
    close: async () => {
      await metrics?.close();
      await app.close();
      redis?.disconnect();
      await audit.close();
    },
  };
}
