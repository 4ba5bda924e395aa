import { CONTEXT_AFTER, CONTEXT_BEFORE } from './context.ts';
import { scoredCandidates, type AppliedFinding, type PrivacyEngine } from './engine.ts';
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
    const off = this.#context.length;
    const window = this.#context + this.#held;
    const base = this.#offset - off;
    const candidates = scoredCandidates(this.#engine.detectors, window, off);
    const cut = final ? window.length : this.#safeCut(window, off, candidates);
    const settled = this.#engine.resolve(candidates.filter((f) => f.end <= cut));
    const rendered = this.#engine.renderRange(window, off, cut, settled, this.#policy);
    for (const f of rendered.findings)
      this.#findings.push({ ...f, start: f.start + base, end: f.end + base });
    if (rendered.blocked) {
      this.#stop('policy');
      return '';
    }
    this.#context = window.slice(Math.max(0, cut - CONTEXT_KEEP), cut);
    this.#held = window.slice(cut);
    this.#offset += cut - off;
    if (this.#held.length > this.maxHoldBack) this.#stop('overflow');
    return rendered.text;
  }

  #safeCut(window: string, off: number, candidates: readonly { start: number; end: number }[]): number {
    let cut = window.length;
    for (const d of this.#engine.detectors) cut = Math.min(cut, d.pendingFrom(window));
    for (const f of candidates) if (f.end + CONTEXT_AFTER + 1 > window.length) cut = Math.min(cut, f.start);
    for (let changed = true; changed;) {
      changed = false;
      if (cut > off && isHighSurrogate(window.charCodeAt(cut - 1))) {
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
