import type { RuleId } from '../rules.ts';
import type { ScanLimits } from '../types.ts';
import { classifyGlobal, normalizeModule, type GlobalClass } from './globals.ts';
import { HIGHEST_PROTOCOL, opcodeName } from './opcodes.ts';

/**
 * A pickle virtual machine that never calls anything.
 *
 * Written by hand because no library walks pickles outside Python, and a scanner must see what CPython's
 * C unpickler (`_pickle.c`, what `pickle.load` runs) would do: which globals it imports and what it calls
 * them with. The walker mirrors that unpickler's stack, mark and memo rules exactly where they decide
 * whether loading goes on (stack underflow, missing MARK, missing memo key, bad lengths all stop CPython,
 * so nothing after them executes); everywhere else it is lenient, because stopping earlier than CPython
 * would let a payload hide after the stop.
 *
 * Values are simulated only as far as analysis needs: strings (to resolve STACK_GLOBAL through the memo),
 * small ints and tuples (PyTorch persistent ids, joblib array shapes), and who-called-what (nested loaders,
 * gadget chains). Byte payloads are never copied: the walker keeps their offset and length, so it runs over
 * a stream fed chunk by chunk and can skip multi-GB payloads without reading them.
 */

export interface Region {
  readonly off: number;
  readonly len: number;
}

export type PV =
  | { readonly t: 'none' | 'bool' | 'float' }
  | { readonly t: 'opaque'; readonly what: string }
  | { readonly t: 'int'; readonly v: number | null }
  /** `off`/`len`: where the UTF-8 text lies in the source (`off` -1 for text opcodes that escape it). */
  | { readonly t: 'str'; readonly v: string | null; readonly off: number; readonly len: number }
  | { readonly t: 'bytes'; readonly off: number; readonly len: number }
  | { readonly t: 'tuple' | 'list' | 'set' | 'dict'; readonly items: PV[]; n: number }
  | { readonly t: 'global'; readonly module: string; readonly name: string; readonly cls: GlobalClass }
  | { readonly t: 'call'; readonly fn: PV; readonly args: PV; state: PV | null };

type Container = Extract<PV, { items: PV[] }>;

/** A payload handed to a nested deserialiser that the driver should scan as a pickle of its own. */
export interface NestedPayload {
  readonly loader: string;
  readonly region: Region;
  /** `latin1`: the region is UTF-8 text that `_codecs.encode(text, 'latin1')` turns into the payload. */
  readonly transform: 'none' | 'latin1';
  readonly offset: number;
}

export type WalkStatus =
  | { readonly kind: 'need' }
  | { readonly kind: 'stop' }
  | { readonly kind: 'error'; readonly message: string; readonly offset: number }
  | { readonly kind: 'limit'; readonly message: string; readonly offset: number }
  /** Walking cannot go on for a reason already reported (e.g. an unparseable joblib array). */
  | { readonly kind: 'halt' };

export interface WalkerHooks {
  report(rule: RuleId, message: string, offset: number): void;
  /** Called with the argument of every PERSID/BINPERSID (what `persistent_load` receives). */
  persistentId?(pid: PV, offset: number): void;
}

/** Indices below this live in a dense array, as in `_pickle.c`; far-out ones (attacker-chosen) in a map. */
const DENSE_MEMO = 1 << 20;

/** The unpickler memo, with CPython's fill count (what MEMOIZE uses as its next index). */
class Memo {
  size = 0;
  private readonly dense: (PV | undefined)[] = [];
  private readonly sparse = new Map<number, PV>();

  get(idx: number): PV | undefined {
    return idx >= 0 && idx < DENSE_MEMO ? this.dense[idx] : this.sparse.get(idx);
  }

  has(idx: number): boolean {
    return this.get(idx) !== undefined;
  }

  set(idx: number, v: PV): void {
    if (idx < DENSE_MEMO) {
      if (this.dense[idx] === undefined) this.size++;
      this.dense[idx] = v;
    } else {
      if (!this.sparse.has(idx)) this.size++;
      this.sparse.set(idx, v);
    }
  }
}

interface Frame {
  stack: PV[];
  /** Stack heights at each open MARK, as in `_pickle.c`. */
  marks: number[];
  memo: Memo;
}

const NONE: PV = { t: 'none' };
const BOOL: PV = { t: 'bool' };
const FLOAT: PV = { t: 'float' };
const SMALL_INTS: PV[] = Array.from({ length: 256 }, (_, v) => ({ t: 'int', v }));
const UNKNOWN_INT: PV = { t: 'int', v: null };

/** Strings up to this many bytes are decoded and kept (module names, dict keys, dtype codes). */
const STR_RETAIN = 1024;
/** Items kept per simulated container; the rest are counted only. */
const ITEMS_RETAIN = 64;

const NL = 0x0a;
const DOTTED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Unwinds the walk loop from deep inside an opcode handler; never escapes `run`. */
class Stop extends Error {
  readonly status: WalkStatus;
  constructor(status: WalkStatus) {
    super(status.kind);
    this.status = status;
  }
}

const isDunder = (s: string): boolean => s.length > 4 && s.startsWith('__') && s.endsWith('__');

