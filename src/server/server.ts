import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import type { TLSSocket } from 'node:tls';
import swagger from '@fastify/swagger';
import type { AuditRecorder } from '../audit/index.ts';
import type { KmsService } from '../kms/index.ts';
import type { Principal } from '../kms/index.ts';
import { PolicyEngine } from '../policy/index.ts';
import type { Authenticate } from './auth.ts';
import { principalOf, setPrincipal } from './context.ts';
import type { RouteContext, RouteModule } from './context.ts';
import { RouteNotFoundError, UnauthenticatedError, sendError } from './errors.ts';
import type { OperatorControl } from './operator.ts';
import { cedarRouteAuthorizer, routeAuthzOf } from './route-authz.ts';
import type { RouteAuthz } from './route-authz.ts';
import { API_DESCRIPTION, API_TAGS, API_TITLE, withOperationIds } from './openapi.ts';
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
import { TurnBatchedLog } from './request-log.ts';

export const API_VERSION = '0.1.0';
/** Default body limit: every single-item request fits (64 KiB of plaintext is 88 KB of base64). */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Default body limit of batch routes: 1000 items averaging ~16 KiB of plaintext each. */
export const DEFAULT_BATCH_BODY_LIMIT = 24 * 1024 * 1024;

export interface KmsServerOptions {
  readonly kms: KmsService;
  readonly operator: OperatorControl;
  /** Maps a request's credentials (bearer token, client certificate) to a principal, or undefined. */
  readonly authenticate: Authenticate;
  /**
   * Authorises every route's declared action with Cedar (default: an engine with the built-in roles only). The
   * KMS service should be given `cedarKmsAuthorizer` over the same engine.
   */
  readonly policy?: PolicyEngine;
  /** The deployment's environment, `dev` | `staging` | `prod`, in every request's ABAC context (default dev). */
  readonly environment?: string;
  /**
   * PEM key and certificate: the server speaks TLS 1.3 only. With `clientCa`, clients may present certificates
   * issued by it (mutual TLS); unverified ones are never passed on. Without `tls`, plain HTTP (tests, local proxies).
   */
  readonly tls?: {
    readonly key: string | Buffer;
    readonly cert: string | Buffer;
    readonly clientCa?: string | Buffer | readonly (string | Buffer)[];
  };
  /** Route groups of other domains (identity, audit, registry, CA, gateway), registered after the KMS's. */
  readonly routes?: readonly ((app: FastifyInstance) => void)[];
  /**
   * false/undefined: no logs. true or pino options (level, stream, ...): request logs with the `authorization`
   * header redacted; no request or response body is ever logged.
   */
  readonly logger?: boolean | Record<string, unknown>;
  readonly bodyLimit?: number;
  readonly batchBodyLimit?: number;
  /**
   * Where refused authentications are recorded (`auth.request`, outcome `denied`) and denied authorisations (`authz.denied`), with request id, peer and user
   * agent. KMS operations are audited by the KMS itself.
   */
  readonly audit?: AuditRecorder;
}

