/**
 * The per-entry half of `AuditLog.verify()`, cut into blocks of 2^BLOCK_LEVEL consecutive entries so that
 * worker threads can check disjoint blocks in parallel (verify-worker.ts) and the caller only combines a few
 * hashes per block (`BlockCombiner`). Pure: rows in, summaries out.
 *
 * Why blocks compose: a block starts at a multiple of 2^L, so the RFC 6962 tree over `j * 2^L + r` leaves
 * (r < 2^L) decomposes into the perfect subtrees over whole blocks (the frontier of a tree whose "leaves" are
 * the block roots) followed by the perfect subtrees of the first `r` leaves of block `j`.
 */
import { AuditLogError } from './errors.ts';
import { HASH_SIZE, MerkleFrontier, digestEquals, leafHashEncoded } from './merkle.ts';

/** log2 of the entries per block (4096): small enough to balance two to four threads, big enough to batch. */
export const BLOCK_LEVEL = 12;
export const BLOCK_SIZE = 2 ** BLOCK_LEVEL;

/** One stored entry as [idx, leaf_hash, body]: the shape node:sqlite returns with `setReturnArrays(true)`. */
export type EntryRow = readonly [idx: number, leafHash: Uint8Array, body: Uint8Array | null];

export interface BlockSummary {
  /** Index of the block's first entry; a multiple of BLOCK_SIZE. */
  readonly start: number;
  /** Entries checked (BLOCK_SIZE except for the last block of the log). */
  readonly count: number;
  /** The perfect subtree hashes over the block's entries, largest first (one hash for a whole block). */
  readonly hashes: readonly Uint8Array[];
  /** For each requested tree size inside the block: the subtree hashes over the block's entries before it. */
  readonly prefixes: readonly { readonly size: number; readonly hashes: readonly Uint8Array[] }[];
  readonly bodiesChecked: number;
  readonly bodiesPruned: number;
  /** The first entry of the block without its body, if any (they all come before the block's first body). */
  readonly firstPruned: number | undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Checks the rows of one block — `count` rows with indexes `start, start + 1, …` — and summarises its hashes.
 * Every body must hash to its leaf hash and carry its own index, and no entry may lack its body after one that
 * has it (retention prunes the oldest bodies: a prefix of the log). `prefixSizes` are tree sizes in
 * `(start, start + count)` whose roots the caller will check (stored checkpoints). Throws
 * `AuditLogError('integrity')` naming the first bad entry.
 */
export function summarizeBlock(
  start: number,
  count: number,
  rows: readonly EntryRow[],
  prefixSizes: readonly number[] = [],
): BlockSummary {
  const frontier = new MerkleFrontier();
  const prefixes: { size: number; hashes: Uint8Array[] }[] = [];
  let nextPrefix = 0;
  let bodiesChecked = 0;
  let bodiesPruned = 0;
  let firstPruned: number | undefined;
  for (let i = 0; i < count; i++) {
    const row = rows[i];
    const idx = start + i;
    if (row?.[0] !== idx) throw new AuditLogError('integrity', `entry ${idx} is missing`);
    const [, leaf, body] = row;
    if (!(leaf instanceof Uint8Array) || leaf.byteLength !== HASH_SIZE) {
      throw new AuditLogError('integrity', `entry ${idx} has a malformed leaf hash`);
    }
    if (body === null) {
      if (bodiesChecked > 0) throw withheld(idx);
      firstPruned ??= idx;
      bodiesPruned++;
    } else if (!(body instanceof Uint8Array)) {
      throw new AuditLogError('integrity', `entry ${idx} has a malformed body`);
    } else {
      // Leaf hashes are public: a plain comparison (digestEquals) suffices.
      if (!digestEquals(leafHashEncoded(body, 'binary'), leaf)) {
        throw new AuditLogError('integrity', `entry ${idx} does not match its leaf hash`);
      }
      if (indexOfBody(body) !== idx) throw new AuditLogError('integrity', `entry ${idx} has a wrong index`);
      bodiesChecked++;
    }
    frontier.appendHash(leaf);
    if (prefixSizes[nextPrefix] === idx + 1) {
      prefixes.push({ size: idx + 1, hashes: frontier.subtrees().map((s) => s.hash) });
      while (prefixSizes[nextPrefix] === idx + 1) nextPrefix++; // several checkpoints may share a size
    }
  }
  if (rows.length !== count) throw new AuditLogError('integrity', `entry ${start + count} is unexpected`);
  return {
    start,
    count,
    hashes: frontier.subtrees().map((s) => s.hash),
    prefixes,
    bodiesChecked,
    bodiesPruned,
    firstPruned,
  };
}

function withheld(idx: number): AuditLogError {
  return new AuditLogError(
    'integrity',
    `entry ${idx} has no body although earlier entries have theirs (retention prunes only the oldest)`,
  );
}

/**
 * Folds block summaries, in log order, into roots: of the whole log and at each prefix size a block reported.
 * Holds one frontier over block roots: O(log n) memory.
 */
export class BlockCombiner {
  readonly #blocks = new MerkleFrontier();
  #size = 0;
  bodiesChecked = 0;
  bodiesPruned = 0;
  #tail: readonly Uint8Array[] = [];

