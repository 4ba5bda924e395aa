/**
 * The view of a text that the detectors scan. Model output can be steered to spell a value so that a reader
 * still sees it but an ASCII pattern does not: zero-width and other invisible code points between the digits,
 * soft hyphens, no-break and other Unicode spaces, Unicode dashes, fullwidth or mathematical digits and letters,
 * digits of other scripts, combining marks. Detection therefore runs on a folded copy in which
 *
 * - default-ignorable code points (U+200B, U+00AD, U+2060, U+FEFF, variation selectors, tags, ...) and
 *   combining marks (Mn, Me) are dropped;
 * - every other code point is replaced by its NFKC compatibility form (fullwidth and mathematical forms become
 *   ASCII), and then decimal digits of any script become ASCII digits, letters drawn like an ASCII letter
 *   (Cyrillic `а`, Greek `Ο`: LOOK_ALIKES) that letter, dashes (Pd, U+2212) `-`, space separators (Zs) a space,
 *   line and paragraph separators a newline.
 *
 * Folding is per code point, with no state, so the fold of a concatenation is the concatenation of the folds:
 * the streaming filter relies on that. A finding on the folded text covers the original code points its
 * characters came from, invisible ones inside it included, and replacements are applied to the original text.
 * Text that is all ASCII is its own fold and costs one regex test.
 */

/**
 * Letters of other scripts drawn like an ASCII letter (Cyrillic, Greek and Armenian look-alikes of Unicode's
 * confusables data, TR39), folded to that letter: `jоhn@exаmple.com` with Cyrillic о and а, or an access key id
 * `АКІА…` in Cyrillic, reads as the value it imitates. Written out rather than taken from TR39's skeleton mapping,
 * which also maps ASCII characters onto each other (`1` and `l`, `0` and `O`, `rn` and `m`) and would turn the
 * digits the detectors look for into letters. Letters without an ASCII twin (и, л, λ, ж) stay as they are, so
 * text in these scripts is only partly folded, which no detector reads as anything.
 */
const LOOK_ALIKE_LETTERS = [
  // Cyrillic
  ['асеһіјорԛѕԝхуԁ', 'acehijopqswxyd'],
  ['АВСЕНІЈКМОРЅТХҮԚԜԀ', 'ABCEHIJKMOPSTXYQWD'],
  // Greek
  ['αινορυ', 'aivopu'],
  ['ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ', 'ABEZHIKMNOPTYX'],
  // Armenian
  ['օսհոզց', 'ouhnqg'],
] as const;
const LOOK_ALIKES: ReadonlyMap<number, string> = new Map(
  LOOK_ALIKE_LETTERS.flatMap(([letters, ascii]) =>
    Array.from(letters, (letter, k): [number, string] => [letter.codePointAt(0) ?? 0, ascii[k] ?? letter]),
  ),
);

const NON_ASCII = /[\u0080-\uffff]/;
const DROPPED = /^[\p{Default_Ignorable_Code_Point}\p{Mn}\p{Me}]$/u;
const DIGIT = /^\p{Nd}$/u;
const DASH = /^[\p{Pd}\u2212]$/u;
const SPACE = /^\p{Zs}$/u;
const LINE = /^[\p{Zl}\p{Zp}]$/u;

/** Folds of code points seen so far; cleared when it grows past the bound (a text can use any code points). */
const foldCache = new Map<number, string>();
const FOLD_CACHE_MAX = 8192;

