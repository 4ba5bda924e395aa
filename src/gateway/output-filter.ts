import { PrivacyStream } from '../privacy/index.ts';
import type { AppliedFinding, CompiledPolicy, PrivacyEngine } from '../privacy/index.ts';
import type { RouteKind } from './validation.ts';

/**
 * Output filtering with the privacy engine. Non-streamed responses: the generated text fields are scanned and
 * rewritten per policy. Streamed responses: one `PrivacyStream` per choice and generated field (and per tool
 * call), so PII split across SSE chunks is still found, while text that can no longer be part of a finding is
 * released at once (the hold-back is a partial word in typical prose, bounded by the engine's longest detector
 * span).
 *
 * Generated text of a chat message besides `content`: `refusal`, the reasoning text some OpenAI-compatible
 * servers add (`reasoning_content`, or `reasoning`), an audio answer's `transcript`, and the arguments of tool
 * calls and of the legacy `function_call`. A text field that is not a string (content parts) has every string
 * inside it scanned. Arguments are JSON text written by the model and can carry a customer's data into a tool, so
 * they are scanned as text like `content`, not parsed: streamed fragments cannot be parsed before the end, and
 * the streamed and one-shot results must agree. A replacement lands inside the JSON string; it keeps the JSON
 * valid only when the finding did not take in part of an escape sequence (see docs/gateway.md). Arguments that
 * are not JSON are scanned all the same.
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

/** Text fields of a chat `message` (non-streamed) or `delta` (streamed) that the model generates. */
const CHAT_TEXT_FIELDS = ['content', 'refusal', 'reasoning_content', 'reasoning'] as const;

/**
 * Bound on privacy streams open at once in one streamed response (choices × fields and tool calls), and on
 * unfinished choices. Far above what `n` and parallel tool calls produce; an upstream inventing indices beyond it
 * ends the stream as blocked rather than growing memory without end.
 */
export const MAX_OPEN_STREAMS = 1024;

/**
 * Applies the scan to the generated text fields of one chat message, in place. A text field that is not a string
 * (`content` as an array of parts, `[{type: 'text', text}]`, as some OpenAI-compatible servers return it) has every
 * string inside it scanned; so has the transcript of an audio answer.
 */
function filterMessage(message: Obj, scan: Scan): void {
  const apply = scan.text;
  for (const field of CHAT_TEXT_FIELDS) {
    const value = message[field];
    if (typeof value === 'string') message[field] = apply(value);
    else if (typeof value === 'object' && value !== null) walkStrings(value, scan, 0);
  }
  const audio = message.audio;
  if (isObj(audio) && typeof audio.transcript === 'string') audio.transcript = apply(audio.transcript);
  const legacy = message.function_call;
  if (isObj(legacy) && typeof legacy.arguments === 'string') legacy.arguments = apply(legacy.arguments);
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls as unknown[]) {
      if (!isObj(call)) continue;
      const fn = call.function;
      if (isObj(fn) && typeof fn.arguments === 'string') fn.arguments = apply(fn.arguments);
    }
  }
}

interface Scan {
  readonly text: (s: string) => string;
  /** A subtree deeper than `MAX_DEPTH`: it cannot be scanned, so the output is blocked. */
  readonly tooDeep: () => void;
}