  /** Adds the next block; returns the roots at the block's prefix sizes. */
  add(block: BlockSummary): { size: number; root: Uint8Array }[] {
    if (block.start !== this.#size || this.#tail.length > 0) {
      throw new AuditLogError('integrity', `block at ${block.start} out of order`);
    }
    if (this.bodiesChecked > 0 && block.firstPruned !== undefined) throw withheld(block.firstPruned);
    const roots = block.prefixes.map((p) => ({ size: p.size, root: this.#rootWith(p.size, p.hashes) }));
    this.bodiesChecked += block.bodiesChecked;
    this.bodiesPruned += block.bodiesPruned;
    this.#size += block.count;
    if (block.count === BLOCK_SIZE) this.#blocks.appendHash(block.hashes[0] as Uint8Array);
    else this.#tail = block.hashes;
    return roots;
  }

  get size(): number {
    return this.#size;
  }

  root(): Uint8Array {
    return this.#rootWith(this.#size, this.#tail);
  }

  #rootWith(size: number, blockHashes: readonly Uint8Array[]): Uint8Array {
    return MerkleFrontier.fromSubtreeHashes(size, [
      ...this.#blocks.subtrees().map((s) => s.hash),
      ...blockHashes,
    ]).root();
  }
}

/**
 * The top-level `index` of a stored body. Stored bodies are canonical JSON written by this log, so a walk over
 * the top-level members (skipping values by bracket depth, strings by their quotes) finds it without building
 * objects. Anything unusual — escaped or duplicate member names, a non-integer index — goes to JSON.parse,
 * which decides as it always did.
 */
export function indexOfBody(body: Uint8Array): unknown {
  const found = scanTopLevelIndex(body);
  if (found !== undefined) return found;
  try {
    return (JSON.parse(utf8.decode(body)) as { index?: unknown } | null)?.index;
  } catch {
    return undefined;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const INDEX_KEY = [0x69, 0x6e, 0x64, 0x65, 0x78]; // "index"

/** A plain non-negative integer index found once at the top level, or undefined (unsure: parse instead). */
function scanTopLevelIndex(b: Uint8Array): number | undefined {
  const n = b.byteLength;
  if (n < 2 || b[0] !== OPEN_BRACE || b[n - 1] !== CLOSE_BRACE) return undefined;
  let found: number | undefined;
  let p = 1;
  for (;;) {
    if (b[p] !== QUOTE) return undefined;
    const keyStart = ++p;
    while (p < n && b[p] !== QUOTE) {
      if (b[p] === BACKSLASH) return undefined;
      p++;
    }
    const isIndex = p - keyStart === INDEX_KEY.length && startsWith(b, keyStart, INDEX_KEY);
    if (b[++p] !== COLON) return undefined;
    const valueStart = ++p;
    p = skipValue(b, p, n - 1);
    if (p < 0) return undefined;
    if (isIndex) {
      if (found !== undefined) return undefined;
      found = plainInteger(b, valueStart, p);
      if (found === undefined) return undefined;
    }
    if (p === n - 1) return found;
    if (b[p] !== COMMA) return undefined;
    p++;
  }
}

/** Position just after the JSON value at `p` (not validated beyond its extent), or -1. `end`: the closing brace. */
function skipValue(b: Uint8Array, p: number, end: number): number {
  let depth = 0;
  while (p < end) {
    const c = b[p] as number;
    if (c === QUOTE) {
      p++;
      while (p < end && b[p] !== QUOTE) p += b[p] === BACKSLASH ? 2 : 1;
      if (p >= end) return -1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (depth === 0) return -1;
      depth--;
    } else if (c === COMMA && depth === 0) {
      return p;
    }
    p++;
    if (depth === 0 && (b[p] === COMMA || p === end)) return p;
  }
  return -1;
}

function startsWith(b: Uint8Array, at: number, want: readonly number[]): boolean {
  for (let i = 0; i < want.length; i++) if (b[at + i] !== want[i]) return false;
  return true;
}

function plainInteger(b: Uint8Array, start: number, end: number): number | undefined {
  const digits = end - start;
  if (digits === 0 || digits > 15 || (digits > 1 && b[start] === 0x30)) return undefined;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = (b[i] as number) - 0x30;
    if (d < 0 || d > 9) return undefined;
    v = v * 10 + d;
  }
  return v;
}
