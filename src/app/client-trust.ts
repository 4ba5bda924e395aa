import type { SecureContextOptions } from 'node:tls';
import type { CertificateAuthority } from '../identity/index.ts';

/**
 * Mutual TLS for `warden server`: the listener asks every client for a certificate (clients without one still
 * connect and authenticate otherwise) and trusts the internal CA's current bundle, with its CRL checked by
 * OpenSSL, so a revoked certificate is not `authorized` and never authenticates a service account
 * (`tls_client_auth`). The trust is refreshed when the CA is initialised or rotated, or a certificate revoked.
 */
export interface ClientTrust {
  /** Re-reads the trust bundle and CRL, and swaps the TLS context when they changed. */
  refresh(): Promise<void>;
  stop(): void;
}

export function startClientTrust(options: {
  /** The HTTPS listener (`tls.Server.setSecureContext`). */
  readonly server: { setSecureContext(options: SecureContextOptions): void };
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  readonly ca: CertificateAuthority;
  readonly log: (line: string) => void;
  readonly intervalMs?: number;
}): ClientTrust {
  let installed = '';
  const refresh = async (): Promise<void> => {
    const bundle = await options.ca.trustBundle();
    if (bundle.certificates.length === 0) return;
    const crl = await options.ca.crl();
    const fingerprint = bundle.pem + crl.pem;
    if (fingerprint === installed) return;
    options.server.setSecureContext({
      key: options.key,
      cert: options.cert,
      ca: bundle.pem,
      crl: crl.pem,
      minVersion: 'TLSv1.3',
    });
    installed = fingerprint;
  };
  const timer = setInterval(() => {
    refresh().catch((err: unknown) => {
      if ((err as { code?: unknown }).code !== 'sealed') {
        options.log(
          `client certificate trust not refreshed: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    });
  }, options.intervalMs ?? 30_000);
  timer.unref();
  return {
    refresh,
    stop() {
      clearInterval(timer);
    },
  };
}
