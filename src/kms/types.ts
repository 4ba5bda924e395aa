/** Key types and the operations each allows. The type of a key never changes after creation. */
export const KEY_TYPES = ['aes256-gcm', 'hmac-sha256', 'ed25519', 'ecdsa-p256', 'ecdsa-p384'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
/** Reserved for tokenization (FF1); not creatable yet. */
export type FutureKeyType = 'ff1-aes256';

export type KeyPurpose = 'encrypt' | 'mac' | 'sign';
export const KEY_PURPOSE: Readonly<Record<KeyType, KeyPurpose>> = {
  'aes256-gcm': 'encrypt',
  'hmac-sha256': 'mac',
  ed25519: 'sign',
  'ecdsa-p256': 'sign',
  'ecdsa-p384': 'sign',
};

export function isKeyType(value: unknown): value is KeyType {
  return typeof value === 'string' && (KEY_TYPES as readonly string[]).includes(value);
}

export const VERSION_STATES = ['enabled', 'disabled', 'scheduled_destruction', 'destroyed'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

export const DAY_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_ROTATION_PERIOD_MS = 90 * DAY_MS;
export const DEFAULT_DESTRUCTION_DELAY_MS = 7 * DAY_MS;

export interface KeyRecord {
  readonly name: string;
  readonly type: KeyType;
  readonly createdAt: number;
  /** Null: no automatic rotation. */
  readonly rotationPeriodMs: number | null;
  readonly nextRotationAt: number | null;
  readonly latestVersion: number;
  readonly minDecryptionVersion: number;
  /** Null: the decryption floor only moves by hand. Otherwise versions superseded longer ago than this stop decrypting. */
  readonly autoFloorGraceMs: number | null;
  readonly exportable: boolean;
  readonly description: string;
}

export interface VersionRecord {
  readonly name: string;
  readonly version: number;
  readonly state: VersionState;
  readonly createdAt: number;
  readonly origin: 'generated' | 'imported';
  /** When a version scheduled for destruction will be destroyed. */
  readonly destroyAt: number | null;
  readonly destroyedAt: number | null;
  /** SPKI DER of asymmetric versions; null for symmetric ones. */
  readonly publicKey: Buffer | null;
}

/** Who is calling: the identity issue replaces the bootstrap principal with real identities. */
export interface Principal {
  readonly id: string;
  readonly roles: readonly string[];
  readonly authMethod: string;
  /** Cedar principal type; absent: a user, unless the id starts with `service:` or `system:`. */
  readonly kind?: 'user' | 'service';
  /** IdP or local groups (mapped to roles by the identity service; Cedar sees them as `Warden::Group` parents). */
  readonly groups?: readonly string[];
  /** When this principal's session last passed MFA (epoch ms), for step-up policies. */
  readonly mfaAt?: number;
  /** The network (IPv4 /24, IPv6 /48) this principal's session logged in from, for step-up on a new network. */
  readonly loginNetwork?: string;
  /**
   * The request this call belongs to (set by the HTTP layer): id, source address and user agent for the audit
   * trail; the purpose it declared (`X-Warden-Purpose`, well-formed only) for purpose-bound policies.
   */
  readonly request?: {
    readonly id?: string;
    readonly sourceIp?: string;
    readonly userAgent?: string;
    readonly purpose?: string;
  };
}

export const KEY_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;
