import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * Phone number candidates: optional `+country`, optional `(area)`, up to six digit groups of at most 12
 * digits joined by single spaces, dots or dashes (7-15 digits in all, checked after the match). Every repetition is bounded, the separators are distinct from digits, and the
 * lookarounds require a whole run so a candidate is never a slice of a longer number.
 *
 * Validation uses libphonenumber-js with the `max` metadata on purpose. `min` only checks that a number
 * has a possible length for its country, which accepts most 10-digit strings (order numbers, timestamps);
 * `max` checks the national number against the numbering plan's allocated ranges (`isValid()`), which is
 * what separates real numbers from phone-shaped identifiers. The metadata is larger, but it is loaded once.
 *
 * The library's own `findPhoneNumbersInText` is not used for scanning: its matcher tries many leniency
 * patterns over the whole text, and the engine needs bounded, position-local attempts so that streaming
 * gives the same answer as a single pass. The library only ever sees one bounded candidate.
 */
const PHONE =
  /(?<![\w+.-]|\d[ .-]|\d\))(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,12}){0,5}(?![\w]|[ .-]\d|:\d)/g;

export interface PhoneDetectorOptions {
  /** Region assumed for numbers written without `+country`. Default `US`. */
  readonly defaultCountry?: CountryCode;
}

const PART = charClass('0-9 .()+-');

export function phoneDetector(options: PhoneDetectorOptions = {}): Detector {
  const defaultCountry = options.defaultCountry ?? 'US';
  const re = new RegExp(PHONE.source, 'g');
  const maxLength = 96;
  const self: Detector = {
    id: 'phone',
    entity: 'PHONE',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const candidate = m[0];
        const digits = candidate.replace(/\D/g, '').length;
        if (digits < 7 || digits > 15) return undefined;
        const parsed = parsePhoneNumberFromString(candidate, { defaultCountry, extract: false });
        if (parsed?.isValid() !== true) return undefined;
        const international = candidate.startsWith('+');
        const formatted = /[ .()-]/.test(candidate);
        // Unformatted national digit runs are indistinguishable from other identifiers without context.
        const confidence = international ? 0.7 : formatted ? 0.55 : 0.3;
        const detail = international ? 'international' : formatted ? 'national' : 'national-unformatted';
        return makeFinding(self, m.index, m.index + candidate.length, confidence, {
          method: 'libphonenumber-max',
          strength: 'structure',
          detail,
        });
      });
    },
    pendingFrom: definePending({ isStart: charClass('0-9(+'), isPart: PART, lookahead: 1, maxLength }),
    canonical(value: string): string {
      return (
        parsePhoneNumberFromString(value, { defaultCountry, extract: false })?.number ??
        value.replace(/[^\d+]/g, '')
      );
    },
  };
  return self;
}
