import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  CLIENT_AUTH_METHODS,
  CLIENT_ID_PATTERN,
  IdentityError,
  ROLE_PATTERN,
  ThrottledError,
  USERNAME_PATTERN,
} from '../../identity/index.ts';
import type {
  ApiKeyInfo,
  Authenticated,
  ClientAuthMethod,
  IdentityService,
  ServiceAccountRecord,
  UserRecord,
} from '../../identity/index.ts';
import type { Principal } from '../../kms/index.ts';
import type { AuthzResource } from '../../policy/index.ts';
import { principalOf } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';
import { clientCertificateOf } from './oauth.ts';

/**
 * Identity over HTTP. `/v1/auth/...`: login, bootstrap, and the caller's own MFA and API keys (self-service:
 * public routes that authenticate the bearer themselves, since what they touch is by definition the caller's).
 * `/v1/identities/...`: administration of users, service accounts, API keys and IdP role mappings, authorised
 * by Cedar as `identity.read` / `identity.manage` on `Identity` resources.
 */
export interface IdentityRouteDeps {
  readonly identity: IdentityService;
  /**
   * The Cedar check of a self-service request (`identity.self` on the caller's own Identity): rejects with a
   * permission error when a guardrail or a custom forbid refuses it. These routes authenticate the caller
   * themselves (an MFA-enrolment-only session may use some), so the server's route check does not run for them.
   */
  readonly authorizeSelf: (request: FastifyRequest, principal: Principal) => Promise<void>;
}

class UnauthenticatedIdentityError extends IdentityError {
  constructor() {
    super('unauthenticated', 401, 'a valid bearer token is required');
  }
}

const tags = ['identity'];
const str = (pattern: RegExp, description?: string): JsonSchema => ({
  type: 'string',
  pattern: pattern.source,
  ...(description === undefined ? {} : { description }),
});
const roles: JsonSchema = { type: 'array', maxItems: 64, items: str(ROLE_PATTERN) };
const groups: JsonSchema = {
  type: 'array',
  maxItems: 64,
  items: { type: 'string', minLength: 1, maxLength: 256 },
};
const password: JsonSchema = { type: 'string', minLength: 1, maxLength: 1024 };
const displayName: JsonSchema = { type: 'string', maxLength: 256 };

const sessionView = object(
  {
    access_token: { type: 'string' },
    token_type: { type: 'string' },
    expires_in: { type: 'integer' },
    scope: { type: 'string' },
    refresh_token: { type: 'string' },
    mfa_enrolment_required: { type: 'boolean' },
  },
  ['access_token', 'token_type', 'expires_in', 'scope', 'refresh_token', 'mfa_enrolment_required'],
);
const userView = object({
  username: { type: 'string' },
  principalId: { type: 'string' },
  source: { type: 'string' },
  issuer: { type: ['string', 'null'] },
  subject: { type: ['string', 'null'] },
  displayName: { type: 'string' },
  hasPassword: { type: 'boolean' },
  mfaEnrolled: { type: 'boolean' },
  mfaEnrolledAt: { type: ['integer', 'null'] },
  groups: { type: 'array', items: { type: 'string' } },
  roles: { type: 'array', items: { type: 'string' } },
  disabled: { type: 'boolean' },
  createdAt: { type: 'integer' },
  updatedAt: { type: 'integer' },
  lastLoginAt: { type: ['integer', 'null'] },
});
const serviceView = object({
  clientId: { type: 'string' },
  principalId: { type: 'string' },
  description: { type: 'string' },
  authMethod: { type: 'string' },
  hasSecret: { type: 'boolean' },
  jwks: { type: ['object', 'null'], additionalProperties: true },
  tlsSubjectDn: { type: ['string', 'null'] },
  tlsSpkiSha256: { type: ['string', 'null'] },
  roles: { type: 'array', items: { type: 'string' } },
  disabled: { type: 'boolean' },
  createdAt: { type: 'integer' },
  updatedAt: { type: 'integer' },
});
const apiKeyView = object({
  id: { type: 'string' },
  env: { type: 'string' },
  scopes: { type: 'array', items: { type: 'string' } },
  owner: { type: 'string' },
  name: { type: 'string' },
  createdAt: { type: 'integer' },
  expiresAt: { type: 'integer' },
  lastUsedAt: { type: ['integer', 'null'] },
  revokedAt: { type: ['integer', 'null'] },
});
const createdApiKeyView = object({ key: { type: 'string', description: 'shown once' }, info: apiKeyView }, [
  'key',
  'info',
]);
const apiKeyBody = (withOwner: boolean) =>
  object(
    {
      ...(withOwner
        ? { owner: { type: 'string', pattern: '^(user|service):[a-z0-9][a-z0-9._@+-]{0,127}$' } }
        : {}),
      name: { type: 'string', maxLength: 128 },
      scopes: { ...roles, minItems: 1 },
      ttlSeconds: { type: 'integer', minimum: 60, maximum: 366 * 86400 },
    },
    ['scopes'],
  );
