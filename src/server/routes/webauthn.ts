import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {
  WebAuthnAuthenticationResult,
  WebAuthnRequestContext,
  WebAuthnService,
  WebAuthnUser,
} from '../../identity/index.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';
import { loginSessionSchema } from './auth-oidc.ts';
import type { LoginSession } from './auth-oidc.ts';

export interface WebAuthnRouteDeps {
  readonly webauthn: WebAuthnService;
  /**
   * The signed-in caller registering a key (its id and a display name for the key). Registration is self-service,
   * like TOTP enrolment: the route is public and this authenticates the bearer itself, so that a privileged user's
   * MFA-enrolment-only session (no roles, hence no Cedar permit) can register its first key. Rejects (401/403)
   * when the bearer proves no user or may not add a key.
   */
  readonly userOf: (request: FastifyRequest) => Promise<WebAuthnUser>;
  /** The user of a login whose first factor passed (`ticket` from the login response); undefined: invalid. */
  readonly pendingLogin: (ticket: string) => Promise<{ readonly userId: string } | undefined>;
  /** Ends that login once the security key verified: the session, with `amr` and `mfaAt` from `result`. */
  readonly completeLogin: (
    ticket: string,
    result: WebAuthnAuthenticationResult,
    context: WebAuthnRequestContext,
  ) => Promise<LoginSession>;
}

class WebAuthnRouteError extends Error {
  readonly code = 'invalid_login_ticket';
  readonly httpStatus = 401;
  constructor() {
    super('the login is unknown or expired; sign in again');
  }
}

const B64URL = (max: number): JsonSchema => ({ type: 'string', pattern: '^[A-Za-z0-9_-]*$', maxLength: max });
const TICKET: JsonSchema = { type: 'string', minLength: 16, maxLength: 8192, pattern: '^[\\x21-\\x7e]+$' };
const descriptor = object(
  {
    id: { type: 'string' },
    type: { type: 'string' },
    transports: { type: 'array', items: { type: 'string' } },
  },
  ['id', 'type'],
);
const creationOptions = object(
  {
    challenge: { type: 'string' },
    rp: object({ name: { type: 'string' }, id: { type: 'string' } }, ['name']),
    user: object({ id: { type: 'string' }, name: { type: 'string' }, displayName: { type: 'string' } }, [
      'id',
      'name',
      'displayName',
    ]),
    pubKeyCredParams: {
      type: 'array',
      items: object({ alg: { type: 'integer' }, type: { type: 'string' } }),
    },
    timeout: { type: 'integer' },
    attestation: { type: 'string' },
    excludeCredentials: { type: 'array', items: descriptor },
    authenticatorSelection: object({
      authenticatorAttachment: { type: 'string' },
      residentKey: { type: 'string' },
      requireResidentKey: { type: 'boolean' },
      userVerification: { type: 'string' },
    }),
    extensions: object({ credProps: { type: 'boolean' } }),
    hints: { type: 'array', items: { type: 'string' } },
  },
  ['challenge', 'rp', 'user', 'pubKeyCredParams'],
);
const requestOptions = object(
  {
    challenge: { type: 'string' },
    rpId: { type: 'string' },
    timeout: { type: 'integer' },
    allowCredentials: { type: 'array', items: descriptor },
    userVerification: { type: 'string' },
    hints: { type: 'array', items: { type: 'string' } },
  },
  ['challenge'],
);
/** The browser's PublicKeyCredential as JSON (`toJSON()`); the service checks every field in depth. */
const credentialJson = (inner: Record<string, JsonSchema>, required: string[]): JsonSchema =>
  object(
    {
      id: B64URL(1366),
      rawId: B64URL(1366),
      type: { type: 'string', enum: ['public-key'] },
      response: object(inner, required),
      authenticatorAttachment: { type: 'string', maxLength: 32 },
      clientExtensionResults: { type: 'object', maxProperties: 16 },
    },
    ['id', 'rawId', 'type', 'response'],
  );
