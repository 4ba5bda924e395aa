import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * E-mail addresses, a pragmatic subset of RFC 5322 `addr-spec`: a local part of at most 64 of the
 * characters people actually use (no quoted strings, no comments; stray dots are tolerated rather than
 * rejected, so `.john@…` cannot hide an address behind a syntax error), a DNS host name of at most 253
 * characters with an alphabetic top-level label. Both repetitions are bounded and separated by a literal
 * `@`, so an attempt costs at most 64 + 253 steps.
 */
const LOCAL_CHARS = 'A-Za-z0-9._%+-';
const EMAIL = new RegExp(`(?<![${LOCAL_CHARS}])[${LOCAL_CHARS}]{1,64}@[A-Za-z0-9.-]{1,253}`, 'g');

/** File suffixes that follow `@` in asset names such as `icon@2x.png`, which are not addresses. */
const FILE_SUFFIXES = new Set([
  'png',
  'jpg',
  'jpeg',
  'gif',
  'svg',
  'webp',
  'ico',
  'bmp',
  'pdf',
  'js',
  'css',
  'json',
]);

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const TLD = /^(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59})$/;

/** Returns the host name with trailing sentence punctuation removed, or undefined if it is not a host name. */
function validDomain(raw: string): string | undefined {
  let end = raw.length;
  while (end > 0 && (raw.charAt(end - 1) === '.' || raw.charAt(end - 1) === '-')) end--;
  const domain = raw.slice(0, end);
  const labels = domain.split('.');
  if (labels.length < 2) return undefined;
  if (!labels.every((l) => LABEL.test(l))) return undefined;
  const tld = labels[labels.length - 1] ?? '';
  if (!TLD.test(tld) || FILE_SUFFIXES.has(tld.toLowerCase())) return undefined;
  return domain;
}

export function emailDetector(): Detector {
  const re = new RegExp(EMAIL.source, 'g');
  const maxLength = 64 + 1 + 253 + 1;
  const self: Detector = {
    id: 'email',
    entity: 'EMAIL',
    maxLength,
    find(text: string, from = 0): Finding[] {
      return scanRegex(re, text, from, (m) => {
        const at = m[0].indexOf('@');
        const domain = validDomain(m[0].slice(at + 1));
        if (domain === undefined) return undefined;
        return makeFinding(self, m.index, m.index + at + 1 + domain.length, 0.9, {
          method: 'rfc5322-subset',
          strength: 'structure',
        });
      });
    },
    pendingFrom: definePending({
      isStart: charClass(LOCAL_CHARS),
      isPart: charClass(`${LOCAL_CHARS}@`),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}
