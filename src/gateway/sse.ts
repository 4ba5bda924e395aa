/**
 * Server-sent events (WHATWG HTML "event stream" interpretation): an incremental parser fed arbitrary text
 * chunks, and the serializer the gateway writes with. Pure, no I/O.
 */
export interface SseEvent {
  /** `message` when the stream named none. */
  readonly event: string;
  /** Data lines joined with `\n`. */
  readonly data: string;
  /** The last event id seen (it persists across events, as in the spec). */
  readonly id: string;
  readonly retry?: number;
}

export class SseError extends Error {
  readonly code = 'sse_event_too_large';
}

/** Bound on one event's buffered text, so a stream without blank lines cannot grow memory without end. */
export const DEFAULT_MAX_EVENT_CHARS = 1024 * 1024;

export class SseParser {
  readonly #maxEventChars: number;
  #line = '';
  /** The previous chunk ended in CR: a leading LF in the next one belongs to the same line break. */
  #skipLf = false;
  #first = true;
  #data: string[] = [];
  #dataChars = 0;
  #event = '';
  #id = '';
  #retry: number | undefined;

  constructor(options: { maxEventChars?: number } = {}) {
    this.#maxEventChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  }

  /** Feeds text; returns the events completed by it. Throws `SseError` when an event exceeds the bound. */
  push(chunk: string): SseEvent[] {
    const events: SseEvent[] = [];
    let text = chunk;
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let pos = 0;
    if (this.#skipLf && text.length > 0) {
      if (text.charCodeAt(0) === 10) pos = 1;
      this.#skipLf = false;
    }
    while (pos < text.length) {
      let end = pos;
      while (end < text.length) {
        const c = text.charCodeAt(end);
        if (c === 10 || c === 13) break;
        end++;
      }
      if (end === text.length) {
        this.#line += text.slice(pos);
        this.#checkSize();
        break;
      }
      const line = this.#line + text.slice(pos, end);
      this.#line = '';
      if (text.charCodeAt(end) === 13) {
        if (end + 1 < text.length) {
          pos = text.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
        } else {
          this.#skipLf = true;
          pos = end + 1;
        }
      } else {
        pos = end + 1;
      }
      const event = this.#processLine(line);
      if (event !== undefined) events.push(event);
    }
    return events;
  }

  /** End of stream: an incomplete event (no blank line yet) is discarded, as the spec requires. */
  end(): void {
    this.#line = '';
    this.#data = [];
    this.#dataChars = 0;
    this.#event = '';
  }

  #checkSize(): void {
    if (this.#line.length + this.#dataChars > this.#maxEventChars) throw new SseError('SSE event too large');
  }

  #processLine(line: string): SseEvent | undefined {
    if (line === '') return this.#dispatch();
    if (line.charCodeAt(0) === 58) return undefined; // ':' comment
    const colon = line.indexOf(':');
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1);
    }
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        this.#dataChars += value.length + 1;
        this.#checkSize();
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
      default:
        break;
    }
    return undefined;
  }

  #dispatch(): SseEvent | undefined {
    const hasData = this.#data.length > 0;
    const event: SseEvent = {
      event: this.#event === '' ? 'message' : this.#event,
      data: this.#data.join('\n'),
      id: this.#id,
      ...(this.#retry === undefined ? {} : { retry: this.#retry }),
    };
    this.#data = [];
    this.#dataChars = 0;
    this.#event = '';
    this.#retry = undefined;
    return hasData ? event : undefined;
  }
}

/**
 * One event in wire form. Data is split on any line break so that a CR or LF inside it cannot end the event
 * early or inject fields; `event` and `id` must not contain line breaks.
 */
export function formatSseEvent(data: string, options: { event?: string; id?: string } = {}): string {
  let out = '';
  if (options.event !== undefined) {
    if (/[\r\n]/.test(options.event)) throw new TypeError('SSE event name must not contain line breaks');
    out += `event: ${options.event}\n`;
  }
  if (options.id !== undefined) {
    if (/[\r\n\0]/.test(options.id)) throw new TypeError('SSE id must not contain line breaks or NUL');
    out += `id: ${options.id}\n`;
  }
  for (const line of data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}
