import type { ScanContext } from '../context.ts';
import { JsonNumber, JsonObject, JsonSyntaxError, parseJson, type JsonValue } from '../json.ts';
import { decodeUtf8Strict, type ByteSource } from '../source.ts';

/**
 * Safetensors: u64 little-endian header length N, N bytes of JSON, then the data buffer. Checked as strictly
 * as the reference Rust implementation and more: everything a lenient reader might accept differently is a
 * finding. Only the header is read; the data buffer (often many GB) is validated by arithmetic alone.
 */

/** Bits per element of every dtype the reference implementation knows. */
const DTYPE_BITS: ReadonlyMap<string, number> = new Map([
  ['BOOL', 8],
  ['F4', 4],
  ['F6_E2M3', 6],
  ['F6_E3M2', 6],
  ['U8', 8],
  ['I8', 8],
  ['F8_E5M2', 8],
  ['F8_E4M3', 8],
  ['F8_E8M0', 8],
  ['F8_E4M3FNUZ', 8],
  ['F8_E5M2FNUZ', 8],
  ['I16', 16],
  ['U16', 16],
  ['F16', 16],
  ['BF16', 16],
  ['I32', 32],
  ['U32', 32],
  ['F32', 32],
  ['C64', 64],
  ['F64', 64],
  ['I64', 64],
  ['U64', 64],
]);

const TENSOR_FIELDS = new Set(['dtype', 'shape', 'data_offsets']);
const JS_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function nonNegInt(v: JsonValue | undefined): bigint | null {
  if (!(v instanceof JsonNumber)) return null;
  const n = v.integer();
  return n !== null && n >= 0n ? n : null;
}

interface Span {
  name: string;
  begin: bigint;
  end: bigint;
}

function checkTensor(ctx: ScanContext, name: string, v: JsonValue): Span | null {
  const bad = (why: string): null => {
    ctx.add('safetensors.invalid-tensor', `${JSON.stringify(name)}: ${why}`);
    return null;
  };
  if (!(v instanceof JsonObject)) return bad('entry is not an object');
  const extra = [...v.map.keys()].filter((k) => !TENSOR_FIELDS.has(k));
  if (extra.length > 0)
    ctx.add('safetensors.unknown-field', `${JSON.stringify(name)} has fields ${extra.join(', ')}`);
  const dtype = v.map.get('dtype');
  if (typeof dtype !== 'string') return bad('dtype is not a string');
  const bits = DTYPE_BITS.get(dtype);
  if (bits === undefined) return bad(`unknown dtype ${JSON.stringify(dtype)}`);
  const shape = v.map.get('shape');
  if (!Array.isArray(shape)) return bad('shape is not a list');
  let numel = 1n;
  for (const d of shape) {
    const n = nonNegInt(d);
    if (n === null) return bad('shape has an entry that is not a non-negative integer');
    numel *= n;
  }
  const offs = v.map.get('data_offsets');
  if (!Array.isArray(offs) || offs.length !== 2) return bad('data_offsets is not [begin, end]');
  const begin = nonNegInt(offs[0]);
  const end = nonNegInt(offs[1]);
  if (begin === null || end === null) return bad('data_offsets are not non-negative integers');
  if (end < begin) return bad('data_offsets end before they begin');
  const totalBits = numel * BigInt(bits);
  if (totalBits % 8n !== 0n) return bad(`${numel} elements of ${bits} bits do not fill whole bytes`);
  if (end - begin !== totalBits / 8n) {
    ctx.add(
      'safetensors.size-mismatch',
      `${JSON.stringify(name)}: ${end - begin} bytes for shape [${shape.map((d) => (d instanceof JsonNumber ? d.text : '?')).join(', ')}] of ${dtype} (${totalBits / 8n} expected)`,
    );
  }
  return { name, begin, end };
}

export async function scanSafetensors(src: ByteSource, ctx: ScanContext): Promise<void> {
  const lenBytes = await src.read(0, 8);
  if (lenBytes.length < 8) {
    ctx.add('safetensors.malformed-header', 'file shorter than the 8-byte header length');
    return;
  }
  const n = Buffer.from(lenBytes).readBigUInt64LE(0);
  if (n > BigInt(ctx.limits.maxSafetensorsHeader)) {
    ctx.add(
      'safetensors.header-too-large',
      `header length ${n} above the cap of ${ctx.limits.maxSafetensorsHeader}`,
    );
    return;
  }
  if (n + 8n > BigInt(src.size)) {
    ctx.add(
      'safetensors.header-too-large',
      `header length ${n} runs past the end of the ${src.size}-byte file`,
    );
    return;
  }
  const headerLen = Number(n);
  const text = decodeUtf8Strict(await src.read(8, headerLen));
  if (text === null) {
    ctx.add('safetensors.malformed-header', 'header is not valid UTF-8');
    return;
  }
  if (!text.startsWith('{')) ctx.add('safetensors.malformed-header', 'header does not start with "{"');
  let header: JsonValue;
  try {
    const parsed = parseJson(text);
    header = parsed.value;
    for (const d of parsed.duplicates)
      ctx.add('safetensors.duplicate-key', `key ${JSON.stringify(d)} appears more than once`);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    ctx.add('safetensors.malformed-header', `header is not JSON: ${e.message}`);
    return;
  }
  if (!(header instanceof JsonObject)) {
    ctx.add('safetensors.malformed-header', 'header is not a JSON object');
    return;
  }
  const spans: Span[] = [];
  for (const [name, v] of header.map) {
    if (name === '__metadata__') {
      const ok = v instanceof JsonObject && [...v.map.values()].every((x) => typeof x === 'string');
      if (!ok) ctx.add('safetensors.invalid-metadata', '__metadata__ must map strings to strings');
      continue;
    }
    if (JS_KEYS.has(name)) ctx.add('safetensors.suspicious-key', `tensor named ${JSON.stringify(name)}`);
    const span = checkTensor(ctx, name, v);
    if (span !== null) spans.push(span);
  }
  // The reference implementation sorts by offsets and requires each tensor to start where the previous
  // ended, the first at 0, and the last to end exactly at the end of the file.
  spans.sort((a, b) =>
    a.begin < b.begin ? -1 : a.begin > b.begin ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0,
  );
  let cursor = 0n;
  let prev = '(start of data)';
  for (const s of spans) {
    if (s.begin < cursor) {
      ctx.add('safetensors.layout', `${JSON.stringify(s.name)} overlaps ${prev}`);
    } else if (s.begin > cursor) {
      ctx.add('safetensors.layout', `gap of ${s.begin - cursor} bytes before ${JSON.stringify(s.name)}`);
    }
    if (s.end > cursor) {
      cursor = s.end;
      prev = JSON.stringify(s.name);
    }
  }
  const dataLen = BigInt(src.size) - 8n - n;
  if (cursor > dataLen) {
    ctx.add('safetensors.layout', `tensors extend ${cursor - dataLen} bytes past the end of the file`);
  } else if (cursor < dataLen) {
    ctx.add(
      'safetensors.trailing-bytes',
      `${dataLen - cursor} bytes after the last tensor`,
      Number(8n + n + cursor),
    );
  }
}
