import { PrivacyStream } from '../privacy/index.ts';
import type { AppliedFinding, CompiledPolicy, PrivacyEngine } from '../privacy/index.ts';
import type { RouteKind } from './validation.ts';

/**
 * Output filtering with the privacy engine. Non-streamed responses: the generated text fields are scanned and
 * rewritten per policy. Streamed responses: one `PrivacyStream` per choice, so PII split across SSE chunks is
 * still found, while text that can no longer be part of a finding is released at once (the hold-back is a
 * partial word in typical prose, bounded by the engine's longest detector span).
 */

/** Counts per `ENTITY:action`, e.g. `EMAIL:redact`; never values. */
export type FilterCounts = Map<string, number>;

function count(counts: FilterCounts, findings: readonly AppliedFinding[]): void {
  for (const f of findings) {
    const k = `${f.entity}:${f.action}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
}

export interface FilteredJson {
  readonly body: unknown;
  readonly counts: FilterCounts;
  readonly blocked: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Bound on nesting walked in tensor outputs, as in the request validation. */
const MAX_DEPTH = 32;

interface Scan {
  readonly text: (s: string) => string;
  /** A subtree deeper than `MAX_DEPTH`: it cannot be scanned, so the output is blocked. */
  readonly tooDeep: () => void;
}

export class OutputFilter {
  readonly #engine: PrivacyEngine;
  readonly #policy: CompiledPolicy;

  constructor(engine: PrivacyEngine, policy: CompiledPolicy) {
    this.#engine = engine;
    this.#policy = policy;
  }

  /** Filters a parsed, non-streamed response body in place. */
  filterJson(kind: RouteKind, body: unknown): FilteredJson {
    const counts: FilterCounts = new Map();
    let blocked = false;
    const apply = (text: string): string => {
      const r = this.#engine.apply(text, this.#policy);
      count(counts, r.findings);
      if (r.blocked) blocked = true;
      return r.text;
    };
    const scan: Scan = {
      text: apply,
      tooDeep: () => {
        blocked = true;
      },
    };
    if (!isObj(body)) return { body, counts, blocked };
    switch (kind) {
      case 'chat':
      case 'completions':
        if (Array.isArray(body.choices)) {
          for (const choice of body.choices as unknown[]) {
            if (!isObj(choice)) continue;
            if (typeof choice.text === 'string') choice.text = apply(choice.text);
            const message = choice.message;
            if (isObj(message) && typeof message.content === 'string')
              message.content = apply(message.content);
          }
        }
        break;
      case 'kserve-v2':
        if (Array.isArray(body.outputs)) {
          for (const output of body.outputs as unknown[]) {
            if (isObj(output) && Array.isArray(output.data)) output.data = walkStrings(output.data, scan, 0);
          }
        }
        break;
      case 'predict':
        if ('predictions' in body) body.predictions = walkStrings(body.predictions, scan, 0);
        if ('outputs' in body) body.outputs = walkStrings(body.outputs, scan, 0);
        break;
      case 'embeddings':
        break;
    }
    return { body, counts, blocked };
  }

  /** A filter for one streamed OpenAI response. */
  stream(kind: 'chat' | 'completions'): StreamFilter {
    return new StreamFilter(this.#engine, this.#policy, kind);
  }
}

/**
 * Applies `apply` to every string inside `value`, in place: only string leaves are scanned, and numeric tensors
 * (the bulk of KServe and predict outputs) are walked without allocating. Whatever the declared datatype, a string
 * leaf is always scanned, so an upstream mislabelling text as numbers gains nothing.
 */
function walkStrings(value: unknown, scan: Scan, depth: number): unknown {
  if (typeof value === 'string') return scan.text(value);
  if (typeof value !== 'object' || value === null) return value;
  // Deeper than any real tensor: refuse rather than release strings that were not scanned.
  if (depth > MAX_DEPTH) {
    scan.tooDeep();
    return value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'string') value[i] = scan.text(item);
      else if (typeof item === 'object' && item !== null) walkStrings(item, scan, depth + 1);
    }
    return value;
  }
  const obj = value as Obj;
  for (const k of Object.keys(obj)) obj[k] = walkStrings(obj[k], scan, depth + 1);
  return value;
}

/**
 * Filters the chunks of one OpenAI streaming response (`chat.completion.chunk` with `choices[].delta.content`,
 * or completion chunks with `choices[].text`). Each choice index has its own privacy stream; a choice's held-back
 * text is flushed into the chunk carrying its `finish_reason`, or by `finish()` if the stream ends first.
 */
export class StreamFilter {
  readonly counts: FilterCounts = new Map();
  readonly #engine: PrivacyEngine;
  readonly #policy: CompiledPolicy;
  readonly #kind: 'chat' | 'completions';
  readonly #streams = new Map<number, PrivacyStream>();
  readonly #ended = new Set<number>();
  #template: Obj | undefined;
  #blocked = false;

  constructor(engine: PrivacyEngine, policy: CompiledPolicy, kind: 'chat' | 'completions') {
    this.#engine = engine;
    this.#policy = policy;
    this.#kind = kind;
  }

  get blocked(): boolean {
    return this.#blocked;
  }

  #streamFor(index: number): PrivacyStream {
    let s = this.#streams.get(index);
    if (s === undefined) {
      s = new PrivacyStream(this.#engine, this.#policy);
      this.#streams.set(index, s);
    }
    return s;
  }

  /** Counts the new findings of a stream; false once it blocked. */
  #settle(s: PrivacyStream, before: number): boolean {
    count(this.counts, s.findings.slice(before));
    if (s.blocked) this.#blocked = true;
    return !s.blocked;
  }

  /** Rewrites one parsed chunk in place. Returns false once the output is blocked (abort the response). */
  chunk(chunk: Obj): boolean {
    if (this.#blocked) return false;
    this.#template ??= { id: chunk.id, object: chunk.object, created: chunk.created, model: chunk.model };
    if (!Array.isArray(chunk.choices)) return true;
    for (const [position, choice] of (chunk.choices as unknown[]).entries()) {
      if (!isObj(choice)) continue;
      const index = typeof choice.index === 'number' ? choice.index : position;
      if (this.#ended.has(index)) continue;
      const s = this.#streamFor(index);
      const before = s.findings.length;
      const holder = this.#kind === 'chat' ? choice.delta : choice;
      const field = this.#kind === 'chat' ? 'content' : 'text';
      let out = '';
      if (isObj(holder) && typeof holder[field] === 'string') out = s.push(holder[field]);
      const finished = choice.finish_reason !== null && choice.finish_reason !== undefined;
      if (finished && !s.blocked) {
        out += s.end();
        this.#ended.add(index);
      }
      if (isObj(holder) && (typeof holder[field] === 'string' || out !== '')) holder[field] = out;
      if (!this.#settle(s, before)) return false;
    }
    return true;
  }

  /** End of stream: flushes choices that never sent a `finish_reason`, as one extra chunk (or none). */
  finish(): Obj | undefined {
    if (this.#blocked) return undefined;
    const choices: Obj[] = [];
    for (const [index, s] of this.#streams) {
      if (this.#ended.has(index)) continue;
      const before = s.findings.length;
      const tail = s.end();
      this.#ended.add(index);
      if (!this.#settle(s, before)) return undefined;
      if (tail !== '') {
        choices.push(
          this.#kind === 'chat'
            ? { index, delta: { content: tail }, finish_reason: null }
            : { index, text: tail, finish_reason: null },
        );
      }
    }
    return choices.length === 0 ? undefined : { ...this.#template, choices };
  }
}