function intPV(v: number): PV {
  return v >= 0 && v < 256 ? (SMALL_INTS[v] ?? UNKNOWN_INT) : { t: 'int', v };
}

/** Cap on kept items: dicts keep key and value, flattened. */
function cap(t: Container['t']): number {
  return t === 'dict' ? 2 * ITEMS_RETAIN : ITEMS_RETAIN;
}

function emptyContainer(t: Container['t']): Container {
  return { t, items: [], n: 0 };
}

/** Moves `stack[from..]` into a new container (DICT takes them as key, value pairs). */
function popContainer(t: Container['t'], stack: PV[], from: number): Container {
  const n = stack.length - from;
  const c: Container = { t, items: stack.slice(from, from + cap(t)), n: t === 'dict' ? n / 2 : n };
  stack.length = from;
  return c;
}

/** APPENDS/SETITEMS/ADDITEMS: moves `stack[from..]` into `target`, if it is a container. */
function popInto(target: PV | undefined, stack: PV[], from: number): void {
  if (target !== undefined && 'items' in target) {
    // CPython calls .extend/__setitem__/.add of whatever object is there; only containers are modelled.
    const room = cap(target.t) - target.items.length;
    for (let i = from; i < stack.length && i - from < room; i++) target.items.push(stack[i] as PV);
    target.n += target.t === 'dict' ? (stack.length - from) / 2 : stack.length - from;
  }
  stack.length = from;
}

function describe(v: PV | undefined): string {
  if (v === undefined) return 'nothing';
  switch (v.t) {
    case 'str':
      return v.v === null ? 'a long string' : JSON.stringify(v.v);
    case 'global':
      return `${v.module}.${v.name}`;
    case 'call':
      return `the result of calling ${describe(v.fn)}`;
    case 'opaque':
      return v.what;
    case 'none':
    case 'bool':
    case 'float':
    case 'int':
    case 'bytes':
    case 'tuple':
    case 'list':
    case 'set':
    case 'dict':
      return `a ${v.t}`;
  }
}

/** `codecs.escape_decode`, as CPython applies it to STRING arguments; unknown escapes stay literal. */
function escapeDecode(b: Uint8Array): string {
  let out = '';
  for (let i = 0; i < b.length; i++) {
    const c = b[i] ?? 0;
    if (c !== 0x5c || i + 1 >= b.length) {
      out += String.fromCharCode(c);
      continue;
    }
    const e = String.fromCharCode(b[++i] ?? 0);
    const simple: Record<string, string> = {
      '\\': '\\',
      "'": "'",
      '"': '"',
      a: '\x07',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
      v: '\v',
      '\n': '',
    };
    const s = simple[e];
    if (s !== undefined) {
      out += s;
    } else if (
      e === 'x' &&
      i + 2 < b.length + 0 &&
      /^[0-9a-fA-F]{2}$/.test(String.fromCharCode(b[i + 1] ?? 0, b[i + 2] ?? 0))
    ) {
      out += String.fromCharCode(parseInt(String.fromCharCode(b[i + 1] ?? 0, b[i + 2] ?? 0), 16));
      i += 2;
    } else if (e >= '0' && e <= '7') {
      let digits = e;
      while (digits.length < 3 && i + 1 < b.length && (b[i + 1] ?? 0) >= 0x30 && (b[i + 1] ?? 0) <= 0x37) {
        digits += String.fromCharCode(b[++i] ?? 0);
      }
      out += String.fromCharCode(parseInt(digits, 8) & 0xff);
    } else {
      out += '\\' + e;
    }
  }
  return out;
}

/** `raw_unicode_escape` decoding (UNICODE opcode): only \uXXXX and \UXXXXXXXX after an odd run of backslashes. */
function rawUnicodeEscapeDecode(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i] ?? 0;
    if (c !== 0x5c) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    let run = 0;
    while (i + run < b.length && b[i + run] === 0x5c) run++;
    const next = String.fromCharCode(b[i + run] ?? 0);
    const width = next === 'u' ? 4 : next === 'U' ? 8 : 0;
    if (run % 2 === 1 && width > 0) {
      out += '\\'.repeat(run - 1);
      const hex = String.fromCharCode(...b.subarray(i + run + 1, i + run + 1 + width));
      const cp = /^[0-9a-fA-F]+$/.test(hex) && hex.length === width ? parseInt(hex, 16) : -1;
      out += cp >= 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
      i += run + 1 + width;
    } else {
      out += '\\'.repeat(run);
      i += run;
    }
  }
  return out;
}

/** Python's `int(text, 0)`-ish parse of INT/LONG/GET/PUT arguments; `null` when not a safe integer. */
function parseDecimal(text: string): number | null {
  const t = text.trim().replace(/L$/, '').replaceAll('_', '');
  if (!/^[+-]?\d+$/.test(t)) return null;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : null;
}

/** Little-endian two's complement of LONG1/LONG4, when it fits a safe integer. */
function decodeLong(b: Uint8Array): number | null {
  if (b.length === 0) return 0;
  if (b.length > 6) return null;
  let v = 0;
  for (let i = b.length - 1; i >= 0; i--) v = v * 256 + (b[i] ?? 0);
  if (((b[b.length - 1] ?? 0) & 0x80) !== 0) v -= 2 ** (8 * b.length);
  return v;
}

