/**
 * The KMS root of trust: whatever protects key material at rest. Every key version's material is stored only
 * wrapped by the root, in the keystore (a database separate from Warden's metadata). Two backends implement
 * this interface: a software root key sealed with Shamir secret sharing, and a PKCS#11 HSM.
 */
export type RootKind = 'software' | 'pkcs11';

export interface RootStatus {
  readonly kind: RootKind;
  readonly initialized: boolean;
  readonly sealed: boolean;
  /** Software root: shares needed / shares given so far while unsealing. */
  readonly threshold?: number;
  readonly shares?: number;
  readonly progress?: number;
  /** Development auto-unseal from a local file: never for real data. */
  readonly insecureDevMode?: boolean;
}

export interface RootOfTrust {
  readonly kind: RootKind;
  status(): RootStatus;
  /**
   * Wraps key material (AEAD, so the result is bound to `aad`: Warden passes the key name, version and type so
   * wrapped material cannot be moved between keys). Throws `SealedError` while sealed.
   */
  wrap(material: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /** Reverses `wrap`; every failure is the one `DecryptionError`. Throws `SealedError` while sealed. */
  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer>;
  /** Random bytes from the root's entropy source (the HSM's C_GenerateRandom for PKCS#11). */
  randomBytes(length: number): Promise<Buffer>;
  /** Wipes the root key from memory (software) or logs out / closes the session (PKCS#11). */
  seal(): Promise<void>;
  close(): Promise<void>;
}

export class SealedError extends Error {
  readonly code = 'sealed';
  constructor() {
    super('the key store is sealed: unseal it with `warden operator unseal`');
    this.name = 'SealedError';
  }
}
