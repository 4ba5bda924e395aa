import { luhnValid } from '../checksums.ts';
import { makeFinding } from '../scan.ts';
import type { Detector, EntityType, Finding, Validation } from '../types.ts';
import { cardBrand } from './credit-card.ts';
import { ssnDigitsValid } from './us-ssn.ts';

/**
 * Numbers spelled out digit by digit in English words — `four one one one, one one one one, …` — which a model
 * writes when asked to, and which no digit pattern sees. A run of digit words (`zero`/`oh` … `nine`, any case)
 * separated by a space, a hyphen or a comma (with or without a space after it) is read as its digits and kept
 * only when those are a card number (Luhn and a known issuer range) or an SSN (the SSA's ranges): checks that
 * prose with a few numbers in words does not pass. A run must be whole: one continuing with another digit word
 * spells a longer number, as a digit group continuing after a card is not a card.
 *
 * A regex over whole runs (an alternation of words, a lookbehind for the word before) halved the engine's
 * throughput on prose, and a plain word scan was slower still; so a cheap regex finds where two digit words
 * meet and a word scan decides there. The fold (fold.ts) is per code point and cannot join words.
 */
const DIGIT_OF: ReadonlyMap<string, string> = new Map([
  ...['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'].map(
    (w, d): [string, string] => [w, String(d)],
  ),
  ['oh', '0'],
]);
const LONGEST_WORD = 5;
/** Longest word (5) and separator (2): what one spelled digit can take. */
const PER_DIGIT = 7;

/** Two digit words and the start of a separator: how every run begins. */
const TWO_WORDS =
  /(?:zero|one|two|three|four|five|six|seven|eight|nine|oh)(?:, ?| |-)(?:zero|one|two|three|four|five|six|seven|eight|nine|oh)[ ,-]/gi;

const COMMA = 44;
const SPACE = 32;
const HYPHEN = 45;

function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function wordEnd(text: string, i: number): number {
  let e = i;
  while (e < text.length && isLetter(text.charCodeAt(e))) e++;
  return e;
}

/** Lower-case digit words by length, to compare in place: a text's every short word is looked at. */
const WORDS_BY_LENGTH: readonly (readonly (readonly [string, string])[])[] = [2, 3, 4, 5].map((length) =>
  [...DIGIT_OF].filter(([word]) => word.length === length),
);

/** The digit of the whole word text[start, end), if it is a digit word (any case); no string is built. */
function digitOf(text: string, start: number, end: number): string | undefined {
  const candidates = WORDS_BY_LENGTH[end - start - 2];
  if (candidates === undefined) return undefined;
  next: for (const [word, digit] of candidates) {
    for (let k = 0; k < word.length; k++) {
      if ((text.charCodeAt(start + k) | 0x20) !== word.charCodeAt(k)) continue next;
    }
    return digit;
  }
  return undefined;
}

/** Where the next word starts when a separator follows index `e` (`, ` or `,`, ` `, `-`), else undefined. */
function afterSeparator(text: string, e: number): number | undefined {
  const c = text.charCodeAt(e);
  if (c === COMMA) return text.charCodeAt(e + 1) === SPACE ? e + 2 : e + 1;
  return c === SPACE || c === HYPHEN ? e + 1 : undefined;
}

/** The start of the whole digit word that precedes index `k` across one separator, if there is one. */
function previousWord(text: string, k: number): number | undefined {
  let end: number;
  const before = text.charCodeAt(k - 1);
  if (before === SPACE && text.charCodeAt(k - 2) === COMMA) end = k - 2;
  else if (before === SPACE || before === COMMA || before === HYPHEN) end = k - 1;
  else return undefined;
  let start = end;
  while (start > 0 && end - start <= LONGEST_WORD && isLetter(text.charCodeAt(start - 1))) start--;
  if (start > 0 && isLetter(text.charCodeAt(start - 1))) return undefined;
  return digitOf(text, start, end) === undefined ? undefined : start;
}