export interface RouteInfo {
  readonly method: string;
  readonly url: string;
  /** What the route declared: public, or its Cedar action (and who decides on the resource). */
  readonly authz: RouteAuthz;
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

/** Every route of a server by `<METHOD> <url>`, with its declaration. */
const registeredRoutes = new WeakMap<FastifyInstance, Map<string, RouteInfo>>();

/** Every route of a server made by `createKmsServer`, with whether it needs a token. */
export function listRoutes(app: FastifyInstance): readonly RouteInfo[] {
  return [...(registeredRoutes.get(app)?.values() ?? [])];
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

function loggerOptions(
  logger: KmsServerOptions['logger'],
  destination: TurnBatchedLog | undefined,
): false | Record<string, unknown> {
  if (logger === undefined || logger === false) return false;
  const base = logger === true ? {} : logger;
  return {
    ...base,
    ...(destination === undefined ? {} : { stream: destination }),
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    serializers: SERIALIZERS,
  };
}

function logDestination(logger: KmsServerOptions['logger']): TurnBatchedLog | undefined {
  if (logger === undefined || typeof logger === 'boolean') return undefined;
  const stream = logger['stream'] as NodeJS.WritableStream | undefined;
  return stream === undefined ? undefined : new TurnBatchedLog(stream);
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

/**
 * The KMS HTTP API: Fastify with strict JSON schemas (no coercion, no extra properties), bearer-token
 * authentication on every route not explicitly public, one error shape, and the OpenAPI document generated from
 * the same schemas. Call `listen` on the result; `close` stops it.
 */
export async function createKmsServer(options: KmsServerOptions): Promise<FastifyInstance> {
  const requestLog = logDestination(options.logger);
  const serverOptions = {
    logger: loggerOptions(options.logger, requestLog),
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
        // Some bodies are legitimately one of several JSON types (KServe `inputs`: array or object).
        allowUnionTypes: true,
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
        https: {
          key: options.tls.key,
          cert: options.tls.cert,
          minVersion: 'TLSv1.3',
          ...(options.tls.clientCa === undefined
            ? {}
            : {
                ca: options.tls.clientCa as string | Buffer | (string | Buffer)[],
                requestCert: true,
                rejectUnauthorized: false,
              }),
        },
      })) as unknown as FastifyInstance;

  const routes = new Map<string, RouteInfo>();
  registeredRoutes.set(app, routes);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: API_TITLE, version: API_VERSION, description: API_DESCRIPTION },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearerAuth: [] }],
      tags: [...API_TAGS],
    },
    transformObject: (document) =>
      'openapiObject' in document ? withOperationIds(document.openapiObject) : document.swaggerObject,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  // A route without a declaration cannot be registered: routeAuthzOf throws, and so does registration.
  app.addHook('onRoute', (route) => {
    const authz = routeAuthzOf(route);
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      routes.set(`${method} ${route.url}`, { method, url: route.url, authz });
    }
  });

  // Authentication runs before the body is read, so unauthenticated callers cannot make the server parse it.
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public === true || request.routeOptions.url === undefined) return;
    const userAgent = request.headers['user-agent'];
    let principal: Principal | undefined;
    try {
      principal = await options.authenticate({
        authorization: request.headers.authorization,
        clientCertificate: verifiedClientCertificate(request),
        sourceIp: request.ip,
        requestId: request.id,
        ...(userAgent === undefined ? {} : { userAgent }),
      });
    } catch (err) {
      // Throttled (429) or unavailable (503) is said as such; any other failure proves nobody.
      const status = (err as { httpStatus?: unknown } | null)?.httpStatus;
      if (status === 429 || status === 503) throw err;
      principal = undefined;
    }
    if (principal !== undefined) {
      setPrincipal(request, principal);
      return;
    }
    await options.audit
      ?.record({
        action: 'auth.request',
        principal: { id: 'anonymous', authMethod: 'none' },
        resource: `${request.method} ${request.routeOptions.url}`,
        outcome: 'denied',
        reason: request.headers.authorization === undefined ? 'missing_credentials' : 'invalid_credentials',
        requestId: request.id,
        sourceIp: request.ip,
        ...(userAgent === undefined ? {} : { userAgent: userAgent.slice(0, 256) }),
      })
      .catch(() => {
        request.log.warn('could not audit a refused authentication');
      });
    throw new UnauthenticatedError();
  });

  // Authorisation runs after validation, because a route's resource may come from its body.
  const authorizer = cedarRouteAuthorizer(
    options.policy ?? new PolicyEngine(),
    options.environment ?? 'dev',
    options.audit,
  );
  app.addHook('preHandler', async (request) => {
    const authz = routes.get(`${request.method} ${request.routeOptions.url ?? ''}`)?.authz;
    if (authz === undefined) throw new RouteNotFoundError();
    if ('public' in authz) return;
    await authorizer.check(request, principalOf(request), authz);
  });

  app.addHook('onSend', (_request, reply, payload, done) => {
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    done(null, payload);
  });

  // Lines of the turn in which the server closes are written before `close()` resolves.
  if (requestLog !== undefined) {
    app.addHook('onClose', (_instance, done) => {
      requestLog.flush();
      done();
    });
  }

  // JSON only: Fastify also parses text/plain by default.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new RouteNotFoundError()));

  const context: RouteContext = {
    kms: options.kms,
    operator: options.operator,
    batchBodyLimit: options.batchBodyLimit ?? DEFAULT_BATCH_BODY_LIMIT,
    audit: options.audit,
  };
  for (const register of ROUTE_MODULES) register(app, context);
  for (const register of options.routes ?? []) register(app);

  await app.ready();
  return app;
}

/** The DER of the client's certificate when TLS verified it against the configured client CA; else undefined. */
function verifiedClientCertificate(request: FastifyRequest): Buffer | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
  const certificate = socket.getPeerCertificate();
  return Buffer.isBuffer(certificate.raw) && certificate.raw.length > 0 ? certificate.raw : undefined;
}
