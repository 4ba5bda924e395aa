import type { ScanContext } from '../context.ts';
import { sliceSource, type ByteSource } from '../source.ts';
import { walkPickleStream } from './pickle.ts';

/**
 * NumPy `.npy`: magic, version, header length, then a Python dict literal with exactly the keys descr,
 * fortran_order and shape (what `numpy.lib.format` accepts via `ast.literal_eval`). An object dtype means the
 * data is a pickle of the array, loaded by `np.load(allow_pickle=True)`; it is walked like any pickle.
 */

type Lit = string | number | boolean | null | Lit[] | { tuple: Lit[] } | Map<string, Lit>;

class LiteralError extends Error {}

/** Parser for the Python literal subset npy headers use. */
function parseLiteral(text: string): Lit {
  let i = 0;
  const fail: (msg: string) => never = (msg) => {
    throw new LiteralError(`${msg} at ${i}`);
  };
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i] ?? '')) i++;
  };
  const seq = (close: string): Lit[] => {
    const out: Lit[] = [];
    for (;;) {
      ws();
      if (text[i] === close) {
        i++;
        return out;
      }
      out.push(value());
      ws();
      if (text[i] === ',') i++;
      else if (text[i] !== close) fail(`expected "," or "${close}"`);
    }
  };
  const value = (): Lit => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = text.slice(i + 1, end);
      if (s.includes('\\')) fail('escapes are not used in npy headers');
      i = end + 1;
      return s;
    }
    if (c === '(') {
      i++;
      return { tuple: seq(')') };
    }
    if (c === '[') {
      i++;
      return seq(']');
    }
    if (c === '{') {
      i++;
      const m = new Map<string, Lit>();
      for (;;) {
        ws();
        if (text[i] === '}') {
          i++;
          return m;
        }
        const k = value();
        if (typeof k !== 'string') fail('dict key is not a string');
        ws();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        if (m.has(k)) fail(`duplicate key ${k}`);
        m.set(k, value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') fail('expected "," or "}"');
      }
    }
    for (const [word, v] of [
      ['True', true],
      ['False', false],
      ['None', null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    const m = /^-?\d+L?/.exec(text.slice(i, i + 32));
    if (m === null) fail('unexpected character');
    i += m[0].length;
    return Number(m[0].replace('L', ''));
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** Item size and object-ness of a descr (type string or structured list). */
function descrInfo(d: Lit): { itemsize: number; hasObject: boolean } | null {
  if (typeof d === 'string') {
    const m = /^([<>|=]?)([?bBhHiIlLqQpPefdgFDGSaUVOMmcu])(\d*)(\[\w+\])?$/.exec(d);
    if (m === null) return null;
    const kind = m[2] ?? '';
    const n = m[3] === undefined || m[3] === '' ? null : Number(m[3]);
    if (kind === 'O') return { itemsize: 8, hasObject: true };
    const fixed: Record<string, number> = {
      '?': 1,
      b: 1,
      B: 1,
      h: 2,
      H: 2,
      e: 2,
      f: 4,
      d: 8,
      g: 16,
      F: 8,
      D: 16,
      G: 32,
    };
    const size = n ?? fixed[kind] ?? null;
    if (size === null) return null;
    return { itemsize: kind === 'U' ? size * 4 : size, hasObject: false };
  }
  if (Array.isArray(d)) {
    let itemsize = 0;
    let hasObject = false;
    for (const f of d) {
      const parts = f !== null && typeof f === 'object' && 'tuple' in f ? f.tuple : null;
      if (parts === null || parts.length < 2 || typeof parts[0] !== 'string') return null;
      const sub = descrInfo(parts[1] ?? null);
      if (sub === null) return null;
      let count = 1;
      const shape = parts[2];
      if (shape !== undefined) {
        const dims =
          typeof shape === 'number'
            ? [shape]
            : shape !== null && typeof shape === 'object' && 'tuple' in shape
              ? shape.tuple
              : null;
        if (dims === null || !dims.every((x) => typeof x === 'number' && x >= 0)) return null;
        count = (dims as number[]).reduce((a, b) => a * b, 1);
      }
      itemsize += sub.itemsize * count;
      hasObject ||= sub.hasObject;
    }
    return { itemsize, hasObject };
  }
  return null;
}

export async function scanNpy(src: ByteSource, ctx: ScanContext): Promise<void> {
  const pre = await src.read(0, 12);
  const major = pre[6];
  const minor = pre[7];
  if (pre.length < 10 || minor !== 0 || (major !== 1 && major !== 2 && major !== 3)) {
    ctx.add('npy.malformed', `unsupported .npy version ${major ?? '?'}.${minor ?? '?'}`);
    return;
  }
  const lenBytes = major === 1 ? 2 : 4;
  const hlen = major === 1 ? (pre[8] ?? 0) | ((pre[9] ?? 0) << 8) : Buffer.from(pre).readUInt32LE(8);
  const start = 8 + lenBytes;
  if (start + hlen > src.size || hlen > 1024 * 1024) {
    ctx.add('npy.malformed', 'header length runs past the end of the file');
    return;
  }
  const raw = Buffer.from(await src.read(start, hlen));
  const text = raw.toString(major === 3 ? 'utf8' : 'latin1');
  if (!text.endsWith('\n')) ctx.add('npy.malformed', 'header does not end with a newline');
  let header: Lit;
  try {
    header = parseLiteral(text);
  } catch (e) {
    if (!(e instanceof LiteralError)) throw e;
    ctx.add('npy.malformed', `header is not a Python literal: ${e.message}`);
    return;
  }
  const keys = header instanceof Map ? [...header.keys()].sort().join(',') : '';
  if (!(header instanceof Map) || keys !== 'descr,fortran_order,shape') {
    ctx.add(
      'npy.malformed',
      `header must be a dict of exactly descr, fortran_order, shape (got ${keys || typeof header})`,
    );
    return;
  }
  const shapeLit = header.get('shape');
  const dims =
    shapeLit !== null && typeof shapeLit === 'object' && 'tuple' in shapeLit ? shapeLit.tuple : null;
  const info = descrInfo(header.get('descr') ?? null);
  if (
    typeof header.get('fortran_order') !== 'boolean' ||
    dims === null ||
    !dims.every((d) => typeof d === 'number' && d >= 0)
  ) {
    ctx.add('npy.malformed', 'fortran_order must be a bool and shape a tuple of non-negative ints');
    return;
  }
  if (info === null) {
    ctx.add('npy.malformed', `unknown descr ${JSON.stringify(header.get('descr'))}`);
    return;
  }
  const dataAt = start + hlen;
  if (info.hasObject) {
    ctx.add('npy.object-dtype', 'object array: the data is a pickle');
    await walkPickleStream(sliceSource(src, dataAt, src.size - dataAt), ctx);
    return;
  }
  const count = (dims as number[]).reduce((a, b) => a * b, 1);
  const expected = count * info.itemsize;
  if (expected !== src.size - dataAt) {
    ctx.add('npy.size-mismatch', `${src.size - dataAt} data bytes for ${expected} expected`, dataAt);
  }
}
