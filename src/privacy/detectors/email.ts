import { charClass, definePending, makeFinding, scanRegex } from '../scan.ts';
import type { Detector, Finding } from '../types.ts';

/**
 * E-mail addresses, a pragmatic subset of RFC 5322 `addr-spec` with RFC 6531 internationalised addresses: a local
 * part of at most 64 of the characters people actually use (no quoted strings, no comments; stray dots are
 * tolerated rather than rejected, so `.john@…` cannot hide an address behind a syntax error), a host name of at
 * most 253 characters with an alphabetic top-level label. Letters, marks and digits of any script count
 * (`jäne@exämple.de`, `संपर्क@डाटामेल.भारत`), limited to the Basic Multilingual Plane so that a character is one
 * UTF-16 unit and the bounds below are bounds in units. Both repetitions are bounded and separated by a literal
 * `@`, so an attempt costs at most 64 + 253 steps.
 */
const LETTERS = String.raw`[[\p{L}\p{M}\p{Nd}]--[\u{10000}-\u{10FFFF}]]`;
const LOCAL_CHARS = String.raw`A-Za-z0-9._%+\-${LETTERS}`;
const DOMAIN_CHARS = String.raw`A-Za-z0-9.\-${LETTERS}`;
const EMAIL = new RegExp(`(?<![${LOCAL_CHARS}])[${LOCAL_CHARS}]{1,64}@[${DOMAIN_CHARS}]{1,253}`, 'gv');

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

const LABEL = /^[\p{L}\p{Nd}](?:[\p{L}\p{M}\p{Nd}-]{0,61}[\p{L}\p{M}\p{Nd}])?$/u;
const TLD = /^(?:\p{L}[\p{L}\p{M}]{1,23}|xn--[A-Za-z0-9-]{1,59})$/u;

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
  const re = new RegExp(EMAIL.source, 'gv');
  const maxLength = 64 + 1 + 253 + 1;
  const self: Detector = {
    id: 'email',
    entity: 'EMAIL',
    maxLength,
    find(text: string, from = 0): Finding[] {
      // Every match holds an `@`: text without one costs one indexOf instead of an attempt at every word.
      if (text.indexOf('@', from) === -1) return [];
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
      isStart: charClass(LOCAL_CHARS, 'v'),
      isPart: charClass(`${LOCAL_CHARS}@`, 'v'),
      lookahead: 0,
      maxLength,
    }),
  };
  return self;
}
