import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import Provider from 'oidc-provider';

/**
 * A real OpenID provider (oidc-provider) on 127.0.0.1 for the relying-party tests. Login and consent are
 * completed programmatically: the interaction URL is served by this harness, which finishes the interaction
 * for the account the test chose (`nextLogin`) with `provider.interactionFinished`, exactly as a login page
 * would after checking a password.
 */

export const CLIENT_ID = 'warden-test';
export const CLIENT_SECRET = 'test-client-secret-0123456789abcdef';
export const PUBLIC_CLIENT_ID = 'warden-cli-public';
export const API_AUDIENCE = 'https://warden.test/api';

export interface TestAccount {
  readonly email: string;
  readonly name: string;
  readonly groups: readonly string[];
}

export const ACCOUNTS: Readonly<Record<string, TestAccount>> = {
  alice: { email: 'alice@example.test', name: 'Alice', groups: ['warden-admins', 'engineering'] },
  bob: { email: 'bob@example.test', name: 'Bob', groups: ['marketing'] },
};

export interface NextLogin {
  accountId: string;
  amr?: string[];
  acr?: string;
}

export function signingJwk(kid: string): JWK {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...(privateKey.export({ format: 'jwk' }) as JWK), kid, alg: 'RS256', use: 'sig' };
}

export class TestProvider {
  readonly server: Server;
  readonly issuer: string;
  provider: Provider;
  nextLogin: NextLogin = { accountId: 'alice', amr: ['pwd', 'mfa'] };
  /** When true, authorization codes are bound to the API resource and access tokens are JWTs for it. */
  jwtAccessTokens = false;

  /** The provider's private signing keys, first one used for signing. */
  keys: JWK[];

  private constructor(server: Server, issuer: string, keys: JWK[]) {
    this.server = server;
    this.issuer = issuer;
    this.keys = keys;
    this.provider = this.#build(keys);
  }

  static async start(): Promise<TestProvider> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const harness = new TestProvider(server, `http://127.0.0.1:${port}`, [signingJwk('key-1')]);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      harness.#handle(req, res).catch(() => {
        res.statusCode = 500;
        res.end();
      });
    });
    return harness;
  }

  /** Key rotation: a new provider instance with a new signing key first (the old one kept for verification). */
  rotateKeys(keys: JWK[]): void {
    this.keys = keys;
    this.provider = this.#build(keys);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.url?.startsWith('/interaction/') === true) {
      const provider = this.provider;
      const details = await provider.interactionDetails(req, res);
      const { accountId, amr, acr } = this.nextLogin;
      const grant = new provider.Grant({ accountId, clientId: String(details.params['client_id']) });
      grant.addOIDCScope(String(details.params['scope']));
      if (this.jwtAccessTokens) grant.addResourceScope(API_AUDIENCE, 'api:read');
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, {
        login: { accountId, ...(amr === undefined ? {} : { amr }), ...(acr === undefined ? {} : { acr }) },
        consent: { grantId },
      });
      return;
    }
    this.provider.callback()(req, res);
  }

  #build(keys: JWK[]): Provider {
    return new Provider(this.issuer, {
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          application_type: 'native',
          redirect_uris: ['http://127.0.0.1/callback'],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
          require_auth_time: true,
        },
        {
          client_id: PUBLIC_CLIENT_ID,
          application_type: 'native',
          redirect_uris: ['http://127.0.0.1/callback'],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'none',
          require_auth_time: true,
        },
      ],
      jwks: { keys },
      cookies: { keys: [randomUUID()] },
      pkce: { required: () => true },
      conformIdTokenClaims: false,
      scopes: ['openid', 'email', 'profile', 'groups'],
      claims: {
        openid: ['sub', 'amr', 'acr'],
        email: ['email', 'email_verified'],
        profile: ['name'],
        groups: ['groups'],
      },
      ttl: {
        AccessToken: 600,
        AuthorizationCode: 60,
        IdToken: 600,
        Interaction: 600,
        Grant: 600,
        Session: 600,
      },
      interactions: {
        url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => (this.jwtAccessTokens ? API_AUDIENCE : undefined),
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: 'api:read',
            audience: API_AUDIENCE,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
      findAccount: (_ctx: unknown, id: string) => {
        const account = ACCOUNTS[id];
        if (account === undefined) return undefined;
        return {
          accountId: id,
          claims: () => ({
            sub: id,
            email: account.email,
            email_verified: true,
            name: account.name,
            groups: [...account.groups],
          }),
        };
      },
    });
  }
}

/** A cookie-keeping user agent that follows the provider's redirects until one leaves for `redirectPrefix`. */
export async function authorize(authorizationUrl: string, redirectPrefix: string): Promise<URL> {
  const cookies = new Map<string, string>();
  let next = authorizationUrl;
  for (let hop = 0; hop < 10; hop++) {
    const response = await fetch(next, {
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    await response.arrayBuffer();
    const location = response.headers.get('location');
    if (location === null) throw new Error(`the provider answered ${response.status} without a redirect`);
    const target = new URL(location, next);
    if (target.href.startsWith(redirectPrefix)) return target;
    next = target.href;
  }
  throw new Error('too many redirects');
}