const list = (items: JsonSchema) => object({ items: { type: 'array', items } }, ['items']);
const usernameParams = object({ username: str(USERNAME_PATTERN) }, ['username']);
const clientParams = object({ clientId: str(CLIENT_ID_PATTERN) }, ['clientId']);
const keyParams = object({ id: { type: 'string', pattern: '^[0-9A-Za-z]{16}$' } }, ['id']);
const groupParams = object({ group: { type: 'string', minLength: 1, maxLength: 256 } }, ['group']);

const identity = (id: string): AuthzResource => ({ type: 'Identity', id });
const ALL = () => identity('*');
const userResource = (r: FastifyRequest) => identity(`user:${(r.params as { username: string }).username}`);
const serviceResource = (r: FastifyRequest) =>
  identity(`service:${(r.params as { clientId: string }).clientId}`);
const apiKeyResource = (r: FastifyRequest) => identity(`api-key:${(r.params as { id: string }).id}`);
const mappingResource = (r: FastifyRequest) =>
  identity(`role-mapping:${(r.params as { group: string }).group}`);

function requestInfo(request: FastifyRequest): { sourceIp: string; requestId: string; userAgent?: string } {
  const userAgent = request.headers['user-agent'];
  return { sourceIp: request.ip, requestId: request.id, ...(userAgent === undefined ? {} : { userAgent }) };
}

/** Runs a credential-checking call; a throttle answer carries Retry-After. */
async function throttled<T>(reply: FastifyReply, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ThrottledError) reply.header('retry-after', String(err.retryAfterSeconds));
    throw err;
  }
}
const userOut = (u: UserRecord) => ({ ...u, groups: [...u.groups], roles: [...u.roles] });
const serviceOut = (s: ServiceAccountRecord) => ({ ...s, roles: [...s.roles] });
const keyOut = (k: ApiKeyInfo) => ({ ...k, scopes: [...k.scopes] });
const createdKeyOut = (created: { key: string; info: ApiKeyInfo }) => ({
  key: created.key,
  info: keyOut(created.info),
});

const NO_CONTENT: Record<number, JsonSchema> = { 204: { type: 'null' } };

/** The schema of a route of this group: tagged, its own responses first, then the shared error responses. */
function schema(
  summary: string,
  response: Record<number, JsonSchema>,
  parts: { security?: []; params?: JsonSchema; querystring?: JsonSchema; body?: JsonSchema } = {},
): JsonSchema {
  return { tags, summary, ...parts, response: { ...response, ...errorResponses } };
}

/** A handler that answers 204 once `run` has done its work. */
const noContent =
  <R>(run: (request: R, reply: FastifyReply) => Promise<unknown>) =>
  async (request: R, reply: FastifyReply): Promise<FastifyReply> => {
    await run(request, reply);
    return reply.status(204).send();
  };

