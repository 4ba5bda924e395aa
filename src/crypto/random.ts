import { randomBytes as nodeRandomBytes } from 'node:crypto';
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