/** ASCII digit for a decimal digit of any script: Unicode encodes each script's digits as a run 0..9. */
function digitValue(cp: number): string {
  let start = cp;
  while (start > 0 && DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((cp - start) % 10);
}

function foldOne(ch: string): string {
  const lookAlike = LOOK_ALIKES.get(ch.codePointAt(0) ?? 0);
  if (lookAlike !== undefined) return lookAlike;
  if (DROPPED.test(ch)) return '';
  if (DIGIT.test(ch)) return digitValue(ch.codePointAt(0) ?? 0);
  if (DASH.test(ch)) return '-';
  if (SPACE.test(ch)) return ' ';
  if (LINE.test(ch)) return '\n';
  return ch;
}

function foldCodePoint(cp: number): string {
  const known = foldCache.get(cp);
  if (known !== undefined) return known;
  let out = '';
  // A lone surrogate has no compatibility form and stays as it is.
  const ch = String.fromCodePoint(cp);
  const compatible = cp >= 0xd800 && cp <= 0xdfff ? ch : ch.normalize('NFKC');
  for (const c of compatible) out += c.charCodeAt(0) < 0x80 ? c : foldOne(c);
  if (foldCache.size >= FOLD_CACHE_MAX) foldCache.clear();
  foldCache.set(cp, out);
  return out;
}

export class FoldedText {
  /** What the detectors scan. */
  readonly text: string;
  readonly source: string;
  /** Per folded code unit: where its code point starts and ends in `source`; undefined when text === source. */
  readonly #starts: Uint32Array | undefined;
  readonly #ends: Uint32Array | undefined;

  private constructor(text: string, source: string, starts?: Uint32Array, ends?: Uint32Array) {
    this.text = text;
    this.source = source;
    this.#starts = starts;
    this.#ends = ends;
  }

  static of(source: string): FoldedText {
    if (!NON_ASCII.test(source)) return new FoldedText(source, source);
    let text = '';
    let starts = new Uint32Array(source.length + 16);
    let ends = new Uint32Array(source.length + 16);
    let n = 0;
    /** Source units from `run` to `i` fold to themselves and are copied as one slice. */
    let run = 0;
    const reserve = (extra: number): void => {
      if (n + extra <= starts.length) return;
      const grown = Math.max(starts.length * 2, n + extra);
      const s = new Uint32Array(grown);
      s.set(starts);
      starts = s;
      const e = new Uint32Array(grown);
      e.set(ends);
      ends = e;
    };
    const flush = (to: number): void => {
      reserve(to - run);
      for (let k = run; k < to; k++, n++) {
        starts[n] = k;
        ends[n] = k + 1;
      }
      text += source.slice(run, to);
    };
    for (let i = 0; i < source.length;) {
      const code = source.charCodeAt(i);
      if (code < 0x80) {
        i++;
        continue;
      }
      let cp = code;
      let units = 1;
      if (code >= 0xd800 && code <= 0xdbff && i + 1 < source.length) {
        const low = source.charCodeAt(i + 1);
        if (low >= 0xdc00 && low <= 0xdfff) {
          cp = (code - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000;
          units = 2;
        }
      }
      const folded = foldCodePoint(cp);
      const unchanged =
        folded.length === units &&
        folded.charCodeAt(0) === code &&
        (units === 1 || folded.charCodeAt(1) === source.charCodeAt(i + 1));
      if (!unchanged) {
        flush(i);
        reserve(folded.length);
        for (let k = 0; k < folded.length; k++, n++) {
          starts[n] = i;
          ends[n] = i + units;
        }
        text += folded;
        run = i + units;
      }
      i += units;
    }
    flush(source.length);
    return new FoldedText(text, source, starts, ends);
  }

  /** Where folded index `i` (0..text.length) falls in `source`: the start of its code point, or the end. */
  sourceStart(i: number): number {
    if (this.#starts === undefined) return i;
    return i >= this.text.length ? this.source.length : (this.#starts[i] ?? this.source.length);
  }

  /**
   * The end in `source` of a folded span ending at `end`: the end of its last code point, and of the dropped code
   * points after it (a combining mark on the last digit, a trailing zero-width space), up to the next folded one.
   */
  sourceEnd(end: number): number {
    const starts = this.#starts;
    if (starts === undefined || this.#ends === undefined) return end;
    if (end <= 0) return 0;
    if (end >= this.text.length) return this.source.length;
    return this.isBoundary(end) ? (starts[end] ?? this.source.length) : (this.#ends[end - 1] ?? 0);
  }

  /** The first folded index whose code point starts at or after source index `s`. */
  foldedIndex(s: number): number {
    const starts = this.#starts;
    if (starts === undefined) return s;
    let lo = 0;
    let hi = this.text.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((starts[mid] ?? 0) < s) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Whether a cut at folded index `i` falls between two source code points (not inside one's expansion). */
  isBoundary(i: number): boolean {
    const starts = this.#starts;
    if (starts === undefined || i <= 0 || i >= this.text.length) return true;
    return starts[i] !== starts[i - 1];
  }
}
