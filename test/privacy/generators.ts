/**
 * Deterministic generators of valid (and deliberately invalid) values for tests, the evaluation corpus
 * and the benchmark. Valid checksums are computed here, independently of the detectors' acceptance code
 * where practical (Luhn, mod 97, Verhoeff check digits, Base58Check and bech32 encoders).
 */
import { createHash } from 'node:crypto';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import {
  BECH32_CONST,
  BECH32M_CONST,
  bech32HrpExpand,
  bech32Polymod,
  convertBits,
  eip55Checksum,
  ibanMod97,
  nhsCheckDigit,
  verhoeffCheckDigit,
} from '../../src/privacy/checksums.ts';

/** mulberry32: small, fast, seedable; quality is ample for test data. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  chars(alphabet: string, n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet.charAt(Math.floor(this.next() * alphabet.length));
    return s;
  }
  digits(n: number): string {
    return this.chars('0123456789', n);
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
}

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const ALNUM = `${UPPER}${LOWER}0123456789`;

export function luhnCheckDigit(partial: string): number {
  let sum = 0;
  for (let i = 0; i < partial.length; i++) {
    let d = partial.charCodeAt(partial.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

const CARD_BRANDS: readonly { prefixes: readonly string[]; length: number }[] = [
  { prefixes: ['4'], length: 16 },
  { prefixes: ['51', '52', '53', '54', '55', '2221', '2720'], length: 16 },
  { prefixes: ['34', '37'], length: 15 },
  { prefixes: ['6011', '65'], length: 16 },
  { prefixes: ['3528', '3589'], length: 16 },
  { prefixes: ['36'], length: 14 },
  { prefixes: ['62'], length: 16 },
];

export function cardDigits(rng: Rng): string {
  const brand = rng.pick(CARD_BRANDS);
  const prefix = rng.pick(brand.prefixes);
  const body = prefix + rng.digits(brand.length - prefix.length - 1);
  return body + String(luhnCheckDigit(body));
}

export function formatCard(rng: Rng, d: string): string {
  const sep = rng.pick(['', ' ', '-']);
  if (sep === '' || d.length === 14) return d;
  if (d.length === 15) return [d.slice(0, 4), d.slice(4, 10), d.slice(10)].join(sep);
  return (d.match(/.{1,4}/g) ?? []).join(sep);
}

export function card(rng: Rng): string {
  return formatCard(rng, cardDigits(rng));
}

/** A 16-digit number whose Luhn digit is deliberately wrong. */
export function luhnInvalidCard(rng: Rng): string {
  const d = cardDigits(rng);
  const bad = (Number(d.slice(-1)) + rng.int(1, 9)) % 10;
  return formatCard(rng, d.slice(0, -1) + String(bad));
}

const IBAN_SAMPLE_COUNTRIES: Readonly<Record<string, number>> = {
  DE: 22,
  GB: 22,
  FR: 27,
  ES: 24,
  IT: 27,
  NL: 18,
  BE: 16,
  CH: 21,
  AT: 20,
  PL: 28,
  SE: 24,
  IE: 22,
  PT: 25,
  NO: 15,
};

export function iban(rng: Rng, grouped = rng.chance(0.5)): string {
  const country = rng.pick(Object.keys(IBAN_SAMPLE_COUNTRIES));
  const length = IBAN_SAMPLE_COUNTRIES[country] ?? 22;
  // GB, NL and IE BBANs start with a bank code in letters.
  const letters = country === 'GB' || country === 'IE' ? 4 : country === 'NL' ? 4 : 0;
  const bban = rng.chars(UPPER, letters) + rng.digits(length - 4 - letters);
  const check = 98 - ibanMod97(`${country}00${bban}`);
  const compact = `${country}${String(check).padStart(2, '0')}${bban}`;
  return grouped ? (compact.match(/.{1,4}/g) ?? []).join(' ') : compact;
}

export function ibanBadChecksum(rng: Rng): string {
  const good = iban(rng, true);
  const check = Number(good.slice(2, 4));
  const bad = ((check - 2 + rng.int(1, 95)) % 97) + 2;
  return good.slice(0, 2) + String(bad).padStart(2, '0') + good.slice(4);
}

export function ssn(rng: Rng, sep = rng.pick(['-', '-', '-', ' ', ''])): string {
  let area = rng.int(1, 899);
  if (area === 666) area = 667;
  const group = rng.int(1, 99);
  const serial = rng.int(1, 9999);
  return [
    String(area).padStart(3, '0'),
    String(group).padStart(2, '0'),
    String(serial).padStart(4, '0'),
  ].join(sep);
}

export function aadhaar(rng: Rng, grouped = rng.chance(0.7)): string {
  const body = String(rng.int(2, 9)) + rng.digits(10);
  const d = body + String(verhoeffCheckDigit(body));
  return grouped ? `${d.slice(0, 4)} ${d.slice(4, 8)} ${d.slice(8)}` : d;
}