const registrationJson = credentialJson(
  {
    clientDataJSON: B64URL(16384),
    attestationObject: B64URL(16384),
    authenticatorData: B64URL(16384),
    transports: { type: 'array', maxItems: 8, items: { type: 'string', maxLength: 32 } },
    publicKeyAlgorithm: { type: 'integer' },
    publicKey: B64URL(16384),
  },
  ['clientDataJSON', 'attestationObject'],
);
const authenticationJson = credentialJson(
  {
    clientDataJSON: B64URL(16384),
    authenticatorData: B64URL(16384),
    signature: B64URL(16384),
    userHandle: B64URL(128),
  },
  ['clientDataJSON', 'authenticatorData', 'signature'],
);
const credentialView = object(
  {
    id: { type: 'string' },
    name: { type: 'string' },
    aaguid: { type: 'string' },
    attestationFormat: { type: 'string' },
    transports: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'integer' },
  },
  ['id', 'name', 'aaguid', 'attestationFormat', 'transports', 'createdAt'],
);

function contextOf(request: FastifyRequest): WebAuthnRequestContext {
  const userAgent = request.headers['user-agent'];
  return { requestId: request.id, sourceIp: request.ip, ...(userAgent === undefined ? {} : { userAgent }) };
}

/**
 * Security keys: registration by the signed-in user (self-service on their own identity, see `userOf`), and
 * authentication as the second factor of a login (public: the first factor's ticket identifies the user).
 */
export function webauthnRoutes(app: FastifyInstance, deps: WebAuthnRouteDeps): void {
  const tags = ['auth'];

  app.route({
    method: 'POST',
    url: '/v1/auth/webauthn/register/options',
    config: { public: true },
    schema: {
      tags,
      summary: 'Options for registering a security key (navigator.credentials.create)',
      body: object({}),
      response: { 200: creationOptions, ...errorResponses },
    },
    handler: async (request) => deps.webauthn.registrationOptions(await deps.userOf(request)),
  });

  app.route<{ Body: { response: unknown; name?: string } }>({
    method: 'POST',
    url: '/v1/auth/webauthn/register/verify',
    config: { public: true },
    schema: {
      tags,
      summary: 'Verify and store a new security key',
      body: object({ response: registrationJson, name: { type: 'string', minLength: 1, maxLength: 64 } }, [
        'response',
      ]),
      response: { 200: credentialView, ...errorResponses },
    },
    handler: async (request) => {
      const user = await deps.userOf(request);
      const c = await deps.webauthn.verifyRegistration(user, request.body.response, {
        ...(request.body.name === undefined ? {} : { name: request.body.name }),
        context: contextOf(request),
      });
      return {
        id: c.id,
        name: c.name,
        aaguid: c.aaguid,
        attestationFormat: c.attestationFormat,
        transports: [...c.transports],
        createdAt: c.createdAt,
      };
    },
  });

  const userOfTicket = async (ticket: string): Promise<string> => {
    const pending = await deps.pendingLogin(ticket);
    if (pending === undefined) throw new WebAuthnRouteError();
    return pending.userId;
  };

  app.route<{ Body: { ticket: string } }>({
    method: 'POST',
    url: '/v1/auth/webauthn/authenticate/options',
    config: { public: true },
    schema: {
      tags,
      summary: 'Options for the security-key second factor of a login (navigator.credentials.get)',
      body: object({ ticket: TICKET }, ['ticket']),
      response: { 200: requestOptions, ...errorResponses },
    },
    handler: async (request) => deps.webauthn.authenticationOptions(await userOfTicket(request.body.ticket)),
  });

  app.route<{ Body: { ticket: string; response: unknown } }>({
    method: 'POST',
    url: '/v1/auth/webauthn/authenticate/verify',
    config: { public: true },
    schema: {
      tags,
      summary: 'Verify the security key and complete the login',
      body: object({ ticket: TICKET, response: authenticationJson }, ['ticket', 'response']),
      response: { 200: loginSessionSchema, ...errorResponses },
    },
    handler: async (request) => {
      const context = contextOf(request);
      const userId = await userOfTicket(request.body.ticket);
      const result = await deps.webauthn.verifyAuthentication(userId, request.body.response, context);
      return deps.completeLogin(request.body.ticket, result, context);
    },
  });
}
