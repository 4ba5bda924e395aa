import { ibanMod97 } from '../checksums.ts';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/** IBAN lengths per country (ISO 13616 registry): SEPA members and the other major IBAN countries. */
export const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BR: 29,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MR: 27,
  MT: 31,
  MU: 30,
  NL: 18,
  NO: 15,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  SA: 24,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  XK: 20,
};

const MAX_IBAN = 34;
/** The longest printed form: 34 characters in groups of four, one space between groups. */
const MAX_PRINTED = MAX_IBAN + Math.ceil(MAX_IBAN / 4) - 1;

const START = /(?<![A-Za-z0-9])([A-Z]{2})\d{2}/g;

const ALNUM_UPPER = charClass('A-Z0-9');
const ALNUM = charClass('A-Za-z0-9');

/**
 * Reads exactly `length` IBAN characters from `start`, either contiguous or in the printed form with one
 * space after every group of four, and requires a word boundary after them. Linear and bounded by the
 * country's length, so it needs no regex repetition at all.
 */
function readIban(text: string, start: number, length: number): { value: string; end: number } | undefined {
  const spaced = text.charCodeAt(start + 4) === 32;
  let value = '';
  let i = start;
  while (value.length < length) {
    if (spaced && value.length > 0 && value.length % 4 === 0) {
      if (text.charCodeAt(i) !== 32) return undefined;
      i++;
    }
    const c = text.charCodeAt(i);
    if (!ALNUM_UPPER(c)) return undefined;
    value += text.charAt(i);
    i++;
  }
  if (i < text.length && ALNUM(text.charCodeAt(i))) return undefined;
  return { value, end: i };
}

export function ibanDetector(): Detector {
  const re = new RegExp(START.source, 'g');
  const maxLength = MAX_PRINTED + 2;
  const self: Detector = {
    id: 'iban',
    entity: 'IBAN',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const country = m[1] ?? '';
        const length = IBAN_LENGTHS[country];
        if (length === undefined) return undefined;
        const read = readIban(text, m.index, length);
        if (read === undefined) return undefined;
        const check = Number(read.value.slice(2, 4));
        if (check < 2 || check > 98 || ibanMod97(read.value) !== 1) return undefined;
        return makeFinding(self, m.index, read.end, 0.95, {
          method: 'iban-mod97',
          strength: 'checksum',
          detail: country,
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('A-Z'),
      isPart: charClass('A-Z0-9 '),
      lookahead: 1,
      maxLength,
    }),
  };
  return self;
}