const utf8 = new TextDecoder('utf-8');

export class PickleWalker {
  /** Absolute offset of the next opcode. */
  pos: number;
  opcodes = 0;
  /** Highest PROTO seen. */
  proto = 0;
  /** A joblib NumpyArrayWrapper was walked (its raw array bytes were skipped as joblib does). */
  joblib = false;
  /** Imports whose module and name are well-formed Python dotted identifiers (evidence of a real pickle). */
  wellFormedImports = 0;
  readonly nested: NestedPayload[] = [];

  private readonly limits: ScanLimits;
  private readonly hooks: WalkerHooks;
  private readonly opcodeBudget: number;
  private readonly frames: Frame[] = [];
  private f: Frame = { stack: [], marks: [], memo: new Memo() };
  private readonly classCache = new Map<string, GlobalClass>();
  /** Raw bytes of a joblib array still to skip once its padding byte is read. */
  private pendingArray: { padded: boolean; nbytes: number } | null = null;

  constructor(start: number, limits: ScanLimits, hooks: WalkerHooks, opcodeBudget = limits.maxPickleOpcodes) {
    this.pos = start;
    this.limits = limits;
    this.hooks = hooks;
    this.opcodeBudget = opcodeBudget;
  }

  /**
   * Walks opcodes from `this.pos`. `buf` holds the bytes from absolute offset `base`; `end` is where the data
   * ends. Returns `need` when the next opcode is not wholly inside `buf` (call again with more), `stop` after
   * the STOP of the outermost pickle.
   */
  run(buf: Uint8Array, base: number, end: number): WalkStatus {
    try {
      return this.loop(buf, base, end);
    } catch (e) {
      if (e instanceof Stop) return e.status;
      throw e;
    }
  }

  private fail(message: string, offset: number): never {
    throw new Stop({ kind: 'error', message, offset });
  }

  private limit(message: string, offset: number): never {
    throw new Stop({ kind: 'limit', message, offset });
  }

