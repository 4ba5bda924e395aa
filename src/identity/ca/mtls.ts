import 'reflect-metadata';
import { webcrypto, X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { PeerCertificate, TlsOptions } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { Agent, Pool } from 'undici';
import { CaError } from './errors.ts';
import { identityFromUri } from './identity.ts';
import type { ClientIdentity } from './identity.ts';
import { OID, crlDer, parseCertificate, parseCertificates, serialHex } from './x509.ts';

/** Clock skew tolerated on a CRL's thisUpdate (a CRL from a node whose clock runs slightly ahead). */
const CRL_SKEW_MS = 5 * 60 * 1000;

/** The CA certificates a peer's certificate must chain to (Warden's trust bundle). */
export class TrustAnchors {
  readonly certificates: readonly NodeX509Certificate[];
  readonly pem: string;

  private constructor(certificates: readonly NodeX509Certificate[]) {
    this.certificates = certificates;
    this.pem = certificates.map((c) => c.toString()).join('');
  }

  /** Every certificate of a PEM bundle; each must be a CA certificate. */
  static fromPem(pem: string): TrustAnchors {
    const certificates = parseCertificates(pem);
    if (certificates.some((c) => !c.ca)) {
      throw new CaError('invalid_certificate', 'a trust anchor must be a CA certificate');
    }
    return new TrustAnchors(certificates);
  }

  /** The anchor that issued and signed `certificate`, if any. */
  issuerOf(certificate: NodeX509Certificate): NodeX509Certificate | undefined {
    return this.certificates.find((ca) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey));
  }
}

/**
 * A CRL whose signature verified under one of the trust anchors. Warden's CRL covers every CA generation (see
 * docs/ca.md), so a listed serial is revoked whichever anchor issued the certificate.
 */
export class RevocationList {
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly #serials: ReadonlySet<string>;

  private constructor(thisUpdate: Date, nextUpdate: Date, serials: ReadonlySet<string>) {
    this.thisUpdate = thisUpdate;
    this.nextUpdate = nextUpdate;
    this.#serials = serials;
  }

  /** Parses and verifies a CRL (DER or PEM `X509 CRL`): signed by an anchor, current at `now`. */
  static async parse(
    input: string | Uint8Array,
    trust: TrustAnchors,
    now = Date.now(),
  ): Promise<RevocationList> {
    const der = crlDer(input);
    let crl: x509.X509Crl;
    let nextUpdate: Date | undefined;
    let serials: Set<string>;
    try {
      crl = new x509.X509Crl(der);
      nextUpdate = crl.nextUpdate;
      serials = new Set(crl.entries.map((e) => serialHex(e.serialNumber)));
    } catch (err) {
      throw new CaError('invalid_crl', 'not a DER X.509 CRL', { cause: err });
    }
    let signed = false;
    for (const anchor of trust.certificates) {
      const issuer = new x509.X509Certificate(anchor.raw);
      if (issuer.subject !== crl.issuer) continue;
      try {
        if (await crl.verify({ publicKey: issuer.publicKey }, webcrypto)) {
          signed = true;
          break;
        }
      } catch {
        // A key type the verifier does not handle cannot have signed it; try the next anchor.
      }
    }
    if (!signed) throw new CaError('invalid_crl', 'the CRL is not signed by a trusted CA');
    if (nextUpdate === undefined) throw new CaError('invalid_crl', 'the CRL has no nextUpdate');
    if (crl.thisUpdate.getTime() - CRL_SKEW_MS > now || nextUpdate.getTime() <= now) {
      throw new CaError('invalid_crl', 'the CRL is not current');
    }
    return new RevocationList(crl.thisUpdate, nextUpdate, serials);
  }

  has(serial: string): boolean {
    return this.#serials.has(serialHex(serial));
  }

  get size(): number {
    return this.#serials.size;
  }
}

export type ClientRejection =
  | 'no_certificate'
  | 'malformed'
  | 'unknown_issuer'
  | 'not_yet_valid'
  | 'expired'
  | 'not_a_leaf'
  | 'wrong_usage'
  | 'crl_stale'
  | 'revoked'
  | 'no_identity';

export class ClientCertificateRejectedError extends CaError {
  readonly reason: ClientRejection;

  constructor(reason: ClientRejection) {
    super('client_certificate_rejected', `client certificate rejected: ${reason.replace(/_/g, ' ')}`);
    this.reason = reason;
  }
}

export interface VerifiedClient extends ClientIdentity {
  readonly serial: string;
  readonly notAfter: Date;
  /** Subject of the CA certificate that issued it. */
  readonly issuer: string;
}

export interface VerifyClientOptions {
  /** SPIFFE trust domain of the identities accepted. Default `warden`. */
  readonly trustDomain?: string;
  readonly now?: number;
}

/** What a TLS socket reports (`getPeerCertificate()`: `{}` when the peer sent none), or the certificate itself. */
export type PeerCertificateInput =
  | Pick<PeerCertificate, 'raw'>
  | Record<string, never>
  | NodeX509Certificate
  | Uint8Array
  | string
  | null
  | undefined;

function peerDer(peer: PeerCertificateInput): Uint8Array | string | undefined {
  if (peer === null || peer === undefined) return undefined;
  if (typeof peer === 'string' || peer instanceof Uint8Array) return peer;
  if (peer instanceof NodeX509Certificate) return peer.raw;
  const raw = (peer as { raw?: unknown }).raw;
  return raw instanceof Uint8Array ? raw : undefined;
}

