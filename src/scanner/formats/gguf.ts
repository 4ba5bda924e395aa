import type { ScanContext } from '../context.ts';
import { Cursor, TruncatedError, type ByteSource } from '../source.ts';

/*
 * GGUF (llama.cpp): magic, version, tensor and key/value counts, typed metadata, tensor infos, aligned data.
 * Header fields have been the vector of several llama.cpp heap overflows (counts and lengths trusted against
 * the file size), and chat templates the vector of Jinja template injection; both are checked here. Only the
 * header is read.
 */

class Malformed extends Error {}

/** Element sizes of the scalar metadata types; 8 (string) and 9 (array) are variable. */
const SCALAR_SIZE: ReadonlyMap<number, number> = new Map([
  [0, 1],
  [1, 1],
  [2, 2],
  [3, 2],
  [4, 4],
  [5, 4],
  [6, 4],
  [7, 1],
  [10, 8],
  [11, 8],
  [12, 8],
]);

/** ggml types whose block layout is settled: [bytes per block, elements per block]. */
const GGML_BLOCK: ReadonlyMap<number, readonly [number, number]> = new Map([
  [0, [4, 1]],
  [1, [2, 1]],
  [2, [18, 32]],
  [3, [20, 32]],
  [6, [22, 32]],
  [7, [24, 32]],
  [8, [34, 32]],
  [9, [36, 32]],
  [10, [84, 256]],
  [11, [110, 256]],
  [12, [144, 256]],
  [13, [176, 256]],
  [14, [210, 256]],
  [15, [292, 256]],
  [24, [1, 1]],
  [25, [2, 1]],
  [26, [4, 1]],
  [27, [8, 1]],
  [28, [8, 1]],
  [30, [2, 1]],
]);
const GGML_TYPE_MAX = 41;
const MAX_DIMS = 4;

/** Jinja reaching for Python internals: dunder attributes, the attr filter, or escaped underscores. */
const TEMPLATE_INJECTION =
  /__[A-Za-z_]+__|\|\s*attr\s*\(|\\x5f|\\u005f|\\137|\b(?:popen|subprocess|__import__)\b/;

export async function scanGguf(src: ByteSource, ctx: ScanContext): Promise<void> {
  const cur = new Cursor(src, 4);
  try {
    await walk(cur, ctx);
  } catch (e) {
    if (e instanceof Malformed) ctx.add('gguf.malformed', e.message, cur.pos);
    else if (e instanceof TruncatedError) ctx.add('gguf.malformed', 'header truncated', e.offset);
    else throw e;
  }
}

async function walk(cur: Cursor, ctx: ScanContext): Promise<void> {
  const version = await cur.u32();
  if (version === 1) ctx.add('gguf.legacy-version', 'GGUF version 1');
  else if (version !== 2 && version !== 3) throw new Malformed(`unknown GGUF version ${version}`);
  const wide = version >= 2;
  const count = async (): Promise<number> => (wide ? Number(await cur.u64()) : await cur.u32());
  const nTensors = await count();
  const nKv = await count();
  const lenBytes = wide ? 8 : 4;
  // Smallest possible key/value: empty key, type, one-byte value. Smallest tensor info: empty name, no dims,
  // type and offset.
  if (nKv * (lenBytes + 5) > cur.remaining)
    throw new Malformed(`${nKv} metadata entries cannot fit in the file`);
  if (nTensors * (lenBytes + 16) > cur.remaining)
    throw new Malformed(`${nTensors} tensors cannot fit in the file`);

  const string = async (what: string): Promise<{ text: string; len: number }> => {
    const len = await count();
    if (len > ctx.limits.maxGgufString || len > cur.remaining)
      throw new Malformed(`${what} length ${len} out of bounds`);
    const b = await cur.bytes(Math.min(len, 1024 * 1024));
    cur.skip(len - b.length);
    return { text: Buffer.from(b).toString('utf8'), len };
  };

  let alignment = 32;
  const keys = new Set<string>();
  const value = async (type: number, key: string, depth: number): Promise<string | number | null> => {
    const size = SCALAR_SIZE.get(type);
    if (size !== undefined) {
      if (type === 4 || type === 5) return cur.u32();
      cur.skip(size);
      if (cur.pos > cur.size) throw new Malformed(`value of ${key} runs past the end`);
      return null;
    }
    if (type === 8) return (await string(`value of ${key}`)).text;
    if (type !== 9) throw new Malformed(`unknown metadata type ${type} for ${key}`);
    if (depth > 0) throw new Malformed(`nested array in ${key}`);
    const elem = await cur.u32();
    const n = await count();
    const min = SCALAR_SIZE.get(elem) ?? lenBytes;
    if (n > ctx.limits.maxGgufArray || n * min > cur.remaining)
      throw new Malformed(`array ${key} of ${n} items out of bounds`);
    if (SCALAR_SIZE.has(elem)) cur.skip(n * min);
    else for (let i = 0; i < n; i++) await value(elem, key, depth + 1);
    return null;
  };

  for (let i = 0; i < nKv; i++) {
    const { text: key } = await string('metadata key');
    if (keys.has(key)) throw new Malformed(`duplicate metadata key ${key}`);
    keys.add(key);
    const v = await value(await cur.u32(), key, 0);
    if (key === 'general.alignment') {
      if (typeof v !== 'number' || v === 0 || (v & (v - 1)) !== 0)
        throw new Malformed('general.alignment is not a power of two');
      alignment = v;
    }
    if (key.startsWith('tokenizer.chat_template') && typeof v === 'string') {
      const m = TEMPLATE_INJECTION.exec(v);
      if (m !== null) ctx.add('gguf.template-injection', `${key} contains ${JSON.stringify(m[0])}`);
    }
  }

  const tensors: { name: string; offset: bigint; bytes: bigint | null }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const { text: name } = await string('tensor name');
    const nDims = await cur.u32();
    if (nDims > MAX_DIMS) throw new Malformed(`tensor ${name} has ${nDims} dimensions`);
    let numel = 1n;
    for (let d = 0; d < nDims; d++) numel *= wide ? await cur.u64() : BigInt(await cur.u32());
    const type = await cur.u32();
    if (type >= GGML_TYPE_MAX) throw new Malformed(`tensor ${name} has unknown ggml type ${type}`);
    const offset = await cur.u64();
    const block = GGML_BLOCK.get(type);
    let bytes: bigint | null = null;
    if (block !== undefined) {
      const [bsize, belems] = block;
      if (numel % BigInt(belems) !== 0n)
        throw new Malformed(`tensor ${name} is not a whole number of blocks`);
      bytes = (numel / BigInt(belems)) * BigInt(bsize);
    }
    tensors.push({ name, offset, bytes });
  }
  const dataStart = BigInt(Math.ceil(cur.pos / alignment) * alignment);
  const dataLen = BigInt(cur.size) - dataStart;
  for (const t of tensors) {
    if (t.offset % BigInt(alignment) !== 0n) throw new Malformed(`tensor ${t.name} offset is not aligned`);
    if (t.offset + (t.bytes ?? 0n) > dataLen)
      throw new Malformed(`tensor ${t.name} data lies past the end of the file`);
  }
}
