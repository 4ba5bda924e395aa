import { createHash } from 'node:crypto';
import { constantTimeEqual } from '../crypto/index.ts';
import type { Principal } from '../kms/index.ts';

/** The credentials a request carries and where it comes from (for throttling and the audit trail). */
export interface AuthenticationInput {
  /** The raw `Authorization` header. */
  readonly authorization: string | undefined;
  /** DER of a client certificate that TLS verified against the configured client CA (mutual TLS). */
  readonly clientCertificate: Buffer | undefined;
  readonly sourceIp: string;
  readonly userAgent?: string;
  readonly requestId: string;
}

/** Maps a request's credentials to the caller, or `undefined` when they prove nobody. */
export type Authenticate = (
  input: AuthenticationInput,
) => Principal | undefined | Promise<Principal | undefined>;

/** Tries each authenticator in turn; the first that recognises the credentials decides. */
export function firstOf(...authenticators: readonly Authenticate[]): Authenticate {
  return async (input) => {
    for (const authenticate of authenticators) {
      const principal = await authenticate(input);
      if (principal !== undefined) return principal;
    }
    return undefined;
  };
}

/** Longest bearer token accepted; longer headers are rejected before hashing. */
const MAX_TOKEN_CHARS = 4096;

/** The token of an `Authorization: Bearer <token>` header, or undefined when the header is anything else. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > MAX_TOKEN_CHARS + 7) return undefined;
  const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
  return match?.[1];
}

/** The principal of the bootstrap admin token until the identity work replaces it with real identities. */
export const BOOTSTRAP_PRINCIPAL: Principal = {
  id: 'bootstrap-admin',
  roles: ['admin'],
  authMethod: 'bootstrap-token',
};

/**
 * An authenticator for the single bootstrap admin token. Only the token's SHA-256 is kept, and a presented
 * token is hashed and compared in constant time, so neither the comparison time nor a heap dump of this closure
 * reveals the token. The token itself never appears in a log line or an error.
 */
export function bootstrapTokenAuthenticator(
  token: string,
  principal: Principal = BOOTSTRAP_PRINCIPAL,
): Authenticate {
  if (token.length < 16 || bearerToken(`Bearer ${token}`) !== token) {
    throw new Error('the bootstrap token must be at least 16 printable ASCII characters, without spaces');
  }
  const expected = sha256(token);
  // Every request carrying another credential (a ~1 KB access token) passes through here first: a presented token
  // of another length cannot match and is not hashed. The length is all that skipping reveals, and it is not secret
  // (Warden generates 52-character tokens: a prefix and 32 random bytes).
  const length = token.length;
  return ({ authorization }) => {
    const presented = bearerToken(authorization);
    if (presented?.length !== length) return undefined;
    return constantTimeEqual(sha256(presented), expected) ? principal : undefined;
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
