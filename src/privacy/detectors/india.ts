import { verhoeffValid } from '../checksums.ts';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * Aadhaar: 12 digits, first digit 2-9 (UIDAI never issues 0 or 1), last digit a Verhoeff check, printed as
 * 4-4-4. A random 12-digit string passes the check one time in ten, so an ungrouped run needs context.
 */
const AADHAAR = /(?<![\w-]|\d[ -])[2-9]\d{3}([ -]?)\d{4}\1\d{4}(?![\w-]|\1\d)/g;

export function aadhaarDetector(): Detector {
  const re = new RegExp(AADHAAR.source, 'g');
  const self: Detector = {
    id: 'in-aadhaar',
    entity: 'IN_AADHAAR',
    maxLength: 18,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        if (!verhoeffValid(m[0].replace(/[ -]/g, ''))) return undefined;
        const grouped = (m[1] ?? '') !== '';
        return makeFinding(self, m.index, m.index + m[0].length, grouped ? 0.55 : 0.3, {
          method: 'verhoeff',
          strength: 'checksum',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('2-9'),
      isPart: charClass('0-9 -'),
      lookahead: 1,
      maxLength: 18,
    }),
  };
  return self;
}

/**
 * Indian Permanent Account Number: five letters, four digits, a letter. The fourth letter is the holder
 * type (P person, C company, H Hindu undivided family, F firm, A association, T trust, B body of
 * individuals, L local authority, J artificial juridical person, G government); others are never issued.
 */
const PAN = /(?<![A-Za-z0-9])[A-Z]{3}[ABCFGHLJPT][A-Z](?!0000)\d{4}[A-Z](?![A-Za-z0-9])/g;

export function panDetector(): Detector {
  const re = new RegExp(PAN.source, 'g');
  const self: Detector = {
    id: 'in-pan',
    entity: 'IN_PAN',
    maxLength: 12,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) =>
        makeFinding(self, m.index, m.index + m[0].length, 0.6, {
          method: 'pan-holder-type',
          strength: 'structure',
        }),
      );
    },
    pendingFrom: definePending({
      isStart: charClass('A-Z'),
      isPart: charClass('A-Z0-9'),
      lookahead: 3,
      maxLength: 12,
    }),
  };
  return self;
}
