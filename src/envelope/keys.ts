import type { KeySlot, SlotType } from './header.ts';

/**
 * Where data keys come from and go to. The envelope never sees key-encryption keys: a wrapper turns a data key
 * into a key slot, an unwrapper turns a slot back into the data key. The local development keyring implements
 * both today; the KMS implements the same interfaces with slots of type `kms`, so no format change is needed.
 */
export interface SlotWrapper {
  readonly slotType: SlotType;
  /** Wraps the data key into a slot bound to `aad` (see `slotAad`); `ref` is decided by the wrapper. */
  wrapDataKey(dataKey: Uint8Array, slotAadFor: (ref: string) => Buffer): Promise<KeySlot>;
  /**
   * Optional: produces the data key itself (the KMS draws it from its root's entropy) together with its slot.
   * When the first recipient offers this, the envelope uses it instead of generating the key locally.
   */
  generateDataKey?(slotAadFor: (ref: string) => Buffer): Promise<{ dataKey: Buffer; slot: KeySlot }>;
}

export interface SlotUnwrapper {
  /** True when this unwrapper holds the key the slot names (decided from public slot data only). */
  canUnwrap(slot: KeySlot): boolean;
  /** Returns the data key, or throws `DecryptionError` when the slot does not authenticate. */
  unwrapDataKey(slot: KeySlot, aad: Buffer): Promise<Buffer>;
}
