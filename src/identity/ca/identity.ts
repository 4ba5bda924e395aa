import { CaError } from './errors.ts';

/**
 * The identity a client certificate binds, as one SAN URI in the SPIFFE ID form:
 *
 *     spiffe://<trust domain>/<kind>/<name>   ⇔   principal id  <kind>:<name>
 *
 * `kind` is `service` (Warden components, service accounts, workloads) or `user`. `name` is 1–128 characters of
 * `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit, so it needs no percent-encoding and maps back to
 * exactly one principal id. The trust domain (default `warden`) is lowercase `a-z 0-9 . _ -`.
 */
export const CLIENT_KINDS = ['service', 'user'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

export interface ClientIdentity {
  readonly kind: ClientKind;
  readonly name: string;
  /** `<kind>:<name>`, the Warden principal id. */
  readonly principalId: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

function isKind(value: string): value is ClientKind {
  return (CLIENT_KINDS as readonly string[]).includes(value);
}

export function checkTrustDomain(trustDomain: string): void {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new CaError('invalid_request', 'a trust domain is 1-255 characters of a-z 0-9 . _ -');
  }
}

/** A principal id (`service:gateway`) as a client identity; anything else is refused. */
export function parseClientIdentity(principalId: string, trustDomain: string): ClientIdentity {
  checkTrustDomain(trustDomain);
  const colon = typeof principalId === 'string' ? principalId.indexOf(':') : -1;
  const kind = colon < 0 ? '' : principalId.slice(0, colon);
  const name = colon < 0 ? '' : principalId.slice(colon + 1);
  if (!isKind(kind) || !NAME.test(name)) {
    throw new CaError(
      'invalid_request',
      'a client identity is service:<name> or user:<name> (name: 1-128 of A-Z a-z 0-9 . _ @ -)',
    );
  }
  return { kind, name, principalId: `${kind}:${name}` };
}

export function clientIdentityUri(identity: ClientIdentity, trustDomain: string): string {
  checkTrustDomain(trustDomain);
  return `spiffe://${trustDomain}/${identity.kind}/${identity.name}`;
}

/** The identity a SAN URI binds, or undefined if it is not a client identity of this trust domain. */
export function identityFromUri(uri: string, trustDomain: string): ClientIdentity | undefined {
  const prefix = `spiffe://${trustDomain}/`;
  if (!uri.startsWith(prefix)) return undefined;
  const rest = uri.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const kind = rest.slice(0, slash);
  const name = rest.slice(slash + 1);
  if (!isKind(kind) || !NAME.test(name)) return undefined;
  return { kind, name, principalId: `${kind}:${name}` };
}
