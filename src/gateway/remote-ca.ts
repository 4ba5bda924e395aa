import type { TLSSocket } from 'node:tls';
import {
  ClientCertificateRejectedError,
  RevocationList,
  TrustAnchors,
  verifyClientCertificate,
} from '../identity/index.ts';
import type { VerifiedClient } from '../identity/index.ts';
import type { WardenLink } from './remote-warden.ts';

export interface RemoteClientCertificatesOptions {
  /** How often the trust bundle and the CRL are fetched again, ms. Default 5000. */
  readonly refreshMs?: number;
  /** SPIFFE trust domain of accepted identities. Default `warden`. */
  readonly trustDomain?: string;
  readonly now?: () => number;
}

/**
 * Client certificates issued by Warden's CA, verified as the server verifies them (`verifyClientCertificate`):
 * chained to the trust bundle of `GET /v1/ca/certificates`, not on the CRL of `GET /v1/ca/crl`, which is
 * fetched every `refreshMs` — so a revocation takes effect on the gateway within that interval. The CRL's own
 * `nextUpdate` bounds how long a gateway cut off from the server keeps accepting certificates.
 */
export class RemoteClientCertificates {
  readonly refreshMs: number;
  readonly #link: WardenLink;
  readonly #trustDomain: string;
  readonly #now: () => number;
  #state: { trust: TrustAnchors; crl: RevocationList } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** One verification per TLS connection and CRL: a keep-alive connection does not re-parse its certificate. */
  readonly #verified = new WeakMap<TLSSocket, { crl: RevocationList; client: VerifiedClient }>();

  constructor(link: WardenLink, options: RemoteClientCertificatesOptions = {}) {
    this.#link = link;
    this.refreshMs = options.refreshMs ?? 5000;
    this.#trustDomain = options.trustDomain ?? 'warden';
    this.#now = options.now ?? Date.now;
  }

  /** PEM of the current trust bundle (what the TLS listener advertises), if fetched. */
  get trustPem(): string | undefined {
    return this.#state?.trust.pem;
  }

  async start(): Promise<void> {
    await this.refresh().catch(() => undefined);
    this.#timer ??= setInterval(() => {
      this.refresh().catch(() => undefined);
    }, this.refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async refresh(): Promise<void> {
    const bundle = await this.#link.getPublic<{ pem?: unknown }>('/v1/ca/certificates');
    if (typeof bundle.pem !== 'string') throw new TypeError('the trust bundle has no pem');
    const trust = TrustAnchors.fromPem(bundle.pem);
    const document = await this.#link.getPublic<{ crl?: unknown }>('/v1/ca/crl?format=json');
    if (typeof document.crl !== 'string') throw new TypeError('the CRL document has no crl');
    this.#state = { trust, crl: await RevocationList.parse(document.crl, trust, this.#now()) };
  }

  /**
   * The identity of the connection's client certificate: undefined when the client sent none; throws
   * `ClientCertificateRejectedError` for one that does not verify (or while no current CRL is known).
   */
  verify(socket: TLSSocket): VerifiedClient | undefined {
    const peer = socket.getPeerCertificate();
    // `{}` when the client sent no certificate.
    if (!(peer.raw instanceof Uint8Array) || peer.raw.length === 0) return undefined;
    const state = this.#state;
    if (state === undefined) throw new ClientCertificateRejectedError('crl_stale');
    const now = this.#now();
    const known = this.#verified.get(socket);
    if (
      known?.crl === state.crl &&
      known.client.notAfter.getTime() > now &&
      state.crl.nextUpdate.getTime() > now
    )
      return known.client;
    const client = verifyClientCertificate(peer.raw, state.trust, state.crl, {
      trustDomain: this.#trustDomain,
      now,
    });
    this.#verified.set(socket, { crl: state.crl, client });
    return client;
  }
}
