/**
 * Strict JSON (RFC 8259) parser for headers and configs taken from untrusted model files.
 *
 * Written by hand because `JSON.parse` silently keeps the last of duplicate keys (other parsers keep the
 * first, or refuse: a disagreement an attacker can use to show the scanner one header and the loader
 * another), and because it builds plain objects, where a `__proto__` key has special meaning. Objects here
 * are `Map`s, so no key can reach a prototype; numbers keep their source text so 64-bit offsets stay exact.
 */

export class JsonNumber {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  /** The value as a BigInt when it is an integer literal (no fraction, no exponent). */
  integer(): bigint | null {
    return /^-?(0|[1-9]\d*)$/.test(this.text) ? BigInt(this.text) : null;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

export class JsonObject {
  readonly map = new Map<string, JsonValue>();
}

export class JsonSyntaxError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.name = 'JsonSyntaxError';
    this.offset = offset;
  }
}

export interface JsonParseResult {
  value: JsonValue;
  /** Keys that occurred more than once in one object, as `path.key`. */
  duplicates: string[];
}

const MAX_DEPTH = 512;

export function parseJson(text: string): JsonParseResult {
  let i = 0;
  const duplicates: string[] = [];
  const err: (msg: string) => never = (msg) => {
    throw new JsonSyntaxError(msg, i);
  };
  const ws = (): void => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  const str = (): string => {
    i++; // opening quote
    let out = '';
    let run = i;
    for (;;) {
      if (i >= text.length) err('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(run, i);
        i++;
        return out;
      }
      if (c < 0x20) err('control character in string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(run, i);
      const e = text[i + 1];
      i += 2;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const hex = (at: number): number => {
            const h = text.slice(at, at + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) err('bad \\u escape');
            return parseInt(h, 16);
          };
          const cu = hex(i);
          i += 4;
          if (cu >= 0xd800 && cu <= 0xdbff) {
            if (text.slice(i, i + 2) !== '\\u') err('lone surrogate');
            const lo = hex(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) err('lone surrogate');
            i += 6;
            out += String.fromCharCode(cu, lo);
          } else if (cu >= 0xdc00 && cu <= 0xdfff) {
            err('lone surrogate');
          } else out += String.fromCharCode(cu);
          break;
        }
        case undefined:
        default:
          err('bad escape');
      }
      run = i;
    }
  };
  const value = (depth: number, path: string): JsonValue => {
    if (depth > MAX_DEPTH) err('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = new JsonObject();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') err('expected a string key');
        const key = str();
        ws();
        if (text[i] !== ':') err('expected ":"');
        i++;
        const v = value(depth + 1, path === '' ? key : `${path}.${key}`);
        if (obj.map.has(key)) duplicates.push(path === '' ? key : `${path}.${key}`);
        obj.map.set(key, v);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        err('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1, `${path}[${arr.length}]`));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        err('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('false', i)) {
      i += 5;
      return false;
    }
    if (text.startsWith('null', i)) {
      i += 4;
      return null;
    }
    const m = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = i;
    const num = m.exec(text);
    if (num === null) err('unexpected character');
    i = m.lastIndex;
    return new JsonNumber(num[0]);
  };
  const v = value(0, '');
  ws();
  if (i !== text.length) err('trailing characters');
  return { value: v, duplicates };
}
