/** Wire types of the KMS HTTP API as the SDK returns them (timestamps ISO 8601, bytes decoded to Buffers). */

export type KeyType = 'aes256-gcm' | 'hmac-sha256' | 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384';
export type VersionState = 'enabled' | 'disabled' | 'scheduled_destruction' | 'destroyed';

export interface Key {
  readonly name: string;
  readonly type: KeyType;
  readonly createdAt: string;
  /** Null: no automatic rotation. */
  readonly rotationPeriodDays: number | null;
  readonly nextRotationAt: string | null;
  readonly latestVersion: number;
  readonly minDecryptionVersion: number;
  readonly autoFloorGraceDays: number | null;
  readonly exportable: boolean;
  readonly description: string;
}

export interface KeyVersion {
  readonly name: string;
  readonly version: number;
  readonly state: VersionState;
  readonly createdAt: string;
  readonly origin: 'generated' | 'imported';
  readonly destroyAt: string | null;
  readonly destroyedAt: string | null;
  /** SPKI DER (base64) of asymmetric versions; null for symmetric ones. */
  readonly publicKey: string | null;
}

export interface KeyInfo {
  readonly key: Key;
  readonly versions: readonly KeyVersion[];
}

export interface RootStatus {
  readonly kind: 'software' | 'pkcs11';
  readonly initialized: boolean;
  readonly sealed: boolean;
  readonly threshold?: number;
  readonly shares?: number;
  readonly progress?: number;
  readonly insecureDevMode?: boolean;
}

export interface Health {
  readonly status: 'ok' | 'sealed' | 'uninitialized';
  readonly initialized: boolean;
  readonly sealed: boolean;
}

export interface KeyOptions {
  /** Days between automatic rotations; 0 disables them. Default 90. */
  readonly rotationPeriodDays?: number;
  readonly autoFloorGraceDays?: number | null;
  readonly exportable?: boolean;
  readonly description?: string;
}

export interface CreateKeyRequest extends KeyOptions {
  readonly name: string;
  readonly type: KeyType;
}

export interface UpdateKeyRequest {
  readonly rotationPeriodDays?: number;
  readonly minDecryptionVersion?: number;
  readonly autoFloorGraceDays?: number | null;
  readonly description?: string;
}

export interface ErrorDetail {
  readonly code: string;
  readonly message: string;
}

/** One item of a batch: its value, or the error that item failed with (the other items are unaffected). */
export type BatchItemResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorDetail };

export interface DataKey {
  readonly ciphertext: string;
  /** The data key in clear; absent when requested without it. Wipe it after use. */
  readonly plaintext?: Buffer;
  readonly keyVersion: number;
}

export interface Signature {
  readonly signature: Buffer;
  readonly keyVersion: number;
}

export interface Mac {
  readonly mac: Buffer;
  readonly keyVersion: number;
}
