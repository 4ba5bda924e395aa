import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import type { AuditRecorder } from '../audit/index.ts';
import type { KmsService } from '../kms/index.ts';
import type { Principal } from '../kms/index.ts';
import type { Authenticate } from './auth.ts';
import { setPrincipal } from './context.ts';
import type { RouteContext, RouteModule } from './context.ts';
import { RouteNotFoundError, UnauthenticatedError, sendError } from './errors.ts';
import type { OperatorAction, OperatorControl } from './operator.ts';
import { SHARED_SCHEMAS } from './schemas.ts';
import { dataKeyRoutes } from './routes/datakey.ts';
import { decryptRoutes } from './routes/decrypt.ts';
import { encryptRoutes } from './routes/encrypt.ts';
import { healthRoutes } from './routes/health.ts';
import { hmacRoutes } from './routes/hmac.ts';
import { importExportRoutes } from './routes/import-export.ts';
import { keyRoutes } from './routes/keys.ts';
import { operatorRoutes } from './routes/operator.ts';
import { randomRoutes } from './routes/random.ts';
import { rewrapRoutes } from './routes/rewrap.ts';
import { signRoutes } from './routes/sign.ts';

export const API_VERSION = '0.1.0';
/** Default body limit: every single-item request fits (64 KiB of plaintext is 88 KB of base64). */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Default body limit of batch routes: 1000 items averaging ~16 KiB of plaintext each. */
export const DEFAULT_BATCH_BODY_LIMIT = 24 * 1024 * 1024;

export interface KmsServerOptions {
  readonly kms: KmsService;
  readonly operator: OperatorControl;
  /** Maps the `Authorization` header to a principal; `bootstrapTokenAuthenticator` for the bootstrap token. */
  readonly authenticate: Authenticate;
  /** PEM key and certificate: the server speaks TLS 1.3 only. Without it, plain HTTP (tests, local proxies). */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /**
   * false/undefined: no logs. true or pino options (level, stream, ...): request logs with the `authorization`
   * header redacted; no request or response body is ever logged.
   */
  readonly logger?: boolean | Record<string, unknown>;
  /** Who may initialise and seal the root of trust; default: principals with the `admin` role. */
  readonly authorizeOperator?: (principal: Principal, action: OperatorAction) => boolean;
  readonly bodyLimit?: number;
  readonly batchBodyLimit?: number;
  /**
   * Where refused authentications are recorded (`auth.bearer`, outcome `denied`), with request id, peer and user
   * agent. KMS operations are audited by the KMS itself.
   */
  readonly audit?: AuditRecorder;
}

export interface RouteInfo {
  readonly method: string;
  readonly url: string;
  /** Reachable without a token. */
  readonly public: boolean;
}

const ROUTE_MODULES: readonly RouteModule[] = [
  healthRoutes,
  operatorRoutes,
  keyRoutes,
  importExportRoutes,
  encryptRoutes,
  decryptRoutes,
  dataKeyRoutes,
  rewrapRoutes,
  signRoutes,
  hmacRoutes,
  randomRoutes,
];

const registeredRoutes = new WeakMap<FastifyInstance, RouteInfo[]>();

/** Every route of a server made by `createKmsServer`, with whether it needs a token. */
export function listRoutes(app: FastifyInstance): readonly RouteInfo[] {
  return registeredRoutes.get(app) ?? [];
}

const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'req.body',
  'res.body',
  'body',
];

/** Request logs carry method, URL, request id and peer; never headers or bodies. */
const SERIALIZERS = {
  req(req: { method?: string; url?: string; ip?: string; id?: string }) {
    return { method: req.method, url: req.url, remoteAddress: req.ip };
  },
  res(reply: { statusCode?: number }) {
    return { statusCode: reply.statusCode };
  },
};

function loggerOptions(logger: KmsServerOptions['logger']): false | Record<string, unknown> {
  if (logger === undefined || logger === false) return false;
  const base = logger === true ? {} : logger;
  return { ...base, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, serializers: SERIALIZERS };
}

