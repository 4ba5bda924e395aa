import { nhsValid } from '../checksums.ts';
import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * NHS number: ten digits printed 3-3-4, the last a mod 11 check digit. The 3-3-4 grouping is also how
 * North American phone numbers are written, and one random number in eleven passes, so NHS numbers are
 * reported only with context ("NHS", "patient").
 */
const NHS = /(?<![\w-]|\d[ -])\d{3}([ -]?)\d{3}\1\d{4}(?![\w-]|\1\d)/g;

export function nhsDetector(): Detector {
  const re = new RegExp(NHS.source, 'g');
  const self: Detector = {
    id: 'uk-nhs',
    entity: 'UK_NHS',
    maxLength: 16,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const digits = m[0].replace(/[ -]/g, '');
        // A single repeated digit passes mod 11 but is a test or placeholder value, never issued.
        if (!nhsValid(digits) || /^(\d)\1{9}$/.test(digits)) return undefined;
        const grouped = (m[1] ?? '') !== '';
        return makeFinding(self, m.index, m.index + m[0].length, grouped ? 0.4 : 0.3, {
          method: 'nhs-mod11',
          strength: 'checksum',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('0-9'),
      isPart: charClass('0-9 -'),
      lookahead: 1,
      maxLength: 16,
    }),
  };
  return self;
}

/**
 * UK National Insurance number: two prefix letters, six digits, suffix A-D. Neither prefix letter may be
 * D, F, I, Q, U or V; the second may not be O; BG, GB, NK, KN, TN, NT and ZZ are never allocated.
 */
const NINO =
  /(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])/g;

export function ninoDetector(): Detector {
  const re = new RegExp(NINO.source, 'g');
  const self: Detector = {
    id: 'uk-nino',
    entity: 'UK_NINO',
    maxLength: 15,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) =>
        makeFinding(self, m.index, m.index + m[0].length, 0.7, {
          method: 'nino-prefix-rules',
          strength: 'structure',
        }),
      );
    },
    pendingFrom: definePending({
      isStart: charClass('A-Z'),
      isPart: charClass('A-Z0-9 '),
      lookahead: 1,
      maxLength: 15,
    }),
  };
  return self;
}