/** Answers with a secret that is shown once (tokens, keys, client secrets, TOTP seeds): never cached. */
const sendOnce = (reply: FastifyReply, body: unknown, status: 200 | 201 = 200): FastifyReply =>
  reply.status(status).header('cache-control', 'no-store').send(body);

export function identitiesRoutes(app: FastifyInstance, deps: IdentityRouteDeps): void {
  const { identity: ids } = deps;

  /** The caller of a self-service route, authenticated here (see the module comment). */
  const self = async (request: FastifyRequest, reply: FastifyReply): Promise<Authenticated> => {
    const cert = clientCertificateOf(request);
    const found = await throttled(reply, () =>
      ids.authenticateDetailed({
        authorization: request.headers.authorization,
        clientCertificate: cert.der,
        ...requestInfo(request),
      }),
    );
    if (found === undefined) throw new UnauthenticatedIdentityError();
    await deps.authorizeSelf(request, found.principal);
    return found;
  };
  const fullSelf = async (request: FastifyRequest, reply: FastifyReply): Promise<Authenticated> => {
    const found = await self(request, reply);
    if (found.mfaEnrolmentOnly) {
      throw new IdentityError('mfa_enrolment_required', 403, 'enrol MFA and log in again first');
    }
    return found;
  };

  // ---- /v1/auth -------------------------------------------------------------------------------------------

  app.post<{ Body: { username: string; password: string; totpCode?: string; recoveryCode?: string } }>(
    '/v1/auth/login',
    {
      config: { public: true },
      schema: schema(
        'Local login: username and password, plus a TOTP or recovery code when MFA is enrolled',
        { 200: sessionView },
        {
          security: [],
          body: object(
            {
              username: { type: 'string', minLength: 1, maxLength: 256 },
              password,
              totpCode: { type: 'string', maxLength: 16 },
              recoveryCode: { type: 'string', maxLength: 64 },
            },
            ['username', 'password'],
          ),
        },
      ),
    },
    async (request, reply) => {
      const b = request.body;
      const tokens = await throttled(reply, () =>
        ids.login({
          username: b.username,
          password: b.password,
          totpCode: b.totpCode,
          recoveryCode: b.recoveryCode,
          ...requestInfo(request),
        }),
      );
      return sendOnce(reply, tokens);
    },
  );

  app.post<{ Body: { token: string; username: string; password: string; displayName?: string } }>(
    '/v1/auth/bootstrap',
    {
      config: { public: true },
      schema: schema(
        'Redeem the one-time bootstrap token: creates the first administrator',
        { 201: userView },
        {
          security: [],
          body: object(
            {
              token: { type: 'string', minLength: 1, maxLength: 512 },
              username: str(USERNAME_PATTERN),
              password,
              displayName,
            },
            ['token', 'username', 'password'],
          ),
        },
      ),
    },
    async (request, reply) => {
      const b = request.body;
      const user = await throttled(reply, () =>
        ids.redeemBootstrap(
          {
            token: b.token,
            username: b.username,
            password: b.password,
            ...(b.displayName === undefined ? {} : { displayName: b.displayName }),
          },
          requestInfo(request),
        ),
      );
      return reply.status(201).send(userOut(user));
    },
  );

  app.post(
    '/v1/auth/mfa/totp',
    {
      config: { public: true },
      schema: schema('Start TOTP enrolment for the caller: the secret and otpauth:// URI, shown once', {
        200: object({ secret: { type: 'string' }, uri: { type: 'string' } }, ['secret', 'uri']),
      }),
    },
    async (request, reply) => {
      const { principal } = await self(request, reply);
      return sendOnce(reply, await ids.beginTotpEnrolment(principal));
    },
  );

  app.post<{ Body: { code: string } }>(
    '/v1/auth/mfa/totp/verify',
    {
      config: { public: true },
      schema: schema(
        'Confirm TOTP enrolment with a first code; returns the recovery codes, shown once',
        { 200: object({ recoveryCodes: { type: 'array', items: { type: 'string' } } }, ['recoveryCodes']) },
        { body: object({ code: { type: 'string', minLength: 1, maxLength: 16 } }, ['code']) },
      ),
    },
    async (request, reply) => {
      const { principal } = await self(request, reply);
      const { recoveryCodes } = await ids.confirmTotpEnrolment(principal, request.body.code);
      return sendOnce(reply, { recoveryCodes: [...recoveryCodes] });
    },
  );

  app.get(
    '/v1/auth/api-keys',
    { config: { public: true }, schema: schema("The caller's API keys", { 200: list(apiKeyView) }) },
    async (request, reply) => {
      const { principal } = await fullSelf(request, reply);
      return { items: (await ids.listApiKeys(principal.id)).map(keyOut) };
    },
  );

  app.post<{ Body: { name?: string; scopes: string[]; ttlSeconds?: number } }>(
    '/v1/auth/api-keys',
    {
      config: { public: true },
      schema: schema(
        'Create an API key for the caller, carrying some of its roles; the key is shown once',
        { 201: createdApiKeyView },
        { body: apiKeyBody(false) },
      ),
    },
    async (request, reply) => {
      const { principal, via } = await fullSelf(request, reply);
      // An API key cannot mint further API keys: a leaked key must not be able to outlive its revocation.
      if (via === 'api-key') throw new IdentityError('forbidden', 403, 'API keys cannot create API keys');
      return sendOnce(reply, createdKeyOut(await ids.createApiKey(principal, request.body)), 201);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/auth/api-keys/:id',
    {
      config: { public: true },
      schema: schema("Revoke one of the caller's API keys", NO_CONTENT, { params: keyParams }),
    },
    noContent(async (request, reply) => {
      const { principal } = await self(request, reply);
      await ids.revokeApiKey(principal, request.params.id, principal.id);
    }),
  );

  // ---- /v1/identities/users -------------------------------------------------------------------------------

  app.get(
    '/v1/identities/users',
    {
      config: { action: 'identity.read', resource: ALL },
      schema: schema('List users', { 200: list(userView) }),
    },
    async () => ({ items: (await ids.listUsers()).map(userOut) }),
  );

  app.post<{
    Body: { username: string; password?: string; displayName?: string; roles?: string[]; groups?: string[] };
  }>(
    '/v1/identities/users',
    {
      config: {
        action: 'identity.manage',
        resource: (r) => identity(`user:${(r.body as { username: string }).username}`),
      },
      schema: schema(
        'Create a local user',
        { 201: userView },
        {
          body: object({ username: str(USERNAME_PATTERN), password, displayName, roles, groups }, [
            'username',
          ]),
        },
      ),
    },
    async (request, reply) =>
      reply.status(201).send(userOut(await ids.createUser(principalOf(request), request.body))),
  );

  app.get<{ Params: { username: string } }>(
    '/v1/identities/users/:username',
    {
      config: { action: 'identity.read', resource: userResource },
      schema: schema('Show a user', { 200: userView }, { params: usernameParams }),
    },
    async (request) => userOut(await ids.getUser(request.params.username)),
  );

  app.patch<{
    Params: { username: string };
    Body: { displayName?: string; roles?: string[]; groups?: string[]; disabled?: boolean };
  }>(
    '/v1/identities/users/:username',
    {
      config: { action: 'identity.manage', resource: userResource },
      schema: schema(
        'Change roles, groups, display name, or disable/enable (disabling ends live tokens at once)',
        { 200: userView },
        {
          params: usernameParams,
          body: object({ displayName, roles, groups, disabled: { type: 'boolean' } }),
        },
      ),
    },
    async (request) =>
      userOut(await ids.updateUser(principalOf(request), request.params.username, request.body)),
  );

  app.post<{ Params: { username: string }; Body: { password: string } }>(
    '/v1/identities/users/:username/password',
    {
      config: { action: 'identity.manage', resource: userResource },
      schema: schema("Set a user's password (ends their sessions)", NO_CONTENT, {
        params: usernameParams,
        body: object({ password }, ['password']),
      }),
    },
    noContent((request) =>
      ids.setPassword(principalOf(request), request.params.username, request.body.password),
    ),
  );

  app.post<{ Params: { username: string } }>(
    '/v1/identities/users/:username/mfa/reset',
    {
      config: { action: 'identity.manage', resource: userResource },
      schema: schema("Remove a user's MFA (lost device); ends their sessions", NO_CONTENT, {
        params: usernameParams,
      }),
    },
    noContent((request) => ids.resetMfa(principalOf(request), request.params.username)),
  );

  app.delete<{ Params: { username: string } }>(
    '/v1/identities/users/:username',
    {
      config: { action: 'identity.manage', resource: userResource },
      schema: schema('Delete a user, their API keys and sessions', NO_CONTENT, { params: usernameParams }),
    },
    noContent((request) => ids.deleteUser(principalOf(request), request.params.username)),
  );

  // ---- /v1/identities/service-accounts --------------------------------------------------------------------

  app.get(
    '/v1/identities/service-accounts',
    {
      config: { action: 'identity.read', resource: ALL },
      schema: schema('List service accounts', { 200: list(serviceView) }),
    },
    async () => ({ items: (await ids.listServiceAccounts()).map(serviceOut) }),
  );

  app.post<{
    Body: {
      clientId: string;
      authMethod: ClientAuthMethod;
      description?: string;
      roles?: string[];
      jwks?: { keys: Record<string, unknown>[] };
      publicKeyPem?: string;
      tlsSubjectDn?: string;
      tlsSpkiSha256?: string;
    };
  }>(
    '/v1/identities/service-accounts',
    {
      config: {
        action: 'identity.manage',
        resource: (r) => identity(`service:${(r.body as { clientId: string }).clientId}`),
      },
      schema: schema(
        'Create a service account (OAuth client); a client secret is returned once',
        { 201: object({ account: serviceView, clientSecret: { type: 'string' } }, ['account']) },
        {
          body: object(
            {
              clientId: str(CLIENT_ID_PATTERN),
              authMethod: { type: 'string', enum: [...CLIENT_AUTH_METHODS] },
              description: displayName,
              roles,
              jwks: object(
                {
                  keys: {
                    type: 'array',
                    minItems: 1,
                    maxItems: 10,
                    items: { type: 'object', additionalProperties: true },
                  },
                },
                ['keys'],
              ),
              publicKeyPem: { type: 'string', maxLength: 16384 },
              tlsSubjectDn: { type: 'string', maxLength: 1024 },
              tlsSpkiSha256: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' },
            },
            ['clientId', 'authMethod'],
          ),
        },
      ),
    },
    async (request, reply) => {
      const created = await ids.createServiceAccount(principalOf(request), request.body);
      const { clientSecret } = created;
      return sendOnce(
        reply,
        { account: serviceOut(created.account), ...(clientSecret === undefined ? {} : { clientSecret }) },
        201,
      );
    },
  );

  app.get<{ Params: { clientId: string } }>(
    '/v1/identities/service-accounts/:clientId',
    {
      config: { action: 'identity.read', resource: serviceResource },
      schema: schema('Show a service account', { 200: serviceView }, { params: clientParams }),
    },
    async (request) => serviceOut(await ids.getServiceAccount(request.params.clientId)),
  );

  app.patch<{
    Params: { clientId: string };
    Body: { description?: string; roles?: string[]; disabled?: boolean };
  }>(
    '/v1/identities/service-accounts/:clientId',
    {
      config: { action: 'identity.manage', resource: serviceResource },
      schema: schema(
        'Change roles or description, or disable/enable (disabling ends live tokens at once)',
        { 200: serviceView },
        {
          params: clientParams,
          body: object({ description: displayName, roles, disabled: { type: 'boolean' } }),
        },
      ),
    },
    async (request) =>
      serviceOut(await ids.updateServiceAccount(principalOf(request), request.params.clientId, request.body)),
  );

  app.post<{ Params: { clientId: string } }>(
    '/v1/identities/service-accounts/:clientId/secret',
    {
      config: { action: 'identity.manage', resource: serviceResource },
      schema: schema(
        'Rotate the client secret (shown once); tokens issued under the old one stop working',
        { 200: object({ clientSecret: { type: 'string' } }, ['clientSecret']) },
        { params: clientParams },
      ),
    },
    async (request, reply) =>
      sendOnce(reply, await ids.rotateClientSecret(principalOf(request), request.params.clientId)),
  );

  app.delete<{ Params: { clientId: string } }>(
    '/v1/identities/service-accounts/:clientId',
    {
      config: { action: 'identity.manage', resource: serviceResource },
      schema: schema('Delete a service account, its API keys and tokens', NO_CONTENT, {
        params: clientParams,
      }),
    },
    noContent((request) => ids.deleteServiceAccount(principalOf(request), request.params.clientId)),
  );

  // ---- /v1/identities/api-keys ----------------------------------------------------------------------------

  app.get<{ Querystring: { owner?: string } }>(
    '/v1/identities/api-keys',
    {
      config: { action: 'identity.read', resource: ALL },
      schema: schema(
        'List API keys (optionally of one owner); never the keys themselves',
        { 200: list(apiKeyView) },
        { querystring: object({ owner: { type: 'string', maxLength: 200 } }) },
      ),
    },
    async (request) => ({ items: (await ids.listApiKeys(request.query.owner)).map(keyOut) }),
  );

  app.post<{ Body: { owner?: string; name?: string; scopes: string[]; ttlSeconds?: number } }>(
    '/v1/identities/api-keys',
    {
      config: {
        action: 'identity.manage',
        resource: (r) => identity((r.body as { owner?: string }).owner ?? '*'),
      },
      schema: schema(
        'Create an API key for a user or service account; the key is shown once',
        { 201: createdApiKeyView },
        { body: apiKeyBody(true) },
      ),
    },
    async (request, reply) =>
      sendOnce(reply, createdKeyOut(await ids.createApiKey(principalOf(request), request.body)), 201),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/identities/api-keys/:id',
    {
      config: { action: 'identity.read', resource: apiKeyResource },
      schema: schema('Show an API key (metadata only)', { 200: apiKeyView }, { params: keyParams }),
    },
    async (request) => keyOut(await ids.getApiKey(request.params.id)),
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/identities/api-keys/:id',
    {
      config: { action: 'identity.manage', resource: apiKeyResource },
      schema: schema('Revoke an API key', NO_CONTENT, { params: keyParams }),
    },
    noContent((request) => ids.revokeApiKey(principalOf(request), request.params.id)),
  );

  // ---- /v1/identities/role-mappings -----------------------------------------------------------------------

  app.get(
    '/v1/identities/role-mappings',
    {
      config: { action: 'identity.read', resource: ALL },
      schema: schema('IdP group to Warden role mappings', {
        200: list(object({ group: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } } })),
      }),
    },
    async () => ({
      items: (await ids.listRoleMappings()).map((m) => ({ group: m.group, roles: [...m.roles] })),
    }),
  );

  app.put<{ Params: { group: string }; Body: { roles: string[] } }>(
    '/v1/identities/role-mappings/:group',
    {
      config: { action: 'identity.manage', resource: mappingResource },
      schema: schema(
        'Map an IdP group to Warden roles (takes effect on live tokens within a second)',
        NO_CONTENT,
        { params: groupParams, body: object({ roles }, ['roles']) },
      ),
    },
    noContent((request) =>
      ids.putRoleMapping(principalOf(request), request.params.group, request.body.roles),
    ),
  );

  app.delete<{ Params: { group: string } }>(
    '/v1/identities/role-mappings/:group',
    {
      config: { action: 'identity.manage', resource: mappingResource },
      schema: schema('Remove a group mapping', NO_CONTENT, { params: groupParams }),
    },
    noContent((request) => ids.deleteRoleMapping(principalOf(request), request.params.group)),
  );
}