/**
 * Fastify logs each request twice (received, completed); the completion line carries everything, so the
 * first is dropped. Logging was 16% of the server's CPU under load, half of it in these writes.
 */
class OneLinePerRequest extends LogController {
  override incomingRequest(): void {
    // Folded into the completion line below.
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const entry = { req: request, res: reply, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...entry, err: error }, 'request errored');
    else reply.log.info(entry, 'request completed');
  }
}

const adminOnly = (principal: Principal): boolean => principal.roles.includes('admin');

/**
 * The KMS HTTP API: Fastify with strict JSON schemas (no coercion, no extra properties), bearer-token
 * authentication on every route not explicitly public, one error shape, and the OpenAPI document generated from
 * the same schemas. Call `listen` on the result; `close` stops it.
 */
export async function createKmsServer(options: KmsServerOptions): Promise<FastifyInstance> {
  const serverOptions = {
    logger: loggerOptions(options.logger),
    logController: new OneLinePerRequest(),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    requestTimeout: 60_000,
    connectionTimeout: 60_000,
    routerOptions: { maxParamLength: 200 },
    ajv: {
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allErrors: false,
      },
    },
  } satisfies FastifyServerOptions;
  const app = (options.tls === undefined
    ? Fastify(serverOptions)
    : Fastify({
        ...serverOptions,
        https: { key: options.tls.key, cert: options.tls.cert, minVersion: 'TLSv1.3' },
      })) as unknown as FastifyInstance;

  const routes: RouteInfo[] = [];
  registeredRoutes.set(app, routes);
  const publicRoutes = new Set<string>();

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Warden KMS API',
        version: API_VERSION,
        description:
          'Key management: named, versioned keys and the operations on them. Errors are ' +
          '`{ "error": { "code", "message" } }`. Bytes are standard base64.',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearerAuth: [] }],
      tags: [
        { name: 'keys', description: 'key administration' },
        { name: 'crypto', description: 'cryptographic operations' },
        { name: 'operator', description: 'root of trust: init, unseal, seal' },
        { name: 'system', description: 'health and this document' },
      ],
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      routes.push({ method, url: route.url, public: publicRoutes.has(`${method} ${route.url}`) });
    }
  });

  // Authentication runs before the body is read, so unauthenticated callers cannot make the server parse it.
  app.addHook('onRequest', (request, _reply, done) => {
    const url = request.routeOptions.url;
    if (url === undefined || publicRoutes.has(`${request.method} ${url}`)) {
      done();
      return;
    }
    let principal: Principal | undefined;
    try {
      principal = options.authenticate(request.headers.authorization);
    } catch {
      principal = undefined;
    }
    if (principal === undefined) {
      const audit = options.audit;
      if (audit === undefined) {
        done(new UnauthenticatedError());
        return;
      }
      const userAgent = request.headers['user-agent'];
      audit
        .record({
          action: 'auth.bearer',
          principal: { id: 'anonymous', authMethod: 'bearer' },
          resource: `${request.method} ${url}`,
          outcome: 'denied',
          reason: request.headers.authorization === undefined ? 'missing_token' : 'invalid_token',
          requestId: request.id,
          sourceIp: request.ip,
          ...(userAgent === undefined ? {} : { userAgent: userAgent.slice(0, 256) }),
        })
        .catch(() => {
          request.log.warn('could not audit a refused authentication');
        })
        .finally(() => {
          done(new UnauthenticatedError());
        });
      return;
    }
    setPrincipal(request, principal);
    done();
  });

  app.addHook('onSend', (_request, reply, payload, done) => {
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    done(null, payload);
  });

  // JSON only: Fastify also parses text/plain by default.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new RouteNotFoundError()));

  const context: RouteContext = {
    kms: options.kms,
    operator: options.operator,
    authorizeOperator: options.authorizeOperator ?? adminOnly,
    batchBodyLimit: options.batchBodyLimit ?? DEFAULT_BATCH_BODY_LIMIT,
    publicRoute: (method, url) => {
      publicRoutes.add(`${method} ${url}`);
    },
  };
  for (const register of ROUTE_MODULES) register(app, context);

  await app.ready();
  return app;
}
