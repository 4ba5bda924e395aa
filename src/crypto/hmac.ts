import { createHmac } from 'node:crypto';
import { constantTimeEqual } from './bytes.ts';
import { keyObjectOf, MacKey, requireKey } from './keys.ts';

/**
 * HMAC-SHA256 with full 32-byte tags only. `verifyMac` refuses truncated tags (it returns false for any tag that
 * is not 32 bytes) rather than accepting a caller-chosen length: a verifier that takes the tag's length from the
 * input lets an attacker pick the shortest one.
 */
export const HMAC_SHA256_TAG_BYTES = 32;

export function mac(key: MacKey, data: Uint8Array): Buffer {
  return createHmac('sha256', keyObjectOf(requireKey(key, MacKey, 'a MacKey (HMAC-SHA256)')))
    .update(data)
    .digest();
}

/** Constant-time check of a full 32-byte tag; a tag of any other length compares unequal. */
export function verifyMac(key: MacKey, data: Uint8Array, tag: Uint8Array): boolean {
  return constantTimeEqual(mac(key, data), tag);
}