/** A one-shot scan of whole strings: findings counted into `counts`, `block()` on a block or an unscannable subtree. */
function oneShot(
  engine: PrivacyEngine,
  policy: CompiledPolicy,
  counts: FilterCounts,
  block: () => void,
): Scan {
  return {
    text: (text) => {
      const r = engine.apply(text, policy);
      count(counts, r.findings);
      if (r.blocked) block();
      return r.text;
    },
    tooDeep: block,
  };
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
    const scan = oneShot(this.#engine, this.#policy, counts, () => {
      blocked = true;
    });
    const apply = scan.text;
    if (!isObj(body)) return { body, counts, blocked };
    switch (kind) {
      case 'chat':
      case 'completions':
        // The generated fields of each choice; parts of the wrong shape (choices not an array, a choice that is
        // not an object, a message that is not an object, a text that is not a string) are scanned whole rather
        // than released unscanned.
        if (Array.isArray(body.choices)) {
          const choices = body.choices as unknown[];
          for (let i = 0; i < choices.length; i++) {
            const choice = choices[i];
            if (!isObj(choice)) {
              choices[i] = walkStrings(choice, scan, 0);
              continue;
            }
            if (typeof choice.text === 'string') choice.text = apply(choice.text);
            else if ('text' in choice) choice.text = walkStrings(choice.text, scan, 0);
            if (isObj(choice.message)) filterMessage(choice.message, scan);
            else if ('message' in choice) choice.message = walkStrings(choice.message, scan, 0);
          }
        } else if ('choices' in body) {
          body.choices = walkStrings(body.choices, scan, 0);
        }
        break;
      case 'kserve-v2':
        // The strings of `outputs[].data`; outputs of the wrong shape (data not an array, an output that is not
        // an object, outputs not an array) are scanned whole rather than released unscanned.
        if (Array.isArray(body.outputs)) {
          const outputs = body.outputs as unknown[];
          for (let i = 0; i < outputs.length; i++) {
            const output = outputs[i];
            if (!isObj(output)) outputs[i] = walkStrings(output, scan, 0);
            else if ('data' in output) output.data = walkStrings(output.data, scan, 0);
          }
        } else if ('outputs' in body) {
          body.outputs = walkStrings(body.outputs, scan, 0);
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

/** The privacy streams of one choice: per text field (`function_call` for its arguments), per tool call index. */
interface ChoiceStreams {
  readonly fields: Map<string, PrivacyStream>;
  readonly tools: Map<number, PrivacyStream>;
}

/** A tool call's index as the client reassembles it; the position in the chunk when an upstream omits it. */
function toolIndex(call: Obj, position: number): number {
  return Number.isSafeInteger(call.index) ? (call.index as number) : position;
}

/**
 * Filters the chunks of one OpenAI streaming response (`chat.completion.chunk` with `choices[].delta`, or
 * completion chunks with `choices[].text`). Each choice has one privacy stream per generated field (`content`,
 * `refusal`, `reasoning_content`, `reasoning`, `function_call.arguments`) and one per tool call index for
 * `tool_calls[].function.arguments`; every other part of a chunk (tool call `id`, `type`, `name`, roles) passes
 * unchanged. A choice's held-back text is flushed into the chunk carrying its `finish_reason` (into the tool call
 * item of the same `index`, added if the chunk has none), or by `finish()` if the stream ends first. Text for a
 * choice after its `finish_reason` starts new streams: it is filtered too, never passed through.
 */
export class StreamFilter {
  readonly counts: FilterCounts = new Map();
  readonly #engine: PrivacyEngine;
  readonly #policy: CompiledPolicy;
  readonly #kind: 'chat' | 'completions';
  readonly #choices = new Map<number, ChoiceStreams>();
  #open = 0;
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

  #choice(index: number): ChoiceStreams {
    let c = this.#choices.get(index);
    if (c === undefined) {
      c = { fields: new Map(), tools: new Map() };
      this.#choices.set(index, c);
    }
    return c;
  }

  /** Feeds `text` to the stream under `key`, opening it on first use; undefined once the output is blocked. */
  #push<K>(streams: Map<K, PrivacyStream>, key: K, text: string): string | undefined {
    let s = streams.get(key);
    if (s === undefined) {
      if (this.#open >= MAX_OPEN_STREAMS) {
        this.#blocked = true;
        return undefined;
      }
      s = new PrivacyStream(this.#engine, this.#policy);
      streams.set(key, s);
      this.#open++;
    }
    const before = s.findings.length;
    const out = s.push(text);
    return this.#settle(s, before) ? out : undefined;
  }

  /** Ends one stream: its tail, or undefined once the output is blocked. */
  #end(s: PrivacyStream): string | undefined {
    const before = s.findings.length;
    const tail = s.end();
    this.#open--;
    return this.#settle(s, before) ? tail : undefined;
  }

  /**
   * Scans every string inside `holder[key]` in place, each string on its own (a delta's content parts, or a part of
   * the wrong shape): parts carry no order across chunks that a stream could follow, so PII split between two
   * chunks' parts is not joined (docs/gateway.md). False once the output is blocked.
   */
  #scanWhole(holder: Record<string, unknown> | unknown[], key: string | number): boolean {
    const scan = oneShot(this.#engine, this.#policy, this.counts, () => {
      this.#blocked = true;
    });
    (holder as Record<string | number, unknown>)[key] = walkStrings(
      (holder as Record<string | number, unknown>)[key],
      scan,
      0,
    );
    return !this.#blocked;
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
    // Parts of the wrong shape (choices not an array, a choice not an object, a delta not an object, a text not
    // a string) are scanned whole, each string on its own, rather than released unscanned.
    if (!Array.isArray(chunk.choices)) return !('choices' in chunk) || this.#scanWhole(chunk, 'choices');
    const choices = chunk.choices as unknown[];
    for (const [position, choice] of choices.entries()) {
      if (!isObj(choice)) {
        if (!this.#scanWhole(choices, position)) return false;
        continue;
      }
      if (
        this.#kind === 'chat'
          ? 'delta' in choice && !isObj(choice.delta)
          : 'text' in choice && typeof choice.text !== 'string'
      ) {
        if (!this.#scanWhole(choice, this.#kind === 'chat' ? 'delta' : 'text')) return false;
      }
      const index = typeof choice.index === 'number' ? choice.index : position;
      const streams = this.#choice(index);
      if (this.#choices.size > MAX_OPEN_STREAMS) {
        this.#blocked = true;
        return false;
      }
      if (this.#kind === 'chat') {
        if (isObj(choice.delta) && !this.#pushDelta(streams, choice.delta)) return false;
      } else if (typeof choice.text === 'string') {
        const out = this.#push(streams.fields, 'text', choice.text);
        if (out === undefined) return false;
        choice.text = out;
      }
      if (choice.finish_reason === null || choice.finish_reason === undefined) continue;
      // Whatever comes for this choice after its finish_reason opens new streams: filtered, never passed through.
      this.#choices.delete(index);
      const holder = this.#kind === 'completions' ? choice : isObj(choice.delta) ? choice.delta : {};
      const flushed = this.#flush(streams, holder);
      if (flushed === 'blocked') return false;
      if (flushed === 'added' && this.#kind === 'chat') choice.delta = holder;
    }
    return true;
  }

  /** Rewrites the generated fields of one chat delta; false once the output is blocked. */
  #pushDelta(streams: ChoiceStreams, delta: Obj): boolean {
    for (const field of CHAT_TEXT_FIELDS) {
      const value = delta[field];
      if (typeof value === 'object' && value !== null) {
        if (!this.#scanWhole(delta, field)) return false;
        continue;
      }
      if (typeof value !== 'string') continue;
      const out = this.#push(streams.fields, field, value);
      if (out === undefined) return false;
      delta[field] = out;
    }
    const audio = delta.audio;
    if (isObj(audio) && typeof audio.transcript === 'string') {
      const out = this.#push(streams.fields, 'audio.transcript', audio.transcript);
      if (out === undefined) return false;
      audio.transcript = out;
    }
    const legacy = delta.function_call;
    if (isObj(legacy) && typeof legacy.arguments === 'string') {
      const out = this.#push(streams.fields, 'function_call', legacy.arguments);
      if (out === undefined) return false;
      legacy.arguments = out;
    }
    if (!Array.isArray(delta.tool_calls)) return true;
    for (const [position, call] of (delta.tool_calls as unknown[]).entries()) {
      if (!isObj(call) || !isObj(call.function) || typeof call.function.arguments !== 'string') continue;
      const out = this.#push(streams.tools, toolIndex(call, position), call.function.arguments);
      if (out === undefined) return false;
      call.function.arguments = out;
    }
    return true;
  }

  /** Ends a choice's streams and appends their tails to `holder` (the delta, or the completion choice). */
  #flush(streams: ChoiceStreams, holder: Obj): 'added' | 'empty' | 'blocked' {
    let result: 'added' | 'empty' = 'empty';
    for (const [field, s] of streams.fields) {
      const tail = this.#end(s);
      if (tail === undefined) return 'blocked';
      if (tail === '') continue;
      result = 'added';
      if (field === 'function_call') {
        const legacy = isObj(holder.function_call) ? holder.function_call : (holder.function_call = {});
        legacy.arguments = (typeof legacy.arguments === 'string' ? legacy.arguments : '') + tail;
      } else if (field === 'audio.transcript') {
        const audio = isObj(holder.audio) ? holder.audio : (holder.audio = {});
        audio.transcript = (typeof audio.transcript === 'string' ? audio.transcript : '') + tail;
      } else {
        holder[field] = (typeof holder[field] === 'string' ? holder[field] : '') + tail;
      }
    }
    for (const [index, s] of streams.tools) {
      const tail = this.#end(s);
      if (tail === undefined) return 'blocked';
      if (tail === '') continue;
      result = 'added';
      const calls = Array.isArray(holder.tool_calls)
        ? (holder.tool_calls as unknown[])
        : (holder.tool_calls = []);
      const call = calls.find((c, position): c is Obj => isObj(c) && toolIndex(c, position) === index);
      if (call === undefined) {
        calls.push({ index, function: { arguments: tail } });
        continue;
      }
      const fn = isObj(call.function) ? call.function : (call.function = {});
      fn.arguments = (typeof fn.arguments === 'string' ? fn.arguments : '') + tail;
    }
    return result;
  }

  /** End of stream: flushes choices that never sent a `finish_reason`, as one extra chunk (or none). */
  finish(): Obj | undefined {
    if (this.#blocked) return undefined;
    const choices: Obj[] = [];
    for (const [index, streams] of this.#choices) {
      const holder: Obj = {};
      const flushed = this.#flush(streams, holder);
      if (flushed === 'blocked') return undefined;
      if (flushed === 'empty') continue;
      choices.push(
        this.#kind === 'chat'
          ? { index, delta: holder, finish_reason: null }
          : { index, ...holder, finish_reason: null },
      );
    }
    this.#choices.clear();
    return choices.length === 0 ? undefined : { ...this.#template, choices };
  }
}
