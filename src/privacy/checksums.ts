/**
 * Check-digit and checksum algorithms used by the validators. All take the already-extracted characters of
 * a candidate (separators removed) and never throw on malformed input: they return false or undefined.
 */
import { createHash } from 'node:crypto';
import { keccak256 } from './keccak.ts';

function isDigits(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return s.length > 0;
}

/** Luhn mod 10 (ISO/IEC 7812-1), used by payment card numbers. */
export function luhnValid(digits: string): boolean {
  if (!isDigits(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * ISO 13616 IBAN check: move the first four characters to the end, map letters to 10..35, the number must
 * be 1 mod 97. Computed piecewise so it never needs big integers.
 */
export function ibanMod97(iban: string): number {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      rem = (rem * 10 + (c - 48)) % 97;
    } else if (c >= 65 && c <= 90) {
      rem = (rem * 100 + (c - 55)) % 97;
    } else {
      return -1;
    }
  }
  return rem;
}

const VERHOEFF_D = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
  [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
  [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
  [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
  [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
  [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
  [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
  [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
  [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
  [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
  [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
  [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
  [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
  [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
  [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];
const VERHOEFF_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

function verhoeffState(digits: string, offset: number): number {
  let c = 0;
  for (let i = 0; i < digits.length; i++) {
    const d = digits.charCodeAt(digits.length - 1 - i) - 48;
    c = VERHOEFF_D[c]?.[VERHOEFF_P[(i + offset) % 8]?.[d] ?? 0] ?? 0;
  }
  return c;
}

/** Verhoeff dihedral-group check (Aadhaar). Catches all single-digit errors and adjacent transpositions. */
export function verhoeffValid(digits: string): boolean {
  return isDigits(digits) && verhoeffState(digits, 0) === 0;
}

/** The Verhoeff digit that makes `digits + check` valid. */
export function verhoeffCheckDigit(digits: string): number {
  return VERHOEFF_INV[verhoeffState(digits, 1)] ?? 0;
}

/**
 * NHS number check digit: weights 10..2 over the first nine digits, 11 - (sum mod 11), 11 becomes 0 and 10
 * means the nine digits can never form a valid number.
 */
export function nhsCheckDigit(nine: string): number | undefined {
  if (nine.length !== 9 || !isDigits(nine)) return undefined;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (nine.charCodeAt(i) - 48) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 10) return undefined;
  return check === 11 ? 0 : check;
}

export function nhsValid(ten: string): boolean {
  if (ten.length !== 10) return false;
  const check = nhsCheckDigit(ten.slice(0, 9));
  return check !== undefined && check === ten.charCodeAt(9) - 48;
}

const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

export function base58Decode(s: string): Uint8Array | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let carry = BASE58_ALPHABET.indexOf(s.charAt(i));
    if (carry < 0) return undefined;
    for (let j = 0; j < bytes.length; j++) {
      carry += (bytes[j] ?? 0) * 58;
      bytes[j] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes.push(carry & 0xff);
      carry >>= 8;
    }
  }
  for (let i = 0; i < s.length && s.charAt(i) === '1'; i++) bytes.push(0);
  return Uint8Array.from(bytes.reverse());
}

export function doubleSha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(createHash('sha256').update(data).digest()).digest();
}

/** Base58Check: payload followed by the first four bytes of its double SHA-256. Returns the payload. */
export function base58CheckDecode(s: string): Uint8Array | undefined {
  const raw = base58Decode(s);
  if (raw === undefined || raw.length < 5) return undefined;
  const payload = raw.subarray(0, raw.length - 4);
  const sum = doubleSha256(payload);
  for (let i = 0; i < 4; i++) if (sum[i] !== raw[raw.length - 4 + i]) return undefined;
  return payload;
}

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
export const BECH32_CONST = 1;
export const BECH32M_CONST = 0x2bc830a3;

export function bech32Polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if (((top >>> i) & 1) === 1) chk = (chk ^ (BECH32_GENERATORS[i] ?? 0)) >>> 0;
  }
  return chk;
}

export function bech32HrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

export function convertBits(
  data: readonly number[],
  from: number,
  to: number,
  pad: boolean,
): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  const maxAcc = (1 << (from + to - 1)) - 1;
  for (const v of data) {
    if (v < 0 || v >> from !== 0) return undefined;
    acc = ((acc << from) | v) & maxAcc;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & maxv);
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || ((acc << (to - bits)) & maxv) !== 0) {
    return undefined;
  }
  return out;
}

export interface SegwitAddress {
  readonly hrp: string;
  readonly version: number;
  readonly program: Uint8Array;
  readonly encoding: 'bech32' | 'bech32m';
}

/**
 * BIP-173 / BIP-350 segwit address decoding: one case throughout, checksum constant chosen by witness
 * version (bech32 for v0, bech32m for v1..v16), program length rules.
 */
export function segwitDecode(address: string): SegwitAddress | undefined {
  if (address.length > 90) return undefined;
  const lower = address.toLowerCase();
  if (lower !== address && address.toUpperCase() !== address) return undefined;
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) return undefined;
  const hrp = lower.slice(0, sep);
  const data: number[] = [];
  for (let i = sep + 1; i < lower.length; i++) {
    const v = BECH32_CHARSET.indexOf(lower.charAt(i));
    if (v < 0) return undefined;
    data.push(v);
  }
  const residue = bech32Polymod([...bech32HrpExpand(hrp), ...data]);
  const encoding = residue === BECH32_CONST ? 'bech32' : residue === BECH32M_CONST ? 'bech32m' : undefined;
  if (encoding === undefined) return undefined;
  const version = data[0];
  if (version === undefined || version > 16) return undefined;
  const program = convertBits(data.slice(1, data.length - 6), 5, 8, false);
  if (program === undefined || program.length < 2 || program.length > 40) return undefined;
  if (version === 0 && program.length !== 20 && program.length !== 32) return undefined;
  if ((version === 0) !== (encoding === 'bech32')) return undefined;
  return { hrp, version, program: Uint8Array.from(program), encoding };
}

/** EIP-55 mixed-case form of a 40-hex-digit address body: a letter is upper case when its hash nibble >= 8. */
export function eip55Checksum(hex40: string): string {
  const lower = hex40.toLowerCase();
  const hash = keccak256(Buffer.from(lower, 'ascii'));
  let out = '';
  for (let i = 0; i < lower.length; i++) {
    const ch = lower.charAt(i);
    const byte = hash[i >> 1] ?? 0;
    const nibble = i % 2 === 0 ? byte >> 4 : byte & 0x0f;
    out += nibble >= 8 ? ch.toUpperCase() : ch;
  }
  return out;
}

/** Shannon entropy in bits per character of the string's own character distribution. */
export function shannonEntropy(s: string): number {
  if (s.length === 0) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}
