import type { Detector, Finding, Validation } from './types.ts';

/**
 * Furthest any detector's attempt looks behind the index it starts at (lookbehind assertions, the keyword
 * before a `password=` value). Streaming keeps at least this much already-released text as context.
 */
export const MAX_LOOKBEHIND = 64;

export type CharTest = (code: number) => boolean;

/**
 * Builds a membership test from the body of a regex character class, so that the class a detector's regex
 * consumes and the class its streaming hold-back reasons about are written once. ASCII is tabulated;
 * other code units (negated classes include them) are tested with the same class, one UTF-16 unit at a time
 * as a non-unicode regex sees them (with the `v` flag, a class of BMP code points sees them the same way).
 */
export function charClass(body: string, flags = ''): CharTest {
  const table = new Uint8Array(128);
  const re = new RegExp(`^[${body}]$`, flags);
  for (let c = 0; c < 128; c++) if (re.test(String.fromCharCode(c))) table[c] = 1;
  return (code) =>
    code < 128 ? table[code] === 1 : !Number.isNaN(code) && re.test(String.fromCharCode(code));
}

export function makeFinding(
  detector: Pick<Detector, 'id' | 'entity'>,
  start: number,
  end: number,
  confidence: number,
  validation: Validation,
): Finding {
  return { detector: detector.id, entity: detector.entity, start, end, confidence, validation };
}

/**
 * The scan order every detector promises: leftmost-first from `from`; a validated candidate is reported and
 * the scan resumes at its end; a rejected one does not consume text, the scan resumes one index later.
 * `accept` must return a finding that starts at `m.index`, or undefined.
 */
export function scanRegex(
  re: RegExp,
  text: string,
  from: number,
  accept: (m: RegExpExecArray) => Finding | undefined,
): Finding[] {
  const out: Finding[] = [];
  re.lastIndex = from;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const f = accept(m);
    if (f === undefined) {
      re.lastIndex = m.index + 1;
    } else {
      out.push(f);
      re.lastIndex = f.end;
    }
  }
  return out;
}

export interface PendingSpec {
  /** Characters an attempt can start at. Must be a subset of `isPart`. */
  readonly isStart: CharTest;
  /** Characters an attempt can consume. */
  readonly isPart: CharTest;
  /**
   * How far past the first character it cannot consume an attempt may still look. Reading that character
   * is free (it is how a greedy class stops); a two-character lookahead after the match costs 1.
   */
  readonly lookahead: number;
  readonly maxLength: number;
}

/**
 * `Detector.pendingFrom` for detectors whose attempts only consume characters of one class: an attempt that
 * meets a character outside the class stops there, so it is settled once `lookahead` more characters exist.
 * Walks back from the end and stops at the first settled barrier, so plain prose costs a few steps.
 */
export function pendingByClass(text: string, spec: PendingSpec): number {
  const n = text.length;
  const stop = Math.max(0, n - spec.maxLength);
  let barrier = n;
  let pending = n;
  for (let i = n - 1; i >= stop; i--) {
    const c = text.charCodeAt(i);
    if (!spec.isPart(c)) {
      barrier = i;
      if (i + spec.lookahead < n) break;
    } else if (spec.isStart(c) && barrier + spec.lookahead >= n) {
      pending = i;
    }
  }
  return pending;
}

export function definePending(spec: PendingSpec): (text: string) => number {
  return (text) => pendingByClass(text, spec);
}
