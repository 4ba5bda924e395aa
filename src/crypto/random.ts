import { randomBytes as nodeRandomBytes, randomFillSync } from 'node:crypto';
import { InvalidInputError } from './errors.ts';

/** Upper bound of one `randomBytes` call: anything larger is a bug (a length in bits, a negative number wrapped). */
export const MAX_RANDOM_BYTES = 1024 * 1024;

/** `n` bytes from the operating system's CSPRNG (via OpenSSL), 0 < n <= 1 MiB. */
export function randomBytes(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n <= 0 || n > MAX_RANDOM_BYTES) {
    throw new InvalidInputError(`random length must be an integer from 1 to ${MAX_RANDOM_BYTES}`);
  }
  return nodeRandomBytes(n);
}

const NONCE_POOL_BYTES = 4096;
let noncePool = Buffer.alloc(0);

/**
 * Random bytes for values that are public once used — nonces written next to their ciphertext. Each CSPRNG call
 * costs ~5 µs whatever its size (about as much as a 256-byte AES-GCM operation), so nonces are cut from a 4 KiB
 * block filled by one call. Never use this for keys or other secrets: those take `randomBytes`.
 */
export function publicNonce(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n <= 0 || n > 64)
    throw new InvalidInputError('nonce length must be 1 to 64 bytes');
  if (noncePool.length < n) noncePool = randomFillSync(Buffer.allocUnsafe(NONCE_POOL_BYTES));
  const nonce = Buffer.from(noncePool.subarray(0, n));
  noncePool = noncePool.subarray(n);
  return nonce;
}