/**
 * Everything a server needs to trust a client certificate, independently of what the TLS stack already checked
 * (so it also holds behind `requireClientCert: false`): issued and signed by a trust anchor, both valid now, a
 * leaf with the clientAuth usage, not on the CRL (which must be current), and exactly one SAN URI naming a
 * client identity of the trust domain. Returns that identity; throws `ClientCertificateRejectedError`.
 */
export function verifyClientCertificate(
  peer: PeerCertificateInput,
  trust: TrustAnchors,
  crl: RevocationList,
  options: VerifyClientOptions = {},
): VerifiedClient {
  const now = options.now ?? Date.now();
  const der = peerDer(peer);
  if (der === undefined || (typeof der !== 'string' && der.byteLength === 0)) {
    throw new ClientCertificateRejectedError('no_certificate');
  }
  let certificate: NodeX509Certificate;
  try {
    certificate = parseCertificate(der);
  } catch {
    throw new ClientCertificateRejectedError('malformed');
  }
  const issuer = trust.issuerOf(certificate);
  if (issuer === undefined) throw new ClientCertificateRejectedError('unknown_issuer');
  for (const c of [certificate, issuer]) {
    if (c.validFromDate.getTime() > now) throw new ClientCertificateRejectedError('not_yet_valid');
    if (c.validToDate.getTime() <= now) throw new ClientCertificateRejectedError('expired');
  }
  if (certificate.ca) throw new ClientCertificateRejectedError('not_a_leaf');
  // node:crypto's `keyUsage` is the extended key usage list.
  // Typed as always present, but undefined at runtime when the certificate has no EKU extension.
  const usages = certificate.keyUsage as readonly string[] | undefined;
  if (!(usages ?? []).includes(OID.clientAuth)) throw new ClientCertificateRejectedError('wrong_usage');
  if (crl.nextUpdate.getTime() <= now) throw new ClientCertificateRejectedError('crl_stale');
  const serial = serialHex(certificate.serialNumber);
  if (crl.has(serial)) throw new ClientCertificateRejectedError('revoked');
  const identities = subjectAltUris(certificate).filter((uri) => uri.startsWith('spiffe://'));
  const identity =
    identities.length === 1
      ? identityFromUri(identities[0] ?? '', options.trustDomain ?? 'warden')
      : undefined;
  if (identity === undefined) throw new ClientCertificateRejectedError('no_identity');
  return { ...identity, serial, notAfter: certificate.validToDate, issuer: issuer.subject };
}

function subjectAltUris(certificate: NodeX509Certificate): string[] {
  try {
    const san = new x509.X509Certificate(certificate.raw).getExtension(x509.SubjectAlternativeNameExtension);
    return (san?.names.items ?? []).filter((n) => n.type === 'url').map((n) => n.value);
  } catch {
    return [];
  }
}

// ---- TLS options ---------------------------------------------------------------------------------------------

export interface TlsIdentity {
  /** PEM chain: the leaf first, then its issuing CA. */
  readonly cert: string;
  /** PEM private key. */
  readonly key: string | Buffer;
  readonly trust: TrustAnchors | string;
}

function anchorsPem(trust: TrustAnchors | string): string {
  return typeof trust === 'string' ? TrustAnchors.fromPem(trust).pem : trust.pem;
}

/**
 * Options for `https.createServer` / `tls.createServer`: TLS 1.3 only, client certificates requested and, with
 * `requireClientCert` (the default), chain-verified by the TLS stack against `trust` — a client without one is
 * refused in the handshake. Revocation and identity are not a TLS-stack matter (Warden's CRL spans CA
 * generations; OpenSSL wants one CRL per issuer): call `verifyClientCertificate` on every connection. With
 * `requireClientCert: false` the handshake also completes without (or with an untrusted) certificate, and
 * `verifyClientCertificate` alone decides.
 */
export function tlsServerOptions(
  options: TlsIdentity & { readonly requireClientCert?: boolean },
): TlsOptions {
  return {
    cert: options.cert,
    key: options.key,
    ca: anchorsPem(options.trust),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: options.requireClientCert ?? true,
  };
}

/** Options for `tls.connect` / `https.request`: TLS 1.3 only, the server verified against `trust` (and its name). */
export function tlsClientOptions(options: TlsIdentity): {
  cert: string;
  key: string | Buffer;
  ca: string;
  minVersion: 'TLSv1.3';
  maxVersion: 'TLSv1.3';
  rejectUnauthorized: true;
} {
  return {
    cert: options.cert,
    key: options.key,
    ca: anchorsPem(options.trust),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    rejectUnauthorized: true,
  };
}

export interface MtlsDispatcherOptions extends TlsIdentity {
  /** Connections per origin. Default 16. */
  readonly connections?: number;
  /** TLS server name when it differs from the URL's host (e.g. connecting by IP to a named server). */
  readonly servername?: string;
}

function connectOptions(options: MtlsDispatcherOptions): Agent.Options['connect'] {
  return {
    ...tlsClientOptions(options),
    ...(options.servername === undefined ? {} : { servername: options.servername }),
  };
}

/** An undici `Agent` presenting a Warden client certificate to any origin (model servers), TLS 1.3 only. */
export function mtlsAgent(options: MtlsDispatcherOptions): Agent {
  return new Agent({ connections: options.connections ?? 16, connect: connectOptions(options) });
}

/** An undici `Pool` to one origin with mutual TLS 1.3. */
export function mtlsPool(origin: string | URL, options: MtlsDispatcherOptions): Pool {
  return new Pool(origin, { connections: options.connections ?? 16, connect: connectOptions(options) });
}
