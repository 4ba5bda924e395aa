/**
 * Canonical JSON for audit events (RFC 8785 JCS for the values events contain): object members sorted by the
 * UTF-16 code units of their names, no insignificant whitespace, strings escaped as JSON.stringify does (which
 * matches JCS), integers only (events carry no floats but latency, which is rounded to microseconds and
 * serialised with JSON's shortest form, as JCS prescribes for numbers). One event has exactly one encoding, so
 * its leaf hash is reproducible by any verifier.
 */
import { isUtf8 } from 'node:buffer';

export type CanonicalValue =
  null | boolean | number | string | readonly CanonicalValue[] | { readonly [key: string]: CanonicalValue };

export class CanonicalJsonError extends Error {
  readonly code = 'canonical_json';
}

export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError('non-finite number');
      return Object.is(value, -0) ? '0' : JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      // String concatenation over sorted keys: this runs once per entry on the verification hot path.
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
        return `${out}]`;
      }
      const record = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, exactly JCS's member order.
      const keys = Object.keys(record).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const member = record[key];
        if (member === undefined) continue;
        out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(member)}`;
        first = false;
      }
      return `${out}}`;
    }
    case 'undefined':
    case 'bigint':
    case 'function':
    case 'symbol':
      throw new CanonicalJsonError(`cannot encode a ${typeof value}`);
  }
  // TypeScript does not treat a switch over `typeof` as exhaustive.
  throw new CanonicalJsonError('cannot encode this value');
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

// ---------------------------------------------------------------------------------------------------------
// Recognising canonical bytes without parsing them.

/** What `scanCanonicalObject` found at the top level of a canonical object. */
export interface CanonicalObjectScan {
  /**
   * The value of the top-level member `index`: a number when it is a number, `undefined` when absent, `NaN` for
   * any other JSON value.
   */
  readonly index: number | undefined;
  /** The top-level member `time` when it is a string without escapes; `undefined` when absent or anything else. */
  readonly time: string | undefined;
}

/** Nesting deeper than this is left to the general path (a parser recursion, so it must be bounded). */
const SCAN_MAX_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** A one-pass recogniser; position-based, throws nothing. `fail` marks "not recognised". */
class Scanner {
  readonly b: Uint8Array;
  readonly end: number;
  pos: number;
  fail = false;
  nonAscii = false;
  index: number | undefined = undefined;
  time: string | undefined = undefined;

  constructor(b: Uint8Array, start: number, end: number) {
    this.b = b;
    this.pos = start;
    this.end = end;
  }

  value(depth: number): void {
    if (this.pos >= this.end || depth > SCAN_MAX_DEPTH) {
      this.fail = true;
      return;
    }
    const c = this.b[this.pos] as number;
    if (c === 0x7b) this.object(depth);
    else if (c === 0x5b) this.array(depth);
    else if (c === QUOTE) this.string(false);
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) this.number();
    else if (c === 0x74) this.literal('true');
    else if (c === 0x66) this.literal('false');
    else if (c === 0x6e) this.literal('null');
    else this.fail = true;
  }

  literal(word: string): void {
    if (this.pos + word.length > this.end) {
      this.fail = true;
      return;
    }
    for (let i = 0; i < word.length; i++) {
      if (this.b[this.pos + i] !== word.charCodeAt(i)) {
        this.fail = true;
        return;
      }
    }
    this.pos += word.length;
  }

  /** A string starting at `pos` (a quote). Keys must be plain printable ASCII (their order is then bytewise). */
  string(key: boolean): void {
    const b = this.b;
    let p = this.pos + 1;
    for (;;) {
      if (p >= this.end) {
        this.fail = true;
        return;
      }
      const c = b[p] as number;
      if (c === QUOTE) break;
      if (c < 0x20) {
        this.fail = true;
        return;
      }
      if (c >= 0x80) {
        if (key) {
          this.fail = true;
          return;
        }
        this.nonAscii = true;
        p++;
      } else if (c === BACKSLASH) {
        if (key) {
          this.fail = true;
          return;
        }
        // Only the escapes JSON.stringify emits (which JCS adopts): \" \\ \b \f \n \r \t, and \u00XX in
        // lowercase hex for the other control characters. Anything else is left to the general path.
        const e = b[p + 1];
        if (
          e === QUOTE ||
          e === BACKSLASH ||
          e === 0x62 ||
          e === 0x66 ||
          e === 0x6e ||
          e === 0x72 ||
          e === 0x74
        ) {
          p += 2;
        } else if (e === 0x75 && b[p + 2] === 0x30 && b[p + 3] === 0x30 && p + 5 < this.end) {
          const hi = b[p + 4] as number;
          const lo = b[p + 5] as number;
          const hv = hi === 0x30 ? 0 : hi === 0x31 ? 16 : -1;
          const lv = lo >= 0x30 && lo <= 0x39 ? lo - 0x30 : lo >= 0x61 && lo <= 0x66 ? lo - 0x57 : -1;
          const code = hv < 0 || lv < 0 ? -1 : hv + lv;
          if (code < 0 || code === 8 || code === 9 || code === 10 || code === 12 || code === 13) {
            this.fail = true;
            return;
          }
          p += 6;
        } else {
          this.fail = true;
          return;
        }
      } else {
        p++;
      }
    }
    this.pos = p + 1;
  }

  number(): void {
    const b = this.b;
    const start = this.pos;
    let p = start;
    let integer = true;
    while (p < this.end) {
      const c = b[p] as number;
      if (c >= 0x30 && c <= 0x39) p++;
      else if (c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45) {
        integer = false;
        p++;
      } else break;
    }
    if (p === start) {
      this.fail = true;
      return;
    }
    const digits = p - start;
    // Canonical integers: no sign (no negative numbers of more than 15 digits either), no leading zero; up to 15
    // digits they are exact and print back the same. Anything else must print back identically (JCS numbers are
    // ECMAScript's shortest round-trip form, which is always valid JSON), and "-0" prints as "0".
    if (integer && b[start] !== 0x2d && digits <= 15 && (digits === 1 || b[start] !== 0x30)) {
      this.pos = p;
      return;
    }
    const tok = latin1(b, start, p);
    const n = Number(tok);
    if (!Number.isFinite(n) || String(n) !== tok) {
      this.fail = true;
      return;
    }
    this.pos = p;
  }

  array(depth: number): void {
    this.pos++;
    if (this.b[this.pos] === 0x5d) {
      this.pos++;
      return;
    }
    for (;;) {
      this.value(depth + 1);
      if (this.fail) return;
      const c = this.b[this.pos];
      this.pos++;
      if (c === 0x5d) return;
      if (c !== 0x2c) {
        this.fail = true;
        return;
      }
    }
  }

  object(depth: number): void {
    const b = this.b;
    this.pos++;
    if (b[this.pos] === 0x7d) {
      this.pos++;
      return;
    }
    let prevStart = -1;
    let prevEnd = -1;
    for (;;) {
      if (b[this.pos] !== QUOTE) {
        this.fail = true;
        return;
      }
      const keyStart = this.pos + 1;
      this.string(true);
      if (this.fail) return;
      const keyEnd = this.pos - 1;
      // Members strictly ascending (sorted, no duplicates); keys are ASCII, so bytes compare as UTF-16 units.
      if (prevStart >= 0 && compareBytes(b, prevStart, prevEnd, keyStart, keyEnd) >= 0) {
        this.fail = true;
        return;
      }
      prevStart = keyStart;
      prevEnd = keyEnd;
      if (b[this.pos] !== 0x3a) {
        this.fail = true;
        return;
      }
      this.pos++;
      const valueStart = this.pos;
      this.value(depth + 1);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by value(); TS narrows the field
      if (this.fail) return;
      if (depth === 0) this.#topLevel(keyStart, keyEnd, valueStart);
      const c = b[this.pos];
      this.pos++;
      if (c === 0x7d) return;
      if (c !== 0x2c) {
        this.fail = true;
        return;
      }
    }
  }

  #topLevel(keyStart: number, keyEnd: number, valueStart: number): void {
    const b = this.b;
    const len = keyEnd - keyStart;
    if (len === 5 && isKey(b, keyStart, 'index')) {
      const c = b[valueStart] as number;
      if (c >= 0x30 && c <= 0x39 && this.pos - valueStart <= 15) {
        let n = 0;
        let i = valueStart;
        for (; i < this.pos; i++) {
          const d = b[i] as number;
          if (d < 0x30 || d > 0x39) break;
          n = n * 10 + (d - 0x30);
        }
        // A plain integer of at most 15 digits is exact; anything else (fraction, exponent) parsed as text.
        this.index = i === this.pos ? n : Number(latin1(b, valueStart, this.pos));
      } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
        this.index = Number(latin1(b, valueStart, this.pos));
      } else {
        this.index = Number.NaN;
      }
    } else if (len === 4 && isKey(b, keyStart, 'time') && b[valueStart] === QUOTE) {
      for (let i = valueStart + 1; i < this.pos - 1; i++) {
        const c = b[i] as number;
        if (c === BACKSLASH || c >= 0x80) return;
      }
      this.time = latin1(b, valueStart + 1, this.pos - 1);
    }
  }
}

function latin1(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
}

function isKey(b: Uint8Array, at: number, key: string): boolean {
  for (let i = 0; i < key.length; i++) if (b[at + i] !== key.charCodeAt(i)) return false;
  return true;
}

function compareBytes(b: Uint8Array, s1: number, e1: number, s2: number, e2: number): number {
  const n = Math.min(e1 - s1, e2 - s2);
  for (let i = 0; i < n; i++) {
    const d = (b[s1 + i] as number) - (b[s2 + i] as number);
    if (d !== 0) return d;
  }
  return e1 - s1 - (e2 - s2);
}

/**
 * Recognises, in one pass and without building objects, bytes `b[start, end)` that are exactly
 * `canonicalBytes(JSON.parse(text))` of a JSON object, and reports its top-level `index` and `time`. Returns
 * `undefined` when it cannot tell: the bytes are not canonical JSON, or use what the fast path leaves to the
 * general one (non-ASCII or escaped member names, escapes JSON.stringify does not emit, nesting beyond 64
 * levels). Bytes outside ASCII are accepted only when `b[start, end)` is valid UTF-8. So a result means: valid
 * UTF-8, valid JSON, an object, and byte-identical to its own canonical form — verifiers may hash the bytes as
 * they are. Callers fall back to `JSON.parse` + `canonicalJson` on `undefined`.
 */
export function scanCanonicalObject(
  b: Uint8Array,
  start = 0,
  end: number = b.byteLength,
): CanonicalObjectScan | undefined {
  if (b[start] !== 0x7b) return undefined;
  const s = new Scanner(b, start, end);
  s.object(0);
  if (s.fail || s.pos !== end) return undefined;
  if (s.nonAscii && !isUtf8(b.subarray(start, end))) return undefined;
  return { index: s.index, time: s.time };
}
