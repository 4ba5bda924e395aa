import type { RootStatus } from '../kms/index.ts';

/**
 * Operator control of the root of trust, as the HTTP API exposes it (`/v1/operator/*`). The server only
 * validates and forwards; the implementation decides what initialising, unsealing and sealing mean for the
 * configured root (software Shamir root, PKCS#11 HSM) and forgets the KMS's unwrapped keys on seal.
 *
 * Implementations signal a caller error by throwing a `KmsError` (its `code` and `status` reach the client
 * unchanged); any other error becomes a generic 500. Messages must never contain share or key bytes.
 */
export interface OperatorControl {
  status(): RootStatus;
  /** Creates the root and returns the encoded shares, shown once. Refused once initialised. */
  init(request: { shares: number; threshold: number }): Promise<{ shares: string[] }>;
  /** Adds one share (or the unseal credential of the configured root); returns the resulting status. */
  unseal(share: string): Promise<RootStatus>;
  seal(): Promise<RootStatus>;
}
