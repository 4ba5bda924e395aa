import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * US Social Security numbers: area 001-899 except 666, group 01-99, serial 0001-9999 (SSA rules since
 * 2011 randomisation), one consistent separator. The dashed form is distinctive; bare nine digits are
 * reported only with context because order and account numbers look identical.
 */
const SSN = /(?<![\w-]|\d[ -])(?!000|666|9)\d{3}([ -]?)(?!00)\d{2}\1(?!0000)\d{4}(?![\w-]|\1\d)/g;

/** Numbers the SSA voided after they were published (the Woolworth wallet card, a 1940s advertisement). */
const VOIDED = new Set(['078051120', '219099999']);

/** Whether nine digits are an SSN the SSA could issue: area 001-899 but 666, group 01-99, serial 0001-9999. */
export function ssnDigitsValid(d: string): boolean {
  return (
    /^\d{9}$/.test(d) &&
    !/^(?:000|666|9)/.test(d) &&
    d.slice(3, 5) !== '00' &&
    d.slice(5) !== '0000' &&
    !VOIDED.has(d)
  );
}

const BASE_CONFIDENCE: Readonly<Record<string, number>> = { '-': 0.65, ' ': 0.45, '': 0.3 };

export function usSsnDetector(): Detector {
  const re = new RegExp(SSN.source, 'g');
  const self: Detector = {
    id: 'us-ssn',
    entity: 'US_SSN',
    maxLength: 16,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const sep = m[1] ?? '';
        if (VOIDED.has(m[0].replace(/[ -]/g, ''))) return undefined;
        return makeFinding(self, m.index, m.index + m[0].length, BASE_CONFIDENCE[sep] ?? 0.3, {
          method: 'ssa-ranges',
          strength: 'structure',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass('0-9'),
      isPart: charClass('0-9 -'),
      lookahead: 3,
      maxLength: 16,
    }),
  };
  return self;
}
