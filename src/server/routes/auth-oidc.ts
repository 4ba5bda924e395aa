import type { FastifyInstance } from 'fastify';
import type { OidcIdentity, OidcRelyingParty, OidcRequestContext } from '../../identity/index.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/** The session a login ends with (the identity service's token response). */
export interface LoginSession {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
  readonly refresh_token?: string;
  readonly mfa_enrolment_required?: boolean;
}

export const loginSessionSchema: JsonSchema = object(
  {
    access_token: { type: 'string' },
    token_type: { type: 'string', enum: ['Bearer'] },
    expires_in: { type: 'integer' },
    scope: { type: 'string' },
    refresh_token: { type: 'string' },
    mfa_enrolment_required: { type: 'boolean' },
  },
  ['access_token', 'token_type', 'expires_in', 'scope'],
);

export interface AuthOidcRouteDeps {
  readonly oidc: OidcRelyingParty;
  /**
   * Turns a verified, role-mapped identity into a Warden session: find or provision the user by
   * (issuer, subject), then `issueSession(user, { amr: identity.amr, mfaAt: oidcMfaAt(identity), ... })`.
   */
  readonly issueSession: (identity: OidcIdentity, context: OidcRequestContext) => Promise<LoginSession>;
}

const STATE = { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' };

/**
 * `GET /v1/auth/oidc/start` and `POST /v1/auth/oidc/callback`: login through the enterprise identity provider.
 * Both are public: the first hands out an authorization URL (its state, nonce and PKCE verifier stay on the
 * server), the second is authenticated by the single-use state and the provider's authorization code.
 */
export function authOidcRoutes(app: FastifyInstance, deps: AuthOidcRouteDeps): void {
  const tags = ['auth'];

  app.route<{ Querystring: { redirectUri?: string } }>({
    method: 'GET',
    url: '/v1/auth/oidc/start',
    config: { public: true },
    schema: {
      tags,
      summary: 'Start an OpenID Connect login (authorization code flow with PKCE)',
      querystring: object({
        redirectUri: {
          type: 'string',
          maxLength: 2048,
          description:
            'a registered redirect URI, or the CLI loopback `http://127.0.0.1:<port><path>` (RFC 8252); default: the first registered one',
        },
      }),
      response: {
        200: object(
          {
            authorizationUrl: { type: 'string', description: 'send the browser here' },
            state: { type: 'string', description: 'comes back on the redirect; pass it to the callback' },
            expiresAt: {
              type: 'integer',
              description: 'epoch ms after which the login must be started again',
            },
          },
          ['authorizationUrl', 'state', 'expiresAt'],
        ),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const redirectUri = request.query.redirectUri;
      return deps.oidc.startLogin(redirectUri === undefined ? {} : { redirectUri });
    },
  });

  app.route<{ Body: { code: string; state: string; iss?: string } }>({
    method: 'POST',
    url: '/v1/auth/oidc/callback',
    config: { public: true },
    schema: {
      tags,
      summary: "Complete an OpenID Connect login with the provider's redirect parameters",
      body: object(
        {
          code: { type: 'string', minLength: 1, maxLength: 4096 },
          state: STATE,
          iss: { type: 'string', maxLength: 2048, description: 'the RFC 9207 `iss` parameter, when sent' },
        },
        ['code', 'state'],
      ),
      response: { 200: loginSessionSchema, ...errorResponses },
    },
    handler: async (request) => {
      const userAgent = request.headers['user-agent'];
      const context: OidcRequestContext = {
        requestId: request.id,
        sourceIp: request.ip,
        ...(userAgent === undefined ? {} : { userAgent }),
      };
      const identity = await deps.oidc.completeLogin(request.body, context);
      return deps.issueSession(identity, context);
    },
  });
}
