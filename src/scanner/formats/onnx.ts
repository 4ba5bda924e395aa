import type { ScanContext } from '../context.ts';
import { Cursor, TruncatedError, type ByteSource } from '../source.ts';
import { pathEscapes } from './archive.ts';

/*
 * ONNX ModelProto, walked straight off the protobuf wire format. A protobuf library would need the compiled
 * onnx.proto schema (not a dependency here) and would materialise every initializer's raw_data; this walker
 * knows just the fields that lead to tensors, nodes and functions, and skips everything else by length, so
 * a 2 GB model costs a few reads.
 */

type MsgType =
  | 'model'
  | 'graph'
  | 'node'
  | 'attribute'
  | 'tensor'
  | 'sparse'
  | 'function'
  | 'training'
  | 'opset'
  | 'entry';

type Spec = { kind: 'msg'; type: MsgType } | { kind: 'str'; key: string } | { kind: 'int'; key: string };

const msg = (type: MsgType): Spec => ({ kind: 'msg', type });
const str = (key: string): Spec => ({ kind: 'str', key });
const int = (key: string): Spec => ({ kind: 'int', key });

/** The onnx.proto fields that matter, by message and field number. */
const SCHEMA: Readonly<Record<MsgType, Readonly<Record<number, Spec>>>> = {
  model: { 7: msg('graph'), 8: msg('opset'), 20: msg('training'), 25: msg('function') },
  graph: { 1: msg('node'), 5: msg('tensor'), 15: msg('sparse') },
  node: { 4: str('op_type'), 5: msg('attribute'), 7: str('domain') },
  attribute: {
    5: msg('tensor'),
    6: msg('graph'),
    10: msg('tensor'),
    11: msg('graph'),
    22: msg('sparse'),
    23: msg('sparse'),
  },
  tensor: { 8: str('name'), 13: msg('entry'), 14: int('data_location') },
  sparse: { 1: msg('tensor'), 2: msg('tensor') },
  function: { 7: msg('node'), 10: str('domain') },
  training: { 1: msg('graph'), 2: msg('graph') },
  opset: { 1: str('domain') },
  entry: { 1: str('key'), 2: str('value') },
};

const STANDARD_DOMAINS = new Set([
  '',
  'ai.onnx',
  'ai.onnx.ml',
  'ai.onnx.training',
  'ai.onnx.preview.training',
]);
const MAX_DEPTH = 64;
const MAX_STRING = 64 * 1024;

class Malformed extends Error {}

interface Msg {
  type: MsgType;
  fields: Map<string, string | bigint>;
  children: Msg[];
}

async function walk(cur: Cursor, end: number, type: MsgType, depth: number): Promise<Msg> {
  if (depth > MAX_DEPTH) throw new Malformed(`messages nested deeper than ${MAX_DEPTH}`);
  const out: Msg = { type, fields: new Map(), children: [] };
  const schema = SCHEMA[type];
  while (cur.pos < end) {
    const tag = await cur.varint();
    const field = Number(tag >> 3n);
    const wt = Number(tag & 7n);
    const spec = schema[field];
    if (field === 0) throw new Malformed(`field number 0 at ${cur.pos}`);
    switch (wt) {
      case 0: {
        const v = await cur.varint();
        if (spec?.kind === 'int') out.fields.set(spec.key, v);
        else if (spec !== undefined) throw new Malformed(`field ${field} of ${type} has the wrong wire type`);
        break;
      }
      case 1:
        cur.skip(8);
        break;
      case 5:
        cur.skip(4);
        break;
      case 2: {
        const len = Number(await cur.varint());
        if (cur.pos + len > end) throw new Malformed(`field ${field} of ${type} runs past its message`);
        if (spec?.kind === 'msg') {
          out.children.push(await walk(cur, cur.pos + len, spec.type, depth + 1));
        } else if (spec?.kind === 'str') {
          const b = await cur.bytes(Math.min(len, MAX_STRING));
          cur.skip(len - b.length);
          out.fields.set(spec.key, Buffer.from(b).toString('utf8'));
        } else if (spec?.kind === 'int') {
          throw new Malformed(`field ${field} of ${type} has the wrong wire type`);
        } else cur.skip(len);
        break;
      }
      default:
        throw new Malformed(`wire type ${wt} at offset ${cur.pos}`);
    }
    if (cur.pos > end) throw new Malformed(`${type} message runs past its end`);
  }
  return out;
}

function* all(m: Msg, type: MsgType): Generator<Msg> {
  if (m.type === type) yield m;
  for (const c of m.children) yield* all(c, type);
}

export async function scanOnnx(src: ByteSource, ctx: ScanContext): Promise<void> {
  let model: Msg;
  try {
    model = await walk(new Cursor(src), src.size, 'model', 0);
  } catch (e) {
    if (e instanceof Malformed) ctx.add('onnx.malformed', e.message);
    else if (e instanceof TruncatedError) ctx.add('onnx.malformed', 'truncated', e.offset);
    else if (e instanceof RangeError) ctx.add('onnx.malformed', e.message);
    else throw e;
    return;
  }
  if (!model.children.some((c) => c.type === 'graph')) ctx.add('onnx.malformed', 'ModelProto has no graph');

  const external: string[] = [];
  for (const t of all(model, 'tensor')) {
    const entries = t.children.filter((c) => c.type === 'entry');
    const location = entries.find((e) => e.fields.get('key') === 'location')?.fields.get('value');
    const name = String(t.fields.get('name') ?? '?');
    if (typeof location === 'string') {
      const why = location.includes('\0') ? 'contains NUL' : pathEscapes(location);
      if (why !== null) {
        ctx.add(
          'onnx.external-data-traversal',
          `tensor ${JSON.stringify(name)}: location ${JSON.stringify(location)} ${why}`,
        );
      }
      external.push(location);
    } else if (t.fields.get('data_location') === 1n) {
      ctx.add('onnx.malformed', `tensor ${JSON.stringify(name)} is EXTERNAL without a location`);
    }
  }
  if (external.length > 0) {
    const files = [...new Set(external)];
    ctx.add(
      'onnx.external-data',
      `${external.length} tensors in external files: ${files.slice(0, 10).join(', ')}`,
    );
  }
  const local = new Set([...all(model, 'function')].map((f) => String(f.fields.get('domain') ?? '')));
  const custom = new Set<string>();
  for (const n of all(model, 'node')) {
    const d = String(n.fields.get('domain') ?? '');
    if (!STANDARD_DOMAINS.has(d) && !local.has(d)) custom.add(d);
  }
  if (custom.size > 0) ctx.add('onnx.custom-domain', `operators from ${[...custom].sort().join(', ')}`);
}
