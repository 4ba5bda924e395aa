import { timingSafeEqual } from 'node:crypto';

/**
 * Constant-time equality for secrets (MACs, tags, commitments, tokens). Inputs of different lengths compare
 * unequal; the length itself is not treated as secret.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** Overwrites a buffer that held secret material. Best effort: JS engines may have copied it elsewhere. */
export function wipe(buf: Uint8Array): void {
  buf.fill(0);
}

export function concatBytes(...parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}
