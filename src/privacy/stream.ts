import { CONTEXT_AFTER, CONTEXT_BEFORE } from './context.ts';
import { scoredCandidates, type AppliedFinding, type PrivacyEngine } from './engine.ts';
import { FoldedText } from './fold.ts';
import { compilePolicy, type CompiledPolicy, type Policy } from './policy.ts';
import { MAX_LOOKBEHIND } from './scan.ts';

export interface StreamOptions {
  /**
   * Most text the filter may hold back, in UTF-16 code units. Default and minimum: the engine's longest
   * detector span plus the context window after a finding, plus two. A larger value only matters for the
   * fail-closed case below.
   */
  readonly maxHoldBack?: number;
}

/** `policy`: a finding's action was `block`. `overflow`: the hold-back bound would have been exceeded. */
export type BlockReason = 'policy' | 'overflow';

/** Already-released text kept for lookbehind and context words before the next finding. */
const CONTEXT_KEEP = MAX_LOOKBEHIND + CONTEXT_BEFORE + 1;

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** The smallest hold-back that lets streaming reproduce `apply` exactly. */
export function minimumHoldBack(engine: PrivacyEngine): number {
  return engine.maxLength + CONTEXT_AFTER + 2;
}

/**
 * Filters model output token by token. `push` returns the filtered text that can no longer change, `end`
 * flushes the rest. The concatenated output, and `findings`, equal `engine.apply` on the concatenated
 * input (for policies without `block`).
 *
 * After each chunk the filter re-runs the detectors over the unreleased text (plus a little released text
 * as context) and releases up to the earliest point that could still matter:
 * - where a detector could still be matching if more text arrived (`Detector.pendingFrom`): usually the
 *   start of the last, unfinished word, or of a digit run; nothing for prose ending in a space;
 * - the start of a candidate whose context window after it is not complete yet;
 * - never inside a candidate (which would change how the scan proceeds), nor between surrogate halves.
 *
 * Held-back text is bounded by `maxHoldBack`. The bound can only be reached by a chain of partially
 * overlapping candidates from different detectors, which no realistic text produces; if it is, the filter
 * fails closed: it releases what is settled and then reports `blocked` with reason `overflow`.
 *
 * With `block` in the policy, a blocking finding stops the stream: nothing from the segment containing it
 * or after is released, `blocked` becomes true, and the caller must abort the response. Text released
 * before it had no finding in it and was final.
 */
export class PrivacyStream {
  readonly maxHoldBack: number;
  readonly #engine: PrivacyEngine;
  readonly #policy: CompiledPolicy;
  #context = '';
  #held = '';
  /** Absolute index of #held[0] in the whole stream. */
  #offset = 0;
  readonly #findings: AppliedFinding[] = [];
  #blockReason: BlockReason | undefined;
  #ended = false;

  constructor(engine: PrivacyEngine, policy: Policy | CompiledPolicy, options: StreamOptions = {}) {
    this.#engine = engine;
    this.#policy = compilePolicy(policy);
    const minimum = minimumHoldBack(engine);
    this.maxHoldBack = options.maxHoldBack ?? minimum;
    if (!Number.isInteger(this.maxHoldBack) || this.maxHoldBack < minimum) {
      throw new RangeError(
        `maxHoldBack must be an integer of at least ${minimum} for the selected detectors`,
      );
    }
  }

  get blocked(): boolean {
    return this.#blockReason !== undefined;
  }

  get blockReason(): BlockReason | undefined {
    return this.#blockReason;
  }

  /** Findings released so far, offsets into the whole stream's input. */
  get findings(): readonly AppliedFinding[] {
    return this.#findings;
  }

  /** Code units currently held back. */
  get heldBack(): number {
    return this.#held.length;
  }

  push(chunk: string): string {
    if (this.#ended) throw new Error('push after end');
    if (this.#blockReason !== undefined) return '';
    this.#held += chunk;
    return this.#release(false);
  }

  end(): string {
    if (this.#ended) throw new Error('end called twice');
    const out = this.#blockReason === undefined ? this.#release(true) : '';
    this.#ended = true;
    return out;
  }

  #release(final: boolean): string {
    const window = this.#context + this.#held;
    const base = this.#offset - this.#context.length;
    // Detection runs on the folded view (fold.ts); cuts are made there and mapped back to the window.
    const folded = FoldedText.of(window);
    const off = folded.foldedIndex(this.#context.length);
    const candidates = scoredCandidates(this.#engine.detectors, folded.text, off);
    const cut = final ? folded.text.length : this.#safeCut(folded, off, candidates);
    const cutAt = final ? window.length : folded.sourceStart(cut);
    const settled = this.#engine.resolve(candidates.filter((f) => f.end <= cut));
    const rendered = this.#engine.renderRange(folded, this.#context.length, cutAt, settled, this.#policy);
    for (const f of rendered.findings)
      this.#findings.push({ ...f, start: f.start + base, end: f.end + base });
    if (rendered.blocked) {
      this.#stop('policy');
      return '';
    }
    // Context is counted in folded characters, which is what lookbehind and context words see.
    const keepFrom = folded.sourceStart(Math.max(0, cut - CONTEXT_KEEP));
    this.#context = window.slice(Math.min(keepFrom, cutAt), cutAt);
    this.#held = window.slice(cutAt);
    this.#offset = base + cutAt;
    if (this.#held.length > this.maxHoldBack) this.#stop('overflow');
    return rendered.text;
  }

  #safeCut(folded: FoldedText, off: number, candidates: readonly { start: number; end: number }[]): number {
    const text = folded.text;
    let cut = text.length;
    for (const d of this.#engine.detectors) cut = Math.min(cut, d.pendingFrom(text));
    for (const f of candidates) if (f.end + CONTEXT_AFTER + 1 > text.length) cut = Math.min(cut, f.start);
    for (let changed = true; changed;) {
      changed = false;
      if (cut > off && (isHighSurrogate(text.charCodeAt(cut - 1)) || !folded.isBoundary(cut))) {
        cut--;
        changed = true;
      }
      for (const f of candidates) {
        if (f.start < cut && cut < f.end) {
          cut = f.start;
          changed = true;
        }
      }
    }
    return Math.max(cut, off);
  }

  #stop(reason: BlockReason): void {
    this.#blockReason = reason;
    this.#held = '';
    this.#context = '';
  }
}
