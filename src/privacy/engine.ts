import { contextConfidence, DEFAULT_THRESHOLD } from './context.ts';
import { defaultDetectors } from './detectors/index.ts';
import { compilePolicy, type Action, type CompiledPolicy, type Policy } from './policy.ts';
import { FoldedText } from './fold.ts';
import type { Detector, Finding } from './types.ts';

/** What callers get back: where, what and how sure, and what was done. Never the matched value. */
export interface AppliedFinding extends Finding {
  readonly action: Action;
}

export interface ApplyResult {
  /** The filtered text; empty when `blocked`. */
  readonly text: string;
  readonly findings: readonly AppliedFinding[];
  /** A finding's action was `block`: the whole output must be refused. */
  readonly blocked: boolean;
}

export interface EngineOptions {
  /** Detectors to run, in tie-break order. Default: `defaultDetectors()`. */
  readonly detectors?: readonly Detector[];
  /** Findings whose context-adjusted confidence is below this are not reported. Default 0.5. */
  readonly threshold?: number;
}

/**
 * Runs the detectors over `text` from `from` and returns every candidate with its confidence adjusted for
 * context, unresolved and unthresholded: the streaming filter needs the full set to decide where it may cut.
 */
export function scoredCandidates(detectors: readonly Detector[], text: string, from: number): Finding[] {
  const out: Finding[] = [];
  for (const d of detectors) {
    for (const f of d.find(text, from)) out.push({ ...f, confidence: contextConfidence(text, f) });
  }
  return out;
}

/**
 * Overlap resolution: higher confidence wins, then the longer span, then the earlier start, then the
 * detector listed first. Greedy in that order within each cluster of transitively overlapping findings,
 * which keeps the cost linear in the number of clusters and makes the outcome for one cluster independent
 * of every other (the streaming filter relies on that).
 */
export function resolveOverlaps(
  findings: readonly Finding[],
  detectorOrder: ReadonlyMap<string, number>,
): Finding[] {
  const byStart = [...findings].sort((a, b) => a.start - b.start || b.end - a.end);
  const accepted: Finding[] = [];
  let cluster: Finding[] = [];
  let clusterEnd = -1;
  const rank = (f: Finding): number => detectorOrder.get(f.detector) ?? Number.MAX_SAFE_INTEGER;
  const flush = (): void => {
    cluster.sort(
      (a, b) =>
        b.confidence - a.confidence ||
        b.end - b.start - (a.end - a.start) ||
        a.start - b.start ||
        rank(a) - rank(b),
    );
    const kept: Finding[] = [];
    for (const f of cluster) if (kept.every((k) => f.end <= k.start || f.start >= k.end)) kept.push(f);
    accepted.push(...kept.sort((a, b) => a.start - b.start));
    cluster = [];
  };
  for (const f of byStart) {
    if (cluster.length > 0 && f.start >= clusterEnd) flush();
    cluster.push(f);
    clusterEnd = Math.max(clusterEnd, f.end);
  }
  if (cluster.length > 0) flush();
  return accepted;
}

export interface Rendered {
  readonly text: string;
  readonly findings: AppliedFinding[];
  readonly blocked: boolean;
}

/**
 * Applies the policy to `folded.source[from, to)` (source indices) given resolved, non-overlapping findings on the
 * folded text inside that range. Replacements are computed from the folded value (so a masked fullwidth digit is
 * masked, and a pseudonym does not depend on invisible characters) and replace the finding's source span; the
 * returned findings are in source indices.
 */
export function render(
  folded: FoldedText,
  from: number,
  to: number,
  findings: readonly Finding[],
  policy: CompiledPolicy,
  detectors: ReadonlyMap<string, Detector>,
): Rendered {
  const text = folded.source;
  let out = '';
  let pos = from;
  let blocked = false;
  const applied: AppliedFinding[] = [];
  for (const f of findings) {
    const start = folded.sourceStart(f.start);
    const end = folded.sourceEnd(f.end);
    const action = policy.actionFor(f.entity);
    applied.push({ ...f, start, end, action });
    const value = folded.text.slice(f.start, f.end);
    const replacement = policy.replacement(f.entity, value, detectors.get(f.detector));
    if (replacement === undefined) {
      blocked = true;
      continue;
    }
    out += text.slice(pos, Math.max(pos, start)) + replacement;
    pos = Math.max(pos, end);
  }
  return { text: blocked ? '' : out + text.slice(pos, to), findings: applied, blocked };
}

export class PrivacyEngine {
  readonly detectors: readonly Detector[];
  readonly threshold: number;
  /** The longest span any selected detector examines; the streaming hold-back is derived from it. */
  readonly maxLength: number;
  readonly #order: ReadonlyMap<string, number>;
  readonly #byId: ReadonlyMap<string, Detector>;

  constructor(options: EngineOptions = {}) {
    this.detectors = [...(options.detectors ?? defaultDetectors())];
    this.threshold = options.threshold ?? DEFAULT_THRESHOLD;
    if (!(this.threshold >= 0 && this.threshold <= 1)) throw new RangeError('threshold must be within 0..1');
    if (this.detectors.length === 0) throw new RangeError('at least one detector is required');
    const ids = this.detectors.map((d) => d.id);
    if (new Set(ids).size !== ids.length) throw new RangeError('detector ids must be unique');
    this.#order = new Map(ids.map((id, i) => [id, i]));
    this.#byId = new Map(this.detectors.map((d) => [d.id, d]));
    this.maxLength = Math.max(...this.detectors.map((d) => d.maxLength));
  }

  /**
   * Reported findings: context-adjusted, at or above the threshold, overlaps resolved, sorted by start; offsets
   * into `text`. Detection runs on the text's folded view (see fold.ts), so a value spelled with invisible,
   * fullwidth or other-script characters is found, and its span covers those characters.
   */
  detect(text: string): Finding[] {
    const folded = FoldedText.of(text);
    return this.#detectFolded(folded).map((f) => ({
      ...f,
      start: folded.sourceStart(f.start),
      end: folded.sourceEnd(f.end),
    }));
  }

  #detectFolded(folded: FoldedText): Finding[] {
    return this.resolve(scoredCandidates(this.detectors, folded.text, 0));
  }

  /** Thresholds and resolves candidates; exposed for the streaming filter, which works on windows. */
  resolve(candidates: readonly Finding[]): Finding[] {
    return resolveOverlaps(
      candidates.filter((f) => f.confidence >= this.threshold),
      this.#order,
    );
  }

  apply(text: string, policy: Policy | CompiledPolicy): ApplyResult {
    const compiled = compilePolicy(policy);
    const folded = FoldedText.of(text);
    return render(folded, 0, text.length, this.#detectFolded(folded), compiled, this.#byId);
  }

  /** For the streaming filter: renders source[from, to) with already-resolved findings on the folded text. */
  renderRange(
    text: FoldedText,
    from: number,
    to: number,
    findings: readonly Finding[],
    policy: CompiledPolicy,
  ): Rendered {
    return render(text, from, to, findings, policy, this.#byId);
  }
}
