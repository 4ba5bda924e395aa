import { parse as parseQuerystring } from 'node:querystring';
import type { TLSSocket } from 'node:tls';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { IdentityError, OAuthError, parseOAuthForm } from '../../identity/index.ts';
import type { IdentityService, OAuthRequest } from '../../identity/index.ts';
import { object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/**
 * Warden's OAuth 2.0 endpoints: `POST /oauth/token`, `/oauth/revoke` (RFC 7009), `/oauth/introspect` (RFC 7662),
 * `GET /.well-known/oauth-authorization-server` (RFC 8414) and `/.well-known/jwks.json`. They are public routes:
 * the client authenticates in the request itself (RFC 6749 §2.3), which the authorization server checks. Bodies
 * are `application/x-www-form-urlencoded` (parsed inside this plugin only) and errors are RFC 6749's
 * `{error, error_description}`.
 */
export interface OAuthRouteDeps {
  readonly identity: IdentityService;
}

const FORM_BODY_LIMIT = 64 * 1024;
const tags = ['oauth'];

const formBody: JsonSchema = {
  type: 'object',
  description:
    'application/x-www-form-urlencoded parameters (RFC 6749): unknown parameters are ignored, repeated ones refused',
};
const oauthErrorSchema = object({ error: { type: 'string' }, error_description: { type: 'string' } }, [
  'error',
]);
const tokenResponse = object(
  {
    access_token: { type: 'string' },
    token_type: { type: 'string', enum: ['Bearer'] },
    expires_in: { type: 'integer' },
    scope: { type: 'string' },
    refresh_token: { type: 'string' },
  },
  ['access_token', 'token_type', 'expires_in', 'scope'],
);
const errors = { '4xx': oauthErrorSchema, '5xx': oauthErrorSchema };

/** The client certificate of the TLS connection (DER), and whether the TLS layer verified its chain. */
export function clientCertificateOf(request: FastifyRequest): { der?: Buffer; trusted: boolean } {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function') return { trusted: false };
  const peer = socket.getPeerCertificate();
  const der = (peer as { raw?: unknown }).raw;
  return Buffer.isBuffer(der) && der.length > 0
    ? { der, trusted: socket.authorized === true }
    : { trusted: false };
}

function oauthRequest(request: FastifyRequest): OAuthRequest {
  const cert = clientCertificateOf(request);
  const userAgent = request.headers['user-agent'];
  return {
    form: parseOAuthForm(request.body ?? {}),
    authorization: request.headers.authorization,
    ...(cert.der === undefined
      ? {}
      : { clientCertificate: cert.der, clientCertificateTrusted: cert.trusted }),
    sourceIp: request.ip,
    requestId: request.id,
    ...(userAgent === undefined ? {} : { userAgent }),
  };
}

function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

export function oauthRoutes(app: FastifyInstance, deps: OAuthRouteDeps): void {
  const { identity } = deps;
  void app.register((scope, _options, done) => {
    // RFC 6749 §4.4.2, §6: form bodies only; a JSON body is refused (415) rather than half-understood.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
      (_request, body, done) => {
        done(null, parseQuerystring(typeof body === 'string' ? body : body.toString('utf8')));
      },
    );
    scope.setErrorHandler((err: FastifyError | Error, request, reply) => {
      noStore(reply);
      if (err instanceof OAuthError) {
        if (err.error === 'invalid_client' && request.headers.authorization !== undefined) {
          reply.header('www-authenticate', 'Basic realm="warden"');
        }
        return reply.status(err.httpStatus).send({ error: err.error, error_description: err.description });
      }
      if (err instanceof IdentityError && err.httpStatus < 500) {
        return reply.status(400).send({ error: 'invalid_request', error_description: err.message });
      }
      const status = (err as { statusCode?: unknown }).statusCode;
      if (typeof status === 'number' && status >= 400 && status < 500) {
        const description =
          status === 415
            ? 'the body must be application/x-www-form-urlencoded'
            : status === 413
              ? 'the body is too large'
              : 'the request is malformed';
        return reply
          .status(status === 413 || status === 415 ? status : 400)
          .send({ error: 'invalid_request', error_description: description });
      }
      if (err instanceof IdentityError) {
        return reply.status(503).send({ error: 'temporarily_unavailable', error_description: err.message });
      }
      request.log.error({ code: (err as { code?: unknown }).code }, 'OAuth endpoint failed');
      return reply.status(500).send({ error: 'server_error', error_description: 'internal error' });
    });

    scope.post(
      '/oauth/token',
      {
        config: { public: true },
        schema: {
          tags,
          summary: 'Token endpoint (client_credentials, refresh_token); client authentication in the request',
          consumes: ['application/x-www-form-urlencoded'],
          security: [],
          body: formBody,
          response: { 200: tokenResponse, ...errors },
        },
      },
      async (request, reply) => {
        const response = await identity.oauth.token(oauthRequest(request));
        return noStore(reply).send(response);
      },
    );

    scope.post(
      '/oauth/revoke',
      {
        config: { public: true },
        schema: {
          tags,
          summary: 'Token revocation (RFC 7009): 200 whether or not the token was known',
          consumes: ['application/x-www-form-urlencoded'],
          security: [],
          body: formBody,
          response: { 200: object({}), ...errors },
        },
      },
      async (request, reply) => {
        await identity.oauth.revoke(oauthRequest(request));
        return noStore(reply).send({});
      },
    );

    scope.post(
      '/oauth/introspect',
      {
        config: { public: true },
        schema: {
          tags,
          summary: 'Token introspection (RFC 7662), for authenticated confidential clients',
          consumes: ['application/x-www-form-urlencoded'],
          security: [],
          body: formBody,
          response: {
            200: {
              type: 'object',
              required: ['active'],
              properties: { active: { type: 'boolean' } },
              additionalProperties: true,
            },
            ...errors,
          },
        },
      },
      async (request, reply) => noStore(reply).send(await identity.oauth.introspect(oauthRequest(request))),
    );

    scope.get(
      '/.well-known/oauth-authorization-server',
      {
        config: { public: true },
        schema: {
          tags,
          summary: 'Authorization server metadata (RFC 8414)',
          security: [],
          response: { 200: { type: 'object', additionalProperties: true }, ...errors },
        },
      },
      () => identity.oauth.metadata(),
    );

    scope.get(
      '/.well-known/jwks.json',
      {
        config: { public: true },
        schema: {
          tags,
          summary: 'The public keys that sign access tokens: every enabled version of the KMS signing key',
          security: [],
          response: {
            200: object({ keys: { type: 'array', items: { type: 'object', additionalProperties: true } } }, [
              'keys',
            ]),
            ...errors,
          },
        },
      },
      async (_request, reply) =>
        reply.header('cache-control', 'public, max-age=60').send(await identity.oauth.jwks()),
    );
    done();
  });
}
