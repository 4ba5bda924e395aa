/**
 * Keccak-256 as Ethereum uses it (the original Keccak submission, padding byte 0x01), for EIP-55 address
 * checksums. node:crypto only offers NIST SHA3-256, which pads with 0x06 and therefore hashes differently.
 * A hand-written permutation is preferred over a dependency because it is small, needs no key material and
 * is checked against published vectors and, with SHA3 padding, against node:crypto's sha3-256.
 * BigInt lanes keep the code close to the specification; it only runs on rare 0x-prefixed candidates.
 */

const MASK64 = (1n << 64n) - 1n;

const ROUND_CONSTANTS = [
  0x0000000000000001n,
  0x0000000000008082n,
  0x800000000000808an,
  0x8000000080008000n,
  0x000000000000808bn,
  0x0000000080000001n,
  0x8000000080008081n,
  0x8000000000008009n,
  0x000000000000008an,
  0x0000000000000088n,
  0x0000000080008009n,
  0x000000008000000an,
  0x000000008000808bn,
  0x800000000000008bn,
  0x8000000000008089n,
  0x8000000000008003n,
  0x8000000000008002n,
  0x8000000000000080n,
  0x000000000000800an,
  0x800000008000000an,
  0x8000000080008081n,
  0x8000000000008080n,
  0x0000000080000001n,
  0x8000000080008008n,
];

/** Rotation offsets r[x][y] of the rho step. */
const ROTATIONS = [
  [0n, 36n, 3n, 41n, 18n],
  [1n, 44n, 10n, 45n, 2n],
  [62n, 6n, 43n, 15n, 61n],
  [28n, 55n, 25n, 21n, 56n],
  [27n, 20n, 39n, 8n, 14n],
];

function rotl(v: bigint, n: bigint): bigint {
  return n === 0n ? v : ((v << n) | (v >> (64n - n))) & MASK64;
}

function lane(state: bigint[], x: number, y: number): bigint {
  return state[(x % 5) + 5 * (y % 5)] ?? 0n;
}

function keccakF1600(state: bigint[]): void {
  const c: bigint[] = [0n, 0n, 0n, 0n, 0n];
  const b: bigint[] = new Array<bigint>(25).fill(0n);
  for (const rc of ROUND_CONSTANTS) {
    for (let x = 0; x < 5; x++) {
      c[x] =
        lane(state, x, 0) ^ lane(state, x, 1) ^ lane(state, x, 2) ^ lane(state, x, 3) ^ lane(state, x, 4);
    }
    for (let x = 0; x < 5; x++) {
      const d = (c[(x + 4) % 5] ?? 0n) ^ rotl(c[(x + 1) % 5] ?? 0n, 1n);
      for (let y = 0; y < 5; y++) state[x + 5 * y] = lane(state, x, y) ^ d;
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(lane(state, x, y), ROTATIONS[x]?.[y] ?? 0n);
      }
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        state[x + 5 * y] = lane(b, x, y) ^ (~lane(b, x + 1, y) & MASK64 & lane(b, x + 2, y));
      }
    }
    state[0] = lane(state, 0, 0) ^ rc;
  }
}

/**
 * The Keccak sponge with a 1088-bit rate and a 256-bit output. `domainPad` is the first padding byte:
 * 0x01 for Keccak-256 (Ethereum), 0x06 for SHA3-256.
 */
export function keccakSponge256(data: Uint8Array, domainPad: number): Uint8Array {
  const rate = 136;
  const padded = new Uint8Array((Math.floor(data.length / rate) + 1) * rate);
  padded.set(data);
  padded[data.length] = domainPad;
  padded[padded.length - 1] = (padded[padded.length - 1] ?? 0) | 0x80;
  const state: bigint[] = new Array<bigint>(25).fill(0n);
  const view = new DataView(padded.buffer);
  for (let off = 0; off < padded.length; off += rate) {
    for (let i = 0; i < rate / 8; i++) state[i] = (state[i] ?? 0n) ^ view.getBigUint64(off + 8 * i, true);
    keccakF1600(state);
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) outView.setBigUint64(8 * i, state[i] ?? 0n, true);
  return out;
}

export function keccak256(data: Uint8Array): Uint8Array {
  return keccakSponge256(data, 0x01);
}
