import { createRemoteJWKSet, customFetch } from 'jose';
import type { FetchImplementation, JWTVerifyGetKey } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  clientCredentialsTokenProvider,
  IdentityClient,
  KmsClientError,
  WardenHttp,
} from '../client/index.ts';
import type { ClientCredentials, Introspection, TokenProvider } from '../client/index.ts';

/**
 * The standalone gateway's connection to its Warden server: the gateway authenticates as its own service account
 * (OAuth client credentials, a token renewed before expiry by the identity SDK), reads policies, servability and
 * the CA's documents with that token, introspects callers' credentials as a confidential client, and fetches the
 * token-signing keys (JWKS) for local verification.
 */
export interface WardenLinkOptions {
  /** `https://host:port` of the Warden server (plain `http://` only to loopback). */
  readonly url: string;
  /** PEM trust anchors for the server's certificate; default: the system store. */
  readonly ca?: string | Buffer;
  /** The gateway's service account (`client_secret` authentication). */
  readonly clientId: string;
  readonly clientSecret: string;
  /** Per-request timeout towards the server, ms. Default 5000. */
  readonly timeoutMs?: number;
}

/** True for a failure that says nothing about the request: the server was not reached or failed (5xx). */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof KmsClientError)) return true;
  return err.status === 0 || err.status >= 500;
}

export class WardenLink {
  readonly url: string;
  readonly #api: WardenHttp;
  readonly #anonymous: WardenHttp;
  readonly #identity: IdentityClient;
  readonly #credentials: ClientCredentials;
  readonly #token: TokenProvider;
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  #issuer: Promise<string> | undefined;

  constructor(options: WardenLinkOptions) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
    const common = {
      address: options.url,
      timeoutMs: this.#timeoutMs,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    };
    this.#anonymous = new WardenHttp(common);
    this.url = this.#anonymous.address;
    this.#credentials = { clientId: options.clientId, clientSecret: options.clientSecret };
    this.#token = clientCredentialsTokenProvider({
      http: this.#anonymous,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
    });
    this.#api = new WardenHttp({ ...common, token: this.#token });
    this.#identity = new IdentityClient(this.#anonymous);
    this.#agent = new Agent({
      connect: {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        rejectUnauthorized: true,
        timeout: this.#timeoutMs,
      },
    });
  }

  /**
   * GET with the gateway's own token. A 401 means the token died early (revoked, the account's roles changed):
   * one retry with a fresh token.
   */
  async get<T>(path: string): Promise<T> {
    try {
      return await this.#api.json<T>('GET', path);
    } catch (err) {
      if (!(err instanceof KmsClientError) || err.status !== 401) throw err;
      this.#token.invalidate();
      return this.#api.json<T>('GET', path);
    }
  }

  /** A public document (no credentials): CA trust bundle and CRL. */
  async getPublic<T>(path: string): Promise<T> {
    return (await this.#anonymous.request<T>('GET', path, undefined, { anonymous: true })).body;
  }

  /** The `issuer` of the server's RFC 8414 metadata (fetched once; retried after a failure). */
  issuer(): Promise<string> {
    this.#issuer ??= this.#identity.metadata().then((metadata) => {
      const issuer = metadata.issuer;
      if (typeof issuer !== 'string' || issuer === '') {
        throw new KmsClientError('invalid_response', 200, 'the server metadata has no issuer');
      }
      return issuer;
    });
    this.#issuer.catch(() => {
      this.#issuer = undefined;
    });
    return this.#issuer;
  }

  /** RFC 7662 introspection, authenticated as the gateway's service account. */
  introspect(token: string): Promise<Introspection> {
    return this.#identity.introspect(token, this.#credentials);
  }

  /**
   * The server's JWKS as a jose key resolver: cached, refetched for an unknown `kid` at most once per
   * `cooldownMs`, over the same trust anchors as every other call.
   */
  jwks(cooldownMs: number): JWTVerifyGetKey {
    const agent = this.#agent;
    // jose reads only status, headers and json() of the answer, which undici's Response provides.
    const fetchImpl = (async (url: string, init: Parameters<FetchImplementation>[1]) =>
      undiciFetch(url, {
        method: init.method,
        headers: Object.fromEntries(init.headers),
        redirect: init.redirect,
        signal: init.signal,
        dispatcher: agent,
      })) as unknown as FetchImplementation;
    return createRemoteJWKSet(new URL('/.well-known/jwks.json', this.url), {
      cooldownDuration: cooldownMs,
      timeoutDuration: this.#timeoutMs,
      [customFetch]: fetchImpl,
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.#api.close(), this.#anonymous.close(), this.#agent.close()]);
  }
}