export function nhs(rng: Rng, grouped = rng.chance(0.7)): string {
  for (;;) {
    const nine = rng.digits(9);
    const check = nhsCheckDigit(nine);
    if (check === undefined || /^(\d)\1{8}$/.test(nine)) continue;
    const d = nine + String(check);
    return grouped ? `${d.slice(0, 3)} ${d.slice(3, 6)} ${d.slice(6)}` : d;
  }
}

const NINO_FIRST = 'ABCEGHJKLMNOPRSTWXYZ';
const NINO_SECOND = 'ABCEGHJKLMNPRSTWXYZ';
const NINO_BANNED = new Set(['BG', 'GB', 'NK', 'KN', 'TN', 'NT', 'ZZ']);

export function nino(rng: Rng, spaced = rng.chance(0.5)): string {
  let prefix: string;
  do prefix = rng.chars(NINO_FIRST, 1) + rng.chars(NINO_SECOND, 1);
  while (NINO_BANNED.has(prefix));
  const d = rng.digits(6);
  const suffix = rng.chars('ABCD', 1);
  return spaced
    ? `${prefix} ${d.slice(0, 2)} ${d.slice(2, 4)} ${d.slice(4)} ${suffix}`
    : `${prefix}${d}${suffix}`;
}

export function pan(rng: Rng): string {
  return `${rng.chars(UPPER, 3)}${rng.chars('ABCFGHLJPT', 1)}${rng.chars(UPPER, 1)}${String(rng.int(1, 9999)).padStart(4, '0')}${rng.chars(UPPER, 1)}`;
}

const FIRST = [
  'john',
  'maria',
  'wei',
  'aisha',
  'lars',
  'priya',
  'tom',
  'olga',
  'diego',
  'fatima',
  'kenji',
  'sara',
];
const LAST = ['smith', 'garcia', 'chen', 'khan', 'nilsen', 'patel', 'brown', 'ivanova', 'lopez', 'haddad'];
const DOMAINS = [
  'example.com',
  'mail.example.org',
  'corp.example.co.uk',
  'uni-example.edu',
  'example.io',
  'example.de',
];

export function email(rng: Rng): string {
  const local = rng.pick([
    `${rng.pick(FIRST)}.${rng.pick(LAST)}`,
    `${rng.pick(FIRST)}${String(rng.int(1, 99))}`,
    `${rng.pick(FIRST)}_${rng.pick(LAST)}+news`,
    `${rng.pick(FIRST).charAt(0)}${rng.pick(LAST)}`,
  ]);
  return `${local}@${rng.pick(DOMAINS)}`;
}

const US_AREAS = [
  '201',
  '202',
  '212',
  '213',
  '305',
  '312',
  '404',
  '415',
  '512',
  '617',
  '646',
  '702',
  '718',
  '808',
  '919',
];

function usPhone(rng: Rng): string {
  const area = rng.pick(US_AREAS);
  const exchange = String(rng.int(2, 9)) + rng.digits(2);
  const line = rng.digits(4);
  return rng.pick([
    `(${area}) ${exchange}-${line}`,
    `${area}-${exchange}-${line}`,
    `${area}.${exchange}.${line}`,
    `+1 ${area} ${exchange} ${line}`,
    `+1-${area}-${exchange}-${line}`,
  ]);
}

function intlPhone(rng: Rng): string {
  return rng.pick([
    () => `+44 20 7946 ${rng.digits(4)}`,
    () => `+44 7700 900${rng.digits(3)}`,
    () => `+91 98${rng.digits(3)} ${rng.digits(5)}`,
    () => `+49 30 ${rng.digits(8)}`,
    () => `+33 1 ${rng.digits(2)} ${rng.digits(2)} ${rng.digits(2)} ${rng.digits(2)}`,
  ])();
}

/** A phone number libphonenumber (max metadata, default region US) accepts. */
export function phone(rng: Rng): string {
  for (;;) {
    const p = rng.chance(0.6) ? usPhone(rng) : intlPhone(rng);
    if (parsePhoneNumberFromString(p, { defaultCountry: 'US' })?.isValid() === true) return p;
  }
}

export function invalidPhone(rng: Rng): string {
  return rng.pick([
    `555-${rng.digits(3)}-${rng.digits(4)}`,
    `(000) ${rng.digits(3)}-${rng.digits(4)}`,
    `123-456-${rng.digits(4)}`,
    `(111) 555-${rng.digits(4)}`,
  ]);
}

export function ipv4(rng: Rng): string {
  return [rng.int(1, 223), rng.int(0, 255), rng.int(0, 255), rng.int(1, 254)].join('.');
}

export function ipv6(rng: Rng): string {
  const groups = Array.from({ length: 8 }, () => rng.int(0, 0xffff).toString(16));
  if (rng.chance(0.5)) return `2001:db8:${groups.slice(0, 2).join(':')}::${groups[7] ?? '1'}`;
  return ['2001', ...groups.slice(1)].join(':');
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

export function base58Encode(bytes: Uint8Array): string {
  const digits: number[] = [];
  for (const byte of bytes) {
    let carry = byte;
    for (let j = 0; j < digits.length; j++) {
      carry += (digits[j] ?? 0) << 8;
      digits[j] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = Math.floor(carry / 58);
    }
  }
  let out = '';
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out += '1';
  for (let i = digits.length - 1; i >= 0; i--) out += BASE58.charAt(digits[i] ?? 0);
  return out;
}

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}