  private loop(buf: Uint8Array, base: number, end: number): WalkStatus {
    const final = base + buf.length >= end;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const need = (i: number, n: number, op: number): boolean => {
      if (i + n <= buf.length) return false;
      if (final) this.fail(`pickle data was truncated in ${opcodeName(op)}`, base + i);
      return true;
    };
    /** Reads a text line after the opcode at `i`; `null` means more data is needed. */
    const line = (start: number, op: number): { text: Uint8Array; next: number } | null => {
      const nl = buf.indexOf(NL, start);
      if (nl < 0) {
        if (buf.length - start > this.limits.maxPickleLine) {
          this.limit(
            `text line of ${opcodeName(op)} longer than ${this.limits.maxPickleLine} bytes`,
            base + start,
          );
        }
        if (!final) return null;
        // At end of input CPython takes the partial line and drops its last byte as if it were the newline.
        if (start >= buf.length) this.fail(`pickle data was truncated in ${opcodeName(op)}`, base + start);
        return { text: buf.subarray(start, buf.length - 1), next: buf.length };
      }
      return { text: buf.subarray(start, nl), next: nl + 1 };
    };

    for (;;) {
      if (this.pendingArray !== null) {
        const i = this.pos - base;
        let skip = this.pendingArray.nbytes;
        let at = this.pos;
        if (this.pendingArray.padded) {
          if (i >= buf.length) {
            if (final) this.fail('joblib array padding byte missing', this.pos);
            return { kind: 'need' };
          }
          const pad = buf[i] ?? 0;
          at += 1;
          skip += pad;
        }
        if (at + skip > end) this.fail('joblib array data truncated', this.pos);
        this.pos = at + skip;
        this.pendingArray = null;
      }
      const i = this.pos - base;
      if (i >= buf.length) {
        if (final) this.fail('pickle data was truncated (no STOP)', this.pos);
        return { kind: 'need' };
      }
      if (++this.opcodes > this.opcodeBudget) {
        this.limit(`more than ${this.opcodeBudget} opcodes`, this.pos);
      }
      const op = buf[i] ?? 0;
      const at = this.pos;
      const f = this.f;
      const stack = f.stack;
      switch (op) {
        case 0x28: // MARK
          if (f.marks.length >= this.limits.maxPickleMarks)
            this.limit(`more than ${this.limits.maxPickleMarks} open MARKs`, at);
          f.marks.push(stack.length);
          this.pos += 1;
          break;
        case 0x2e: {
          // STOP
          this.pop(at);
          this.pos += 1;
          const outer = this.frames.pop();
          if (outer === undefined) return { kind: 'stop' };
          // End of a joblib object-array pickle: back to the outer stream, whose wrapper became the array.
          this.f = outer;
          break;
        }
        case 0x30: {
          // POP
          const top = f.marks[f.marks.length - 1];
          if (top !== undefined && top === stack.length) f.marks.pop();
          else this.pop(at);
          this.pos += 1;
          break;
        }
        case 0x31: {
          // POP_MARK
          stack.length = this.marker(at);
          this.pos += 1;
          break;
        }
        case 0x32: // DUP
          this.push(this.peek(at), at);
          this.pos += 1;
          break;
        case 0x46: // FLOAT
        case 0x49: // INT
        case 0x4c: {
          // LONG
          const l = line(i + 1, op);
          if (l === null) return this.needMore();
          if (l.text.length < 1) this.fail(`empty argument to ${opcodeName(op)}`, at);
          const text = String.fromCharCode(...l.text.subarray(0, 64));
          if (op === 0x46) this.push(FLOAT, at);
          else if (op === 0x49 && (text === '00' || text === '01')) this.push(BOOL, at);
          else {
            const n = parseDecimal(text);
            this.push(n === null ? UNKNOWN_INT : intPV(n), at);
          }
          this.pos = base + l.next;
          break;
        }
        case 0x4a: // BININT
          if (need(i + 1, 4, op)) return this.needMore();
          this.push(intPV(dv.getInt32(i + 1, true)), at);
          this.pos += 5;
          break;
        case 0x4b: // BININT1
          if (need(i + 1, 1, op)) return this.needMore();
          this.push(intPV(buf[i + 1] ?? 0), at);
          this.pos += 2;
          break;
        case 0x4d: // BININT2
          if (need(i + 1, 2, op)) return this.needMore();
          this.push(intPV(dv.getUint16(i + 1, true)), at);
          this.pos += 3;
          break;
        case 0x8a: {
          // LONG1
          if (need(i + 1, 1, op)) return this.needMore();
          const n = buf[i + 1] ?? 0;
          if (need(i + 2, n, op)) return this.needMore();
          const v = decodeLong(buf.subarray(i + 2, i + 2 + n));
          this.push(v === null ? UNKNOWN_INT : intPV(v), at);
          this.pos += 2 + n;
          break;
        }
        case 0x8b: {
          // LONG4
          if (need(i + 1, 4, op)) return this.needMore();
          const n = dv.getInt32(i + 1, true);
          if (n < 0) this.fail('LONG pickle has negative byte count', at);
          if (n <= 8) {
            if (need(i + 5, n, op)) return this.needMore();
            const v = decodeLong(buf.subarray(i + 5, i + 5 + n));
            this.push(v === null ? UNKNOWN_INT : intPV(v), at);
          } else {
            if (at + 5 + n > end) this.fail('pickle data was truncated in LONG4', at);
            this.push(UNKNOWN_INT, at);
          }
          this.pos += 5 + n;
          break;
        }
        case 0x4e: // NONE
          this.push(NONE, at);
          this.pos += 1;
          break;
        case 0x88: // NEWTRUE
        case 0x89: // NEWFALSE
          this.push(BOOL, at);
          this.pos += 1;
          break;
        case 0x47: // BINFLOAT
          if (need(i + 1, 8, op)) return this.needMore();
          this.push(FLOAT, at);
          this.pos += 9;
          break;
        case 0x50: {
          // PERSID
          const l = line(i + 1, op);
          if (l === null) return this.needMore();
          const pid: PV = {
            t: 'str',
            v: String.fromCharCode(...l.text.subarray(0, STR_RETAIN)),
            off: -1,
            len: 0,
          };
          this.hooks.persistentId?.(pid, at);
          this.push({ t: 'opaque', what: 'a persistent_load result' }, at);
          this.pos = base + l.next;
          break;
        }
        case 0x51: {
          // BINPERSID
          const pid = this.pop(at);
          this.hooks.persistentId?.(pid, at);
          this.push({ t: 'opaque', what: 'a persistent_load result' }, at);
          this.pos += 1;
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop(at);
          const fn = this.pop(at);
          this.push(this.call(fn, args, at, 'REDUCE'), at);
          this.pos += 1;
          break;
        }
        case 0x53: {
          // STRING
          const l = line(i + 1, op);
          if (l === null) return this.needMore();
          const t = l.text;
          const q = t[0];
          if (t.length < 2 || q !== t[t.length - 1] || (q !== 0x27 && q !== 0x22)) {
            this.fail('the STRING opcode argument must be quoted', at);
          }
          const inner = t.subarray(1, t.length - 1);
          this.push(
            { t: 'str', v: inner.length <= STR_RETAIN * 4 ? escapeDecode(inner) : null, off: -1, len: 0 },
            at,
          );
          this.pos = base + l.next;
          break;
        }
        case 0x54: // BINSTRING
        case 0x55: {
          // SHORT_BINSTRING
          const hdr = op === 0x54 ? 4 : 1;
          if (need(i + 1, hdr, op)) return this.needMore();
          const n = op === 0x54 ? dv.getInt32(i + 1, true) : (buf[i + 1] ?? 0);
          if (n < 0) this.fail('BINSTRING pickle has negative byte count', at);
          if (n <= STR_RETAIN && need(i + 1 + hdr, n, op)) return this.needMore();
          this.pushText(buf, i + 1 + hdr, n, base, end, op, 'latin1');
          this.pos = at + 1 + hdr + n;
          break;
        }
        case 0x56: {
          // UNICODE
          const l = line(i + 1, op);
          if (l === null) return this.needMore();
          this.push(
            {
              t: 'str',
              v: l.text.length <= STR_RETAIN * 6 ? rawUnicodeEscapeDecode(l.text) : null,
              off: -1,
              len: 0,
            },
            at,
          );
          this.pos = base + l.next;
          break;
        }
        case 0x58: // BINUNICODE
        case 0x8c: // SHORT_BINUNICODE
        case 0x8d: {
          // BINUNICODE8
          const hdr = op === 0x58 ? 4 : op === 0x8c ? 1 : 8;
          if (need(i + 1, hdr, op)) return this.needMore();
          const n =
            hdr === 4
              ? dv.getUint32(i + 1, true)
              : hdr === 1
                ? (buf[i + 1] ?? 0)
                : Number(dv.getBigUint64(i + 1, true));
          if (n <= STR_RETAIN && need(i + 1 + hdr, n, op)) return this.needMore();
          this.pushText(buf, i + 1 + hdr, n, base, end, op, 'utf8');
          this.pos = at + 1 + hdr + n;
          break;
        }
        case 0x42: // BINBYTES
        case 0x43: // SHORT_BINBYTES
        case 0x8e: // BINBYTES8
        case 0x96: {
          // BYTEARRAY8
          const hdr = op === 0x42 ? 4 : op === 0x43 ? 1 : 8;
          if (need(i + 1, hdr, op)) return this.needMore();
          const n =
            hdr === 4
              ? dv.getUint32(i + 1, true)
              : hdr === 1
                ? (buf[i + 1] ?? 0)
                : Number(dv.getBigUint64(i + 1, true));
          const start = at + 1 + hdr;
          if (start + n > end) this.fail(`pickle data was truncated in ${opcodeName(op)}`, at);
          this.push({ t: 'bytes', off: start, len: n }, at);
          this.pos = start + n;
          break;
        }
        case 0x61: {
          // APPEND
          if (stack.length - 1 <= this.fence()) this.underflow(at);
          popInto(stack[stack.length - 2], stack, stack.length - 1);
          this.pos += 1;
          break;
        }
        case 0x65: {
          // APPENDS
          const m = this.marker(at);
          if (m > stack.length || m <= 0) this.underflow(at);
          popInto(stack[m - 1], stack, m);
          this.pos += 1;
          break;
        }
        case 0x62: {
          // BUILD
          const state = this.pop(at);
          const target = this.peek(at);
          this.build(target, state, at);
          this.pos += 1;
          break;
        }
        case 0x63: // GLOBAL
        case 0x69: {
          // INST
          const l1 = line(i + 1, op);
          if (l1 === null) return this.needMore();
          const l2 = line(l1.next, op);
          if (l2 === null) return this.needMore();
          if (l1.text.length < 1 || l2.text.length < 1)
            this.fail(`empty module or name in ${opcodeName(op)}`, at);
          const g = this.global(utf8.decode(l1.text), utf8.decode(l2.text), at, opcodeName(op));
          if (op === 0x63) {
            this.push(g, at);
          } else {
            const m = this.marker(at);
            const args = popContainer('tuple', stack, m);
            this.push(this.call(g, args, at, 'INST'), at);
          }
          this.pos = base + l2.next;
          break;
        }
        case 0x64: {
          // DICT
          const m = this.marker(at);
          if ((stack.length - m) % 2 !== 0) this.fail('odd number of items for DICT', at);
          this.push(popContainer('dict', stack, m), at);
          this.pos += 1;
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.push(emptyContainer('dict'), at);
          this.pos += 1;
          break;
        case 0x5d: // EMPTY_LIST
          this.push(emptyContainer('list'), at);
          this.pos += 1;
          break;
        case 0x29: // EMPTY_TUPLE
          this.push(emptyContainer('tuple'), at);
          this.pos += 1;
          break;
        case 0x8f: // EMPTY_SET
          this.push(emptyContainer('set'), at);
          this.pos += 1;
          break;
        case 0x6c: // LIST
        case 0x74: // TUPLE
        case 0x91: {
          // FROZENSET
          const m = this.marker(at);
          this.push(popContainer(op === 0x6c ? 'list' : op === 0x74 ? 'tuple' : 'set', stack, m), at);
          this.pos += 1;
          break;
        }
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: {
          // TUPLE3
          const n = op - 0x84;
          if (stack.length - n < this.fence()) this.underflow(at);
          this.push(popContainer('tuple', stack, stack.length - n), at);
          this.pos += 1;
          break;
        }
        case 0x73: {
          // SETITEM
          if (stack.length - 2 <= this.fence()) this.underflow(at);
          popInto(stack[stack.length - 3], stack, stack.length - 2);
          this.pos += 1;
          break;
        }
        case 0x75: {
          // SETITEMS
          const m = this.marker(at);
          if (m > stack.length || m <= 0) this.underflow(at);
          if ((stack.length - m) % 2 !== 0) this.fail('odd number of items for SETITEMS', at);
          popInto(stack[m - 1], stack, m);
          this.pos += 1;
          break;
        }
        case 0x90: {
          // ADDITEMS
          const m = this.marker(at);
          if (m > stack.length || m <= 0) this.underflow(at);
          popInto(stack[m - 1], stack, m);
          this.pos += 1;
          break;
        }
        case 0x67: // GET
        case 0x70: {
          // PUT
          const l = line(i + 1, op);
          if (l === null) return this.needMore();
          if (l.text.length < 1) this.fail(`empty argument to ${opcodeName(op)}`, at);
          const idx = parseDecimal(String.fromCharCode(...l.text.subarray(0, 32)));
          if (idx === null) this.fail(`bad memo index in ${opcodeName(op)}`, at);
          if (op === 0x67) this.get(idx, at);
          else {
            if (idx < 0) this.fail('negative PUT argument', at);
            this.put(idx, at);
          }
          this.pos = base + l.next;
          break;
        }
        case 0x68: // BINGET
        case 0x71: // BINPUT
          if (need(i + 1, 1, op)) return this.needMore();
          if (op === 0x68) this.get(buf[i + 1] ?? 0, at);
          else this.put(buf[i + 1] ?? 0, at);
          this.pos += 2;
          break;
        case 0x6a: // LONG_BINGET
        case 0x72: // LONG_BINPUT
          if (need(i + 1, 4, op)) return this.needMore();
          if (op === 0x6a) this.get(dv.getUint32(i + 1, true), at);
          else this.put(dv.getUint32(i + 1, true), at);
          this.pos += 5;
          break;
        case 0x94: // MEMOIZE
          this.put(f.memo.size, at);
          this.pos += 1;
          break;
        case 0x6f: {
          // OBJ
          const m = this.marker(at);
          if (stack.length - m < 1) this.underflow(at);
          const cls = stack[m] as PV;
          const args = popContainer('tuple', stack, m + 1);
          stack.length = m;
          this.push(this.call(cls, args, at, 'OBJ'), at);
          this.pos += 1;
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop(at);
          const cls = this.pop(at);
          this.push(this.call(cls, args, at, 'NEWOBJ'), at);
          this.pos += 1;
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          this.pop(at); // kwargs
          const args = this.pop(at);
          const cls = this.pop(at);
          this.push(this.call(cls, args, at, 'NEWOBJ_EX'), at);
          this.pos += 1;
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop(at);
          const module = this.pop(at);
          if (module.t === 'str' && name.t === 'str' && module.v !== null && name.v !== null) {
            this.push(this.global(module.v, name.v, at, 'STACK_GLOBAL'), at);
          } else {
            this.hooks.report(
              'pickle.unresolved-global',
              `STACK_GLOBAL with module ${describe(module)} and name ${describe(name)}`,
              at,
            );
            this.push({ t: 'opaque', what: 'an unresolved global' }, at);
          }
          this.pos += 1;
          break;
        }
        case 0x80: {
          // PROTO
          if (need(i + 1, 1, op)) return this.needMore();
          const p = buf[i + 1] ?? 0;
          if (p > HIGHEST_PROTOCOL) this.fail(`unsupported pickle protocol: ${p}`, at);
          this.proto = Math.max(this.proto, p);
          this.pos += 2;
          break;
        }
        case 0x95: {
          // FRAME
          if (need(i + 1, 8, op)) return this.needMore();
          const n = dv.getBigUint64(i + 1, true);
          if (BigInt(at + 9) + n > BigInt(end))
            this.fail('pickle data was truncated (FRAME longer than the data)', at);
          this.pos += 9;
          break;
        }
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: {
          // EXT4
          const n = op === 0x82 ? 1 : op === 0x83 ? 2 : 4;
          if (need(i + 1, n, op)) return this.needMore();
          const code =
            n === 1 ? (buf[i + 1] ?? 0) : n === 2 ? dv.getUint16(i + 1, true) : dv.getInt32(i + 1, true);
          if (code <= 0) this.fail('EXT specifies code <= 0', at);
          this.hooks.report(
            'pickle.ext-code',
            `${opcodeName(op)} ${code} imports whatever the loader registered under that extension code`,
            at,
          );
          this.push({ t: 'opaque', what: `extension code ${code}` }, at);
          this.pos += 1 + n;
          break;
        }
        case 0x97: // NEXT_BUFFER
          this.hooks.report(
            'pickle.out-of-band-buffer',
            'NEXT_BUFFER takes data from outside the pickle',
            at,
          );
          this.push({ t: 'opaque', what: 'an out-of-band buffer' }, at);
          this.pos += 1;
          break;
        case 0x98: // READONLY_BUFFER
          this.peek(at);
          this.pos += 1;
          break;
        default:
          this.fail(`invalid load key ${opcodeName(op)}`, at);
      }
    }
  }

  /** The opcode at `pos` is incomplete: it will be walked (and counted) again with more data. */
  private needMore(): WalkStatus {
    this.opcodes--;
    return { kind: 'need' };
  }

  private fence(): number {
    return this.f.marks[this.f.marks.length - 1] ?? 0;
  }

  private underflow(at: number): never {
    this.fail('unpickling stack underflow', at);
  }

  private push(v: PV, at: number): void {
    if (this.f.stack.length >= this.limits.maxPickleStack) {
      this.limit(`stack deeper than ${this.limits.maxPickleStack}`, at);
    }
    this.f.stack.push(v);
  }

  private pop(at: number): PV {
    if (this.f.stack.length <= this.fence()) this.underflow(at);
    return this.f.stack.pop() as PV;
  }

  private peek(at: number): PV {
    if (this.f.stack.length <= this.fence()) this.underflow(at);
    return this.f.stack[this.f.stack.length - 1] as PV;
  }

  private marker(at: number): number {
    const m = this.f.marks.pop();
    if (m === undefined) this.fail('could not find MARK', at);
    return m;
  }

  private get(idx: number, at: number): void {
    const v = this.f.memo.get(idx);
    if (v === undefined) this.fail(`memo value not found at index ${idx}`, at);
    this.push(v, at);
  }

  private put(idx: number, at: number): void {
    const v = this.peek(at);
    if (!this.f.memo.has(idx) && this.f.memo.size >= this.limits.maxPickleMemo) {
      this.limit(`more than ${this.limits.maxPickleMemo} memo entries`, at);
    }
    this.f.memo.set(idx, v);
  }

  private pushText(
    buf: Uint8Array,
    start: number,
    n: number,
    base: number,
    end: number,
    op: number,
    enc: 'utf8' | 'latin1',
  ): void {
    const abs = base + start;
    if (abs + n > end) this.fail(`pickle data was truncated in ${opcodeName(op)}`, base + start - 1);
    if (n <= STR_RETAIN) {
      // The caller made sure short strings are wholly inside `buf`: they are decoded and kept.
      const b = buf.subarray(start, start + n);
      const v = enc === 'utf8' ? utf8.decode(b) : String.fromCharCode(...b);
      this.push({ t: 'str', v, off: enc === 'utf8' ? abs : -1, len: n }, abs);
    } else {
      this.push({ t: 'str', v: null, off: enc === 'utf8' ? abs : -1, len: n }, abs);
    }
  }

  private global(rawModule: string, name: string, at: number, via: string): PV {
    if (DOTTED.test(rawModule) && DOTTED.test(name)) this.wellFormedImports++;
    const key = `${rawModule}\n${name}`;
    let cls = this.classCache.get(key);
    if (cls === undefined) {
      cls = classifyGlobal(rawModule, name);
      this.classCache.set(key, cls);
      const module = normalizeModule(rawModule);
      const shown = module === rawModule ? `${module}.${name}` : `${rawModule}.${name} (${module}.${name})`;
      if (cls.level === 'dangerous') {
        this.hooks.report('pickle.dangerous-global', `${via} imports ${shown}: ${cls.reason}`, at);
      } else if (cls.level === 'unknown') {
        this.hooks.report('pickle.unknown-global', `${via} imports ${shown}: ${cls.reason}`, at);
      }
    }
    return { t: 'global', module: normalizeModule(rawModule), name, cls };
  }

  private call(fn: PV, args: PV, at: number, via: string): PV {
    if (fn.t === 'call' || fn.t === 'opaque') {
      this.hooks.report('pickle.indirect-call', `${via} calls ${describe(fn)}`, at);
    } else if (fn.t === 'global') {
      const qualified = `${fn.module}.${fn.name}`;
      if (fn.cls.nestedLoader === true) this.nestedLoad(qualified, fn.cls, args, at);
      else if (fn.cls.level === 'conditional') this.checkCodecs(qualified, args, at);
    }
    return { t: 'call', fn, args, state: null };
  }

  private checkCodecs(qualified: string, args: PV, at: number): void {
    const items = 'items' in args ? args.items : [];
    const text = items[0];
    const enc = items[1];
    const ok =
      args.t === 'tuple' &&
      args.n === 2 &&
      text?.t === 'str' &&
      enc?.t === 'str' &&
      (enc.v === 'latin1' || enc.v === 'latin-1');
    if (!ok)
      this.hooks.report(
        'pickle.codecs-unusual',
        `${qualified} called with ${describe(args)} ${describe(enc)}`,
        at,
      );
  }

  /** Records the payload handed to a nested deserialiser, when it is bytes the driver can rebuild. */
  private nestedLoad(qualified: string, cls: GlobalClass, args: PV, at: number): void {
    if (cls.level === 'conditional') {
      this.hooks.report('pickle.nested-loader', `${qualified} deserialises nested bytes`, at);
    }
    let arg = 'items' in args ? args.items[0] : undefined;
    // pickle.load(io.BytesIO(b)) and torch.load(io.BytesIO(b)): look through the file wrapper.
    if (
      arg?.t === 'call' &&
      arg.fn.t === 'global' &&
      /^_?io$/.test(arg.fn.module) &&
      arg.fn.name === 'BytesIO'
    ) {
      arg = 'items' in arg.args ? arg.args.items[0] : undefined;
    }
    let payload: Omit<NestedPayload, 'loader' | 'offset'> | null = null;
    if (arg?.t === 'bytes') payload = { region: { off: arg.off, len: arg.len }, transform: 'none' };
    else if (
      arg?.t === 'call' &&
      arg.fn.t === 'global' &&
      /^_?codecs$/.test(arg.fn.module) &&
      arg.fn.name === 'encode' &&
      'items' in arg.args
    ) {
      const text = arg.args.items[0];
      if (text?.t === 'str' && text.off >= 0)
        payload = { region: { off: text.off, len: text.len }, transform: 'latin1' };
    }
    if (payload === null) {
      this.hooks.report(
        'pickle.nested-unscanned',
        `${qualified} is fed ${describe(arg)}, which cannot be rebuilt`,
        at,
      );
    } else if (
      this.nested.some((n) => n.region.off === payload.region.off && n.transform === payload.transform)
    ) {
      // The same bytes fetched again from the memo: scanning them once is enough (and repeats would let a
      // memoised payload multiply the work at every nesting level).
      return;
    } else if (this.nested.length >= this.limits.maxNestedPickles) {
      this.hooks.report(
        'pickle.nested-unscanned',
        `more than ${this.limits.maxNestedPickles} nested payloads`,
        at,
      );
    } else {
      this.nested.push({ loader: qualified, offset: at, ...payload });
    }
  }

  private build(target: PV, state: PV, at: number): void {
    if (target.t === 'global') {
      this.hooks.report('pickle.build-on-global', `BUILD sets state on ${describe(target)} itself`, at);
    }
    // State is a dict, or (dict, slotstate) for objects with __slots__.
    const dicts: Container[] = [];
    if (state.t === 'dict') dicts.push(state);
    else if (state.t === 'tuple') for (const x of state.items) if (x.t === 'dict') dicts.push(x);
    for (const d of dicts) {
      for (let k = 0; k < d.items.length; k += 2) {
        const key = d.items[k];
        if (key?.t === 'str' && key.v !== null && isDunder(key.v)) {
          this.hooks.report('pickle.build-dunder-state', `BUILD sets ${key.v} on ${describe(target)}`, at);
        }
      }
    }
    if (target.t !== 'call') return;
    target.state = state;
    const fn = target.fn;
    if (fn.t === 'global' && fn.name === 'NumpyArrayWrapper' && fn.module.endsWith('joblib.numpy_pickle')) {
      this.joblibArray(state, at);
    }
  }

  /**
   * joblib's NumpyUnpickler reads an array's raw bytes from the stream right after the BUILD of its
   * NumpyArrayWrapper (object arrays: a whole nested pickle). Skip exactly what it reads, or stop.
   */
  private joblibArray(state: PV, at: number): void {
    this.joblib = true;
    const field = (name: string): PV | undefined => {
      if (state.t !== 'dict') return undefined;
      for (let k = 0; k + 1 < state.items.length; k += 2) {
        const key = state.items[k];
        if (key?.t === 'str' && key.v === name) return state.items[k + 1];
      }
      return undefined;
    };
    const shape = field('shape');
    const dtype = numpyDtype(field('dtype'));
    const alignment = field('numpy_array_alignment_bytes');
    let count: bigint | null = 1n;
    if (shape?.t === 'tuple' && shape.n === shape.items.length) {
      for (const d of shape.items) {
        if (d.t !== 'int' || d.v === null || d.v < 0) count = null;
        else if (count !== null) count *= BigInt(d.v);
      }
    } else count = null;
    if (count === null || dtype === null) {
      this.hooks.report(
        'joblib.unparsed-array',
        `cannot size the array after NumpyArrayWrapper (shape ${describe(shape)}, dtype ${describe(field('dtype'))})`,
        at,
      );
      throw new Stop({ kind: 'halt' });
    }
    if (dtype.hasObject) {
      // pickle.load(file) on the same stream: a fresh unpickler (stack, marks, memo) until its STOP.
      this.frames.push(this.f);
      this.f = { stack: [], marks: [], memo: new Memo() };
      return;
    }
    const nbytes = count * BigInt(dtype.itemsize);
    if (nbytes > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('joblib array larger than any file', at);
    this.pendingArray = { padded: alignment !== undefined && alignment.t !== 'none', nbytes: Number(nbytes) };
  }
}

/**
 * Item size of a pickled `numpy.dtype`: REDUCE(numpy.dtype, ('f8', False, True)) then BUILD with
 * (version, byteorder, subarray, names, fields, elsize, alignment, flags). Flexible types carry their size in
 * elsize; bit 0 of flags (NPY_ITEM_REFCOUNT) marks dtypes holding Python objects.
 */
function numpyDtype(v: PV | undefined): { itemsize: number; hasObject: boolean } | null {
  if (v?.t !== 'call' || v.fn.t !== 'global' || v.fn.name !== 'dtype' || !v.fn.module.startsWith('numpy'))
    return null;
  const code = 'items' in v.args ? v.args.items[0] : undefined;
  if (code?.t !== 'str' || code.v === null) return null;
  const m = /^[<>|=]?([a-zA-Z])(\d*)$/.exec(code.v);
  if (m === null) return null;
  const kind = m[1] ?? '';
  const digits = m[2] === undefined || m[2] === '' ? null : Number(m[2]);
  const st = v.state !== null && 'items' in v.state ? v.state.items : [];
  const elsize = st[5]?.t === 'int' ? st[5].v : null;
  const flags = st[7]?.t === 'int' ? st[7].v : null;
  const hasObject = kind === 'O' || (flags !== null && (flags & 1) === 1);
  let itemsize: number | null;
  if (elsize !== null && elsize > 0) itemsize = elsize;
  else if (digits === null) itemsize = null;
  else itemsize = kind === 'U' ? digits * 4 : digits;
  if (itemsize === null && !hasObject) return null;
  return { itemsize: itemsize ?? 8, hasObject };
}
