import { luhnValid } from '../checksums.ts';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * Payment card numbers: 13-19 digits, either contiguous or in the printed groupings (4-4-4-4[-3], 4-6-5,
 * 4-6-4, 4-4-4-1..3) with one consistent space, dash or dot (`4111.1111.1111.1111`, as some forms and locales
 * print them). The lookarounds make the number a whole run: a digit group continuing with a separator means a
 * longer identifier, not a card. A short trailing group (expiry "12/26") is allowed because cards are often
 * written that way.
 */
const CARD =
  /(?<![\w-]|\d[ .-])(?:\d{4}([ .-])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|\d{4}([ .-])\d{6}\2\d{4,5}|\d{4}([ .-])\d{4}\3\d{4}\3\d{1,3}|\d{13,19})(?![\w-]|[ .-]\d{4}|\.\d)/g;

/** Issuer identification ranges of the major brands with their valid lengths. */
export function cardBrand(d: string): string | undefined {
  const n = d.length;
  const p2 = Number(d.slice(0, 2));
  const p3 = Number(d.slice(0, 3));
  const p4 = Number(d.slice(0, 4));
  const p6 = Number(d.slice(0, 6));
  if (d.startsWith('4') && (n === 13 || n === 16 || n === 19)) return 'visa';
  if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n === 16) return 'mastercard';
  if ((p2 === 34 || p2 === 37) && n === 15) return 'amex';
  const long = n >= 16 && n <= 19;
  if ((p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65 || (p6 >= 622126 && p6 <= 622925)) && long) {
    return 'discover';
  }
  if (((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) && n >= 14 && n <= 19)
    return 'diners';
  if (p4 >= 3528 && p4 <= 3589 && long) return 'jcb';
  if (p2 === 62 && long) return 'unionpay';
  if (p4 >= 2200 && p4 <= 2204 && long) return 'mir';
  if ([5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763].includes(p4) && n >= 12) return 'maestro';
  return undefined;
}

const DIGIT = charClass('0-9');
const PART = charClass('0-9 .-');

export function creditCardDetector(): Detector {
  const re = new RegExp(CARD.source, 'g');
  const self: Detector = {
    id: 'credit-card',
    entity: 'CREDIT_CARD',
    maxLength: 32,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const digits = m[0].replace(/[ .-]/g, '');
        if (!luhnValid(digits)) return undefined;
        const brand = cardBrand(digits);
        // A Luhn-valid number outside every known IIN range is as likely an account or order number.
        const confidence = brand === undefined ? 0.35 : 0.8;
        return makeFinding(self, m.index, m.index + m[0].length, confidence, {
          method: 'luhn',
          strength: 'checksum',
          detail: brand ?? 'unknown-iin',
        });
      });
    },
    pendingFrom: definePending({ isStart: DIGIT, isPart: PART, lookahead: 4, maxLength: 32 }),
  };
  return self;
}
