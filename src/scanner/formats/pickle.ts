import type { ScanContext } from '../context.ts';
import { PickleWalker, type NestedPayload, type PV, type WalkStatus } from '../pickle/walker.ts';
import { BufferSource, sliceSource, WindowReader, type ByteSource } from '../source.ts';

/**
 * The walker is fed this much at a time, files and buffers alike (a buffer's chunks are views): short calls
 * let V8 optimise the walk loop properly instead of through on-stack replacement of one huge call.
 */
const CHUNK = 4 * 1024 * 1024;

export interface PickleStreamOptions {
  /** Pickles that must be present (legacy PyTorch: 5); a broken one among them is malformed. Default 1. */
  expected?: number;
  /** Stop after this many pickles; what follows is data (legacy PyTorch storages). Default: walk them all. */
  maxPickles?: number;
  /** Receives each persistent id (PyTorch storage references). */
  persistentId?: (pid: PV, offset: number) => void;
}

export interface PickleStreamResult {
  pickles: number;
  /** Offset after the last complete pickle. */
  end: number;
  joblib: boolean;
}

async function drive(walker: PickleWalker, src: ByteSource, ctx: ScanContext): Promise<WalkStatus> {
  let chunk = CHUNK;
  const windows = new WindowReader(src);
  for (;;) {
    const base = walker.pos;
    const buf = await windows.read(base, chunk);
    const status = walker.run(buf, base, src.size);
    if (status.kind !== 'need') return status;
    if (walker.pos === base) {
      // Only a long protocol-0 text line needs more than a chunk; the walker caps line length itself.
      chunk = Math.min(chunk * 2, ctx.limits.maxPickleLine + CHUNK);
    }
  }
}

/**
 * Walks every pickle of a stream from `start`: pickles are often concatenated (legacy PyTorch writes five,
 * joblib and custom loaders call `load` in a loop), and a payload in the second one runs just the same.
 */
export async function walkPickleStream(
  src: ByteSource,
  ctx: ScanContext,
  start = 0,
  opts: PickleStreamOptions = {},
): Promise<PickleStreamResult> {
  const expected = opts.expected ?? 1;
  let pos = start;
  let pickles = 0;
  let budget = ctx.limits.maxPickleOpcodes;
  let joblib = false;
  const nested: NestedPayload[] = [];
  const hooks = {
    report: ctx.add.bind(ctx),
    ...(opts.persistentId === undefined ? {} : { persistentId: opts.persistentId }),
  };
  while (pos < src.size && (opts.maxPickles === undefined || pickles < opts.maxPickles)) {
    const walker = new PickleWalker(pos, ctx.limits, hooks, budget);
    const status = await drive(walker, src, ctx);
    budget -= walker.opcodes;
    joblib ||= walker.joblib;
    nested.push(...walker.nested);
    if (status.kind === 'stop') {
      pickles++;
      pos = walker.pos;
      continue;
    }
    if (status.kind === 'error') {
      if (pickles < expected) ctx.add('pickle.malformed', status.message, status.offset);
      else {
        ctx.add(
          'pickle.trailing-data',
          `${src.size - pos} bytes after pickle ${pickles} are not a pickle (${status.message})`,
          pos,
        );
      }
    } else if (status.kind === 'limit') {
      ctx.add('pickle.limit-exceeded', status.message, status.offset);
    }
    break;
  }
  await scanNested(src, ctx, nested);
  return { pickles, end: pos, joblib };
}

/** Scans what nested deserialisers (`pickle.loads(b'...')`, torch `_load_from_bytes`) would load. */
async function scanNested(
  src: ByteSource,
  ctx: ScanContext,
  nested: readonly NestedPayload[],
): Promise<void> {
  for (const n of nested) {
    let payload: ByteSource;
    if (n.transform === 'none') {
      payload = sliceSource(src, n.region.off, n.region.len);
    } else {
      if (n.region.len > ctx.limits.maxInflatedEntry) {
        ctx.add('pickle.nested-unscanned', `payload of ${n.loader} is larger than the cap`, n.offset);
        continue;
      }
      // _codecs.encode(text, 'latin1'): each code point of the UTF-8 text becomes one byte.
      const text = Buffer.from(await src.read(n.region.off, n.region.len)).toString('utf8');
      payload = new BufferSource(Buffer.from(text, 'latin1'));
    }
    await ctx.recurse(payload, `<${n.loader}@${n.offset}>`);
  }
}