export function base58CheckEncode(payload: Uint8Array): string {
  const sum = sha256(sha256(payload)).subarray(0, 4);
  return base58Encode(Buffer.concat([payload, sum]));
}

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

export function segwitEncode(hrp: string, version: number, program: Uint8Array): string {
  const data = [version, ...(convertBits([...program], 8, 5, true) ?? [])];
  const constant = version === 0 ? BECH32_CONST : BECH32M_CONST;
  const mod = bech32Polymod([...bech32HrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ constant;
  const checksum = Array.from({ length: 6 }, (_, i) => (mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...data, ...checksum].map((d) => BECH32_CHARSET.charAt(d)).join('')}`;
}

export function bitcoin(rng: Rng): string {
  return rng.pick([
    () => base58CheckEncode(Buffer.concat([Buffer.from([0]), rng.bytes(20)])),
    () => base58CheckEncode(Buffer.concat([Buffer.from([5]), rng.bytes(20)])),
    () => segwitEncode('bc', 0, rng.bytes(20)),
    () => segwitEncode('bc', 1, rng.bytes(32)),
  ])();
}

export function ethereum(rng: Rng, checksummed = rng.chance(0.7)): string {
  const hex = rng.bytes(20).toString('hex');
  return `0x${checksummed ? eip55Checksum(hex) : hex}`;
}

export function ethereumBadChecksum(rng: Rng): string {
  for (;;) {
    const good = eip55Checksum(rng.bytes(20).toString('hex'));
    const i = good.search(/[a-f]/);
    if (i < 0) continue;
    return `0x${good.slice(0, i)}${good.charAt(i).toUpperCase()}${good.slice(i + 1)}`;
  }
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function jwt(rng: Rng): string {
  const header = b64url({ alg: rng.pick(['HS256', 'RS256', 'ES256']), typ: 'JWT' });
  const payload = b64url({ sub: rng.digits(8), name: rng.pick(FIRST), iat: 1700000000 + rng.int(0, 1e6) });
  return `${header}.${payload}.${rng.bytes(32).toString('base64url')}`;
}

export function pem(rng: Rng, kind = rng.pick(['RSA ', 'EC ', 'OPENSSH ', ''])): string {
  const body = rng.bytes(rng.int(100, 400)).toString('base64');
  const lines = body.match(/.{1,64}/g) ?? [];
  return [`-----BEGIN ${kind}PRIVATE KEY-----`, ...lines, `-----END ${kind}PRIVATE KEY-----`].join('\n');
}

export function apiKey(rng: Rng): string {
  return rng.pick([
    () => `AKIA${rng.chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}`,
    () => `ghp_${rng.chars(ALNUM, 36)}`,
    () => `github_pat_${rng.chars(ALNUM, 22)}_${rng.chars(ALNUM, 59)}`,
    () => `xoxb-${rng.digits(12)}-${rng.digits(13)}-${rng.chars(ALNUM, 24)}`,
    () => `sk_live_${rng.chars(ALNUM, 24)}`,
    () => `AIza${rng.chars(`${ALNUM}_-`, 35)}`,
    () => `sk-proj-${rng.chars(`${ALNUM}_-`, 48)}`,
  ])();
}

/** A password with at least two character classes. */
export function password(rng: Rng): string {
  return `${rng.chars(LOWER, rng.int(3, 6))}${rng.chars(UPPER, 1)}${rng.digits(rng.int(1, 3))}${rng.pick(['!', '#', '$', '%', ''])}`;
}

/** A random base62 token of the kind generic API credentials use. */
export function entropyToken(rng: Rng): string {
  for (;;) {
    const t = rng.chars(ALNUM, rng.int(24, 40));
    if (/\d/.test(t) && /[A-Za-z]/.test(t)) return t;
  }
}

export function uuid(rng: Rng): string {
  const h = rng.bytes(16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
}

const WORDS = (
  'the of and to in is was for that on with as it by at from this be are or have an they which you were ' +
  'her all she there would their we him been has when who will more no if out so said what up its about ' +
  'into than them can only other new some could time these two may then do first any my now such like our ' +
  'over man me even most made after also did many before must through back years where much your way well ' +
  'down should because each just those people how too little state good very make world still own see men ' +
  'work long get here between both life being under never day same another know while last might us great ' +
  'old year off come since against go came right used take three model output request response service'
).split(' ');

/** A sentence of plain prose, optionally with a small number in it. */
export function sentence(rng: Rng): string {
  const n = rng.int(6, 16);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(rng.pick(WORDS));
  if (rng.chance(0.25)) words.splice(rng.int(0, words.length), 0, String(rng.int(2, 2000)));
  const first = words[0] ?? 'the';
  words[0] = first.charAt(0).toUpperCase() + first.slice(1);
  return `${words.join(' ')}${rng.pick(['.', '.', '.', '?', '!'])}`;
}