function spelledDetector(
  id: string,
  entity: EntityType,
  words: { readonly min: number; readonly max: number },
  accept: (digits: string) => { readonly confidence: number; readonly validation: Validation } | undefined,
): Detector {
  const maxLength = words.max * PER_DIGIT;
  const candidates = new RegExp(TWO_WORDS.source, 'gi');
  /**
   * One attempt at the word containing index `i`: a finding when a whole run of the right length and value
   * starts there (pushed to `out`); returns where scanning goes on — after the finding, or after that word.
   */
  const attempt = (text: string, i: number, out: Finding[]): number => {
    const first = wordEnd(text, i);
    const whole = i === 0 || !isLetter(text.charCodeAt(i - 1));
    const digit = whole ? digitOf(text, i, first) : undefined;
    // A run starts at a digit word that does not continue an earlier run.
    if (digit === undefined || previousWord(text, i) !== undefined) return first;
    let digits = digit;
    let end = first;
    for (;;) {
      const next = afterSeparator(text, end);
      if (next === undefined || !isLetter(text.charCodeAt(next))) break;
      const nextEnd = wordEnd(text, next);
      const d = digitOf(text, next, nextEnd);
      if (d === undefined) break;
      // One word more than the longest number: a longer number, not this one.
      if (digits.length === words.max) return first;
      digits += d;
      end = nextEnd;
    }
    const verdict = digits.length >= words.min ? accept(digits) : undefined;
    if (verdict === undefined) return first;
    out.push(makeFinding(self, i, end, verdict.confidence, verdict.validation));
    return end;
  };
  const self: Detector = {
    id,
    entity,
    maxLength,
    find(text: string, from = 0): Finding[] {
      const out: Finding[] = [];
      // Every run starts with two digit words and a separator, and the regex finds those at ~200 MB/s; the
      // word scan then decides at each hit (a hit inside a word, "phone two", is skipped as the scan would).
      candidates.lastIndex = from;
      for (let m = candidates.exec(text); m !== null; m = candidates.exec(text)) {
        candidates.lastIndex = attempt(text, m.index, out);
      }
      return out;
    },
    // Only a run of digit words reaching the end of the text can still grow (or stop being whole): the run's
    // first word, or a last word of up to five letters that may still become a digit word. Prose is released.
    pendingFrom(text: string): number {
      const n = text.length;
      const floor = Math.max(0, n - maxLength);
      const partial = trailingLetters(text, n);
      // A long last word is no digit word and never becomes one: what precedes it is settled.
      if (partial > LONGEST_WORD) return n;
      let start = n - partial;
      for (let w = previousWord(text, start); w !== undefined && w >= floor; w = previousWord(text, w))
        start = w;
      return Math.max(floor, start);
    },
    canonical: (value) => {
      let digits = '';
      for (const word of value.toLowerCase().match(/[a-z]+/g) ?? []) digits += DIGIT_OF.get(word) ?? '';
      return digits;
    },
  };
  return self;
}

/** Letters at the end of `text`, counted back from `n` (stopping past LONGEST_WORD + 1). */
function trailingLetters(text: string, n: number): number {
  let s = n;
  while (s > 0 && n - s <= LONGEST_WORD && isLetter(text.charCodeAt(s - 1))) s--;
  return n - s;
}

export function spelledCardDetector(): Detector {
  return spelledDetector('spelled-card', 'CREDIT_CARD', { min: 13, max: 19 }, (d) => {
    const brand = cardBrand(d);
    if (brand === undefined || !luhnValid(d)) return undefined;
    return {
      confidence: 0.8,
      validation: { method: 'luhn', strength: 'checksum', detail: `${brand}, spelled` },
    };
  });
}

export function spelledSsnDetector(): Detector {
  return spelledDetector('spelled-ssn', 'US_SSN', { min: 9, max: 9 }, (d) =>
    ssnDigitsValid(d)
      ? { confidence: 0.45, validation: { method: 'ssa-ranges', strength: 'structure', detail: 'spelled' } }
      : undefined,
  );
}
