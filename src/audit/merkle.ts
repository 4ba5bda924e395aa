/**
 * RFC 6962 / RFC 9162 Merkle tree hashing for Warden's tamper-evident audit log: leaf and node hashing,
 * an append-efficient frontier, proof planning/assembly over an abstract hash source, and proof verification.
 *
 * Pure logic, no I/O. Sizes and indices are JavaScript numbers restricted to non-negative safe integers
 * (0 ≤ n ≤ 2^53 − 1); see docs/spec/audit-checkpoint.md for the precise rules.
 *
 * Error style:
 * - Generating things from bad arguments (index ≥ size, wrong hash length, a reader that lacks a node) throws
 *   `InvalidInputError`.
 * - `verifyInclusion` / `verifyConsistency` return nothing on success and throw `MerkleProofError` (a
 *   `VerificationError`) on every failure, malformed input included, with a machine-readable `reason`.
 */
import { createHash, hash as sha256Once } from 'node:crypto';
import { constantTimeEqual } from '../crypto/index.ts';
import { InvalidInputError, VerificationError } from '../crypto/index.ts';

/** Size in bytes of every hash in the tree (SHA-256). */
export const HASH_SIZE = 32;

const LEAF_PREFIX = Uint8Array.of(0x00);
const EMPTY_ROOT: Uint8Array = createHash('sha256').digest();

// Hashing speed: node:crypto's digests returned as Buffers allocate a fresh ArrayBuffer in C++ per call, which
// costs three times the hashing of a few hundred bytes. Digests are therefore taken as latin1 strings and copied
// into small JS-allocated Uint8Arrays, and inputs are assembled in reused scratch buffers (the functions are
// synchronous, so one scratch per module is safe).
const NODE_INPUT = Buffer.alloc(1 + 2 * HASH_SIZE);
NODE_INPUT[0] = 0x01;
/** Leaf inputs up to this size go through the scratch buffer; larger ones are streamed into a Hash. */
const LEAF_SCRATCH_MAX = 1 << 16;
let leafInput = Buffer.alloc(1024);

function bytesOfDigest(d: string): Uint8Array {
  const out = new Uint8Array(HASH_SIZE);
  for (let i = 0; i < HASH_SIZE; i++) out[i] = d.charCodeAt(i);
  return out;
}

/**
 * SHA-256(0x00 || data) in the given string encoding ('binary' = latin1: one char per byte). For verifiers that compare
 * a recomputed leaf hash with a stored or transmitted one without materialising bytes. No argument checks.
 */
export function leafHashEncoded(data: Uint8Array, encoding: 'binary' | 'base64' | 'hex'): string {
  const n = data.byteLength + 1;
  if (n > LEAF_SCRATCH_MAX) return createHash('sha256').update(LEAF_PREFIX).update(data).digest(encoding);
  if (n > leafInput.byteLength) {
    leafInput = Buffer.alloc(Math.min(LEAF_SCRATCH_MAX, Math.max(n, 2 * leafInput.byteLength)));
  }
  leafInput[0] = 0x00;
  leafInput.set(data, 1);
  return sha256Once('sha256', leafInput.subarray(0, n), encoding);
}

/** Whether `latin1` (a digest as returned by `leafHashEncoded(…, 'binary')`) equals the bytes `h`. */
export function digestEquals(latin1: string, h: Uint8Array): boolean {
  if (h.byteLength !== latin1.length) return false;
  let diff = 0;
  for (let i = 0; i < h.byteLength; i++) diff |= (h[i] as number) ^ latin1.charCodeAt(i);
  return diff === 0;
}

/** RFC 6962 leaf hash: SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new InvalidInputError('leaf data must be a Uint8Array');
  return bytesOfDigest(leafHashEncoded(data, 'binary'));
}

/** RFC 6962 interior node hash: SHA-256(0x01 || left || right). Both children must be 32-byte hashes. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  requireHash(left, 'left child hash');
  requireHash(right, 'right child hash');
  return hashChildren(left, right);
}

/** Root of the empty tree: SHA-256 of the empty string. Returns a fresh copy. */
export function emptyRoot(): Uint8Array {
  return Uint8Array.from(EMPTY_ROOT);
}

function hashChildren(left: Uint8Array, right: Uint8Array): Uint8Array {
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + HASH_SIZE);
  return bytesOfDigest(sha256Once('sha256', NODE_INPUT, 'binary'));
}

function copyHash(h: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_SIZE);
  out.set(h);
  return out;
}

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.byteLength === HASH_SIZE;
}

function requireHash(h: unknown, what: string): asserts h is Uint8Array {
  if (!isHash(h)) throw new InvalidInputError(`${what} must be a ${HASH_SIZE}-byte Uint8Array`);
}

// ---------------------------------------------------------------------------------------------------------
// Integer helpers. All arithmetic stays on safe integers and avoids 32-bit bitwise operators.

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function requireSize(n: unknown, what: string): asserts n is number {
  if (!isSize(n)) throw new InvalidInputError(`${what} must be a non-negative safe integer`);
}

/** Largest power of two strictly less than n (n ≥ 2). */
function largestPow2Below(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Levels of the perfect subtrees that make up a tree of `size` leaves, largest (leftmost) first. */
function decompositionLevels(size: number): number[] {
  const levels: number[] = [];
  let s = size;
  let level = 0;
  while (s > 0) {
    if (s % 2 === 1) levels.push(level);
    s = Math.floor(s / 2);
    level++;
  }
  return levels.reverse();
}

// ---------------------------------------------------------------------------------------------------------
// Reference root.

/**
 * Root over a list of leaf hashes, straight from the RFC 6962 §2.1 definition (MTH with the largest
 * power-of-two split). O(n) hashes; the reference against which everything else is tested.
 */
export function rootFromLeafHashes(hashes: readonly Uint8Array[]): Uint8Array {
  hashes.forEach((h, i) => {
    requireHash(h, `leaf hash ${i}`);
  });
  if (hashes.length === 0) return emptyRoot();
  const mth = (lo: number, hi: number): Uint8Array => {
    if (hi - lo === 1) return copyHash(hashes[lo] as Uint8Array);
    const k = largestPow2Below(hi - lo);
    return hashChildren(mth(lo, lo + k), mth(lo + k, hi));
  };
  return mth(0, hashes.length);
}

// ---------------------------------------------------------------------------------------------------------
// Subtree coordinates and the abstract hash source.

/** The perfect subtree over leaves [index·2^level, (index+1)·2^level). Level 0 is the leaf hashes. */
export interface SubtreeCoord {
  readonly level: number;
  readonly index: number;
}

/** A perfect subtree together with its hash. */
export interface SubtreeNode extends SubtreeCoord {
  readonly hash: Uint8Array;
}

/**
 * Synchronous source of perfect-subtree hashes (an in-memory tree, or a store on node:sqlite). Proof generation
 * only ever asks for subtrees lying entirely inside the tree size being proven. Async stores do not implement
 * this: they use `plan*` + `assembleProof` and fetch `plan.nodes` in one query.
 */
export interface SubtreeHashReader {
  getSubtreeHash(level: number, index: number): Uint8Array;
}

/**
 * What a proof (or a root) needs from storage: the distinct perfect subtrees to fetch, and how their hashes
 * combine into the proof entries. Entry `i` is the right fold (h₀, (h₁, (…, hₖ))) of the hashes of
 * `nodes[entries[i][0]], nodes[entries[i][1]], …` — one node for a perfect subtree, several for a subtree cut
 * by the right edge of the tree. Plain data; safe to serialise.
 */
export interface ProofPlan {
  readonly nodes: readonly SubtreeCoord[];
  readonly entries: readonly (readonly number[])[];
}

/** Perfect subtrees covering the RFC 6962 subtree of leaves [lo, hi), largest first; lo is suitably aligned. */
function rangeCoords(lo: number, hi: number): SubtreeCoord[] {
  const out: SubtreeCoord[] = [];
  let pos = lo;
  for (const level of decompositionLevels(hi - lo)) {
    const width = 2 ** level;
    out.push({ level, index: pos / width });
    pos += width;
  }
  return out;
}

function planFromRanges(ranges: readonly (readonly [number, number])[]): ProofPlan {
  const nodes: SubtreeCoord[] = [];
  const entries: number[][] = [];
  for (const [lo, hi] of ranges) {
    const entry: number[] = [];
    for (const c of rangeCoords(lo, hi)) {
      entry.push(nodes.length);
      nodes.push(c);
    }
    entries.push(entry);
  }
  return { nodes, entries };
}

/**
 * Plan of the inclusion proof for leaf `index` in a tree of `treeSize` leaves (RFC 9162 §2.1.3.1 PATH), entries
 * ordered from the leaf's sibling up to the root's child.
 */
export function planInclusionProof(index: number, treeSize: number): ProofPlan {
  requireSize(index, 'leaf index');
  requireSize(treeSize, 'tree size');
  if (index >= treeSize) throw new InvalidInputError('leaf index must be less than the tree size');
  const ranges: (readonly [number, number])[] = [];
  let lo = 0;
  let hi = treeSize;
  while (hi - lo > 1) {
    const k = largestPow2Below(hi - lo);
    if (index < lo + k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
    }
  }
  return planFromRanges(ranges.reverse());
}

/**
 * Plan of the consistency proof from `size1` to `size2` (RFC 9162 §2.1.4.1 PROOF/SUBPROOF). Requires
 * 0 < size1 ≤ size2; equal sizes give the empty proof.
 */
export function planConsistencyProof(size1: number, size2: number): ProofPlan {
  requireSize(size1, 'first tree size');
  requireSize(size2, 'second tree size');
  if (size1 > size2) throw new InvalidInputError('first tree size must not exceed the second');
  if (size1 === 0) throw new InvalidInputError('a consistency proof from the empty tree is meaningless');
  const ranges: (readonly [number, number])[] = [];
  let lo = 0;
  let hi = size2;
  let complete = true; // SUBPROOF's b flag: still on the path of the whole old tree
  for (;;) {
    const m = size1 - lo;
    if (m === hi - lo) {
      if (!complete) ranges.push([lo, hi]);
      break;
    }
    const k = largestPow2Below(hi - lo);
    if (m <= k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
      complete = false;
    }
  }
  return planFromRanges(ranges.reverse());
}

/** Plan of the root hash of a tree of `treeSize` leaves: a single entry (no nodes for the empty tree). */
export function planRoot(treeSize: number): ProofPlan {
  requireSize(treeSize, 'tree size');
  const nodes = rangeCoords(0, treeSize);
  return { nodes, entries: [nodes.map((_, i) => i)] };
}

function foldRight(hashes: readonly Uint8Array[]): Uint8Array {
  const last = hashes.at(-1);
  if (last === undefined) return emptyRoot();
  let h: Uint8Array = copyHash(last);
  for (let i = hashes.length - 2; i >= 0; i--) h = hashChildren(hashes[i] as Uint8Array, h);
  return h;
}

/**
 * Combines the fetched hashes (`hashes[i]` is the hash of `plan.nodes[i]`) into the proof entries. For a
 * `planRoot` plan the single entry is the root.
 */
export function assembleProof(plan: ProofPlan, hashes: readonly Uint8Array[]): Uint8Array[] {
  if (hashes.length !== plan.nodes.length) {
    throw new InvalidInputError(`expected ${plan.nodes.length} subtree hashes, got ${hashes.length}`);
  }
  hashes.forEach((h, i) => {
    requireHash(h, `subtree hash ${i}`);
  });
  return plan.entries.map((entry) =>
    foldRight(
      entry.map((i) => {
        const h = hashes[i];
        if (h === undefined) throw new InvalidInputError('proof plan refers to a missing node');
        return h;
      }),
    ),
  );
}

function readPlan(reader: SubtreeHashReader, plan: ProofPlan): Uint8Array[] {
  return assembleProof(
    plan,
    plan.nodes.map((c) => reader.getSubtreeHash(c.level, c.index)),
  );
}

/** Inclusion proof read synchronously from `reader`. */
export function inclusionProof(reader: SubtreeHashReader, index: number, treeSize: number): Uint8Array[] {
  return readPlan(reader, planInclusionProof(index, treeSize));
}

/** Consistency proof read synchronously from `reader`. */
export function consistencyProof(reader: SubtreeHashReader, size1: number, size2: number): Uint8Array[] {
  return readPlan(reader, planConsistencyProof(size1, size2));
}

/** Root hash of the first `treeSize` leaves, read synchronously from `reader`. */
export function rootAtSize(reader: SubtreeHashReader, treeSize: number): Uint8Array {
  return readPlan(reader, planRoot(treeSize))[0] as Uint8Array;
}

// ---------------------------------------------------------------------------------------------------------
// Frontier (compact range [0, size)).

const FRONTIER_VERSION = 0x01;
const FRONTIER_HEADER = 9; // version byte + uint64 big-endian size

/**
 * The roots of the O(log n) perfect subtrees covering all leaves so far (the right "frontier" of the tree).
 * Appending a leaf and computing the root are O(log n). Serialises to
 * `0x01 || uint64be(size) || hash*` (hashes largest subtree first) for persistence.
 */
export class MerkleFrontier {
  #size = 0;
  /** Perfect subtree roots, largest (leftmost) first; one per set bit of #size. */
  readonly #stack: Uint8Array[] = [];

  /** Rebuilds a frontier from the hashes of `frontierCoords(size)`, in that order. */
  static fromSubtreeHashes(size: number, hashes: readonly Uint8Array[]): MerkleFrontier {
    requireSize(size, 'tree size');
    const levels = decompositionLevels(size);
    if (hashes.length !== levels.length) {
      throw new InvalidInputError(
        `a frontier of size ${size} holds ${levels.length} hashes, got ${hashes.length}`,
      );
    }
    const f = new MerkleFrontier();
    hashes.forEach((h, i) => {
      requireHash(h, `frontier hash ${i}`);
      f.#stack.push(copyHash(h));
    });
    f.#size = size;
    return f;
  }

  /** Restores a frontier written by `serialize()`. Throws `InvalidInputError` on any malformed input. */
  static deserialize(bytes: Uint8Array): MerkleFrontier {
    if (!(bytes instanceof Uint8Array) || bytes.byteLength < FRONTIER_HEADER) {
      throw new InvalidInputError('serialized frontier is truncated');
    }
    if (bytes[0] !== FRONTIER_VERSION) throw new InvalidInputError('unknown serialized frontier version');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const big = view.getBigUint64(1);
    if (big > BigInt(Number.MAX_SAFE_INTEGER))
      throw new InvalidInputError('serialized frontier size out of range');
    const size = Number(big);
    const count = decompositionLevels(size).length;
    if (bytes.byteLength !== FRONTIER_HEADER + count * HASH_SIZE) {
      throw new InvalidInputError('serialized frontier has the wrong length for its size');
    }
    const hashes: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const at = FRONTIER_HEADER + i * HASH_SIZE;
      hashes.push(bytes.slice(at, at + HASH_SIZE));
    }
    return MerkleFrontier.fromSubtreeHashes(size, hashes);
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends a leaf hash. Returns the perfect subtrees completed by this append — the leaf itself at level 0,
   * then each newly merged node — which a store keeping every node persists.
   */
  append(leaf: Uint8Array): SubtreeNode[] {
    requireHash(leaf, 'leaf hash');
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new InvalidInputError('tree is full');
    let h: Uint8Array = copyHash(leaf);
    let level = 0;
    let index = this.#size;
    const completed: SubtreeNode[] = [{ level, index, hash: copyHash(h) }];
    for (let s = this.#size; s % 2 === 1; s = Math.floor(s / 2)) {
      const left = this.#stack.pop();
      if (left === undefined) throw new Error('frontier invariant violated');
      h = hashChildren(left, h);
      level++;
      index = Math.floor(index / 2);
      completed.push({ level, index, hash: copyHash(h) });
    }
    this.#stack.push(h);
    this.#size++;
    return completed;
  }

  /**
   * Appends a leaf hash like `append` but reports nothing: the fast path of full scans (verification), which
   * only need roots. Returns the new size.
   */
  appendHash(leaf: Uint8Array): number {
    requireHash(leaf, 'leaf hash');
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new InvalidInputError('tree is full');
    let h: Uint8Array = copyHash(leaf);
    for (let s = this.#size; s % 2 === 1; s = Math.floor(s / 2)) {
      const left = this.#stack.pop();
      if (left === undefined) throw new Error('frontier invariant violated');
      h = hashChildren(left, h);
    }
    this.#stack.push(h);
    return ++this.#size;
  }

  /** Root of the tree over all leaves appended so far (the empty root for size 0). */
  root(): Uint8Array {
    return foldRight(this.#stack);
  }

  /** The perfect subtrees held, largest first, with their coordinates. */
  subtrees(): SubtreeNode[] {
    const coords = frontierCoords(this.#size);
    return coords.map((c, i) => ({ ...c, hash: copyHash(this.#stack[i] as Uint8Array) }));
  }

  serialize(): Uint8Array {
    const out = new Uint8Array(FRONTIER_HEADER + this.#stack.length * HASH_SIZE);
    out[0] = FRONTIER_VERSION;
    new DataView(out.buffer).setBigUint64(1, BigInt(this.#size));
    this.#stack.forEach((h, i) => {
      out.set(h, FRONTIER_HEADER + i * HASH_SIZE);
    });
    return out;
  }

  clone(): MerkleFrontier {
    return MerkleFrontier.fromSubtreeHashes(this.#size, this.#stack);
  }
}

/** Coordinates of the perfect subtrees a frontier of `size` leaves holds, largest first. */
export function frontierCoords(size: number): SubtreeCoord[] {
  requireSize(size, 'tree size');
  return rangeCoords(0, size);
}

// ---------------------------------------------------------------------------------------------------------
// In-memory tree.

/**
 * A Merkle tree kept entirely in memory, storing every perfect-subtree hash (about 2n hashes). Appends are
 * O(log n) worst case, O(1) amortised. Used by tests and the offline verifier.
 */
export class MemoryMerkleTree implements SubtreeHashReader {
  readonly #levels: Uint8Array[][] = [];
  readonly #frontier = new MerkleFrontier();

  get size(): number {
    return this.#frontier.size;
  }

  /** Appends raw leaf data; returns its index. */
  appendLeaf(data: Uint8Array): number {
    return this.appendLeafHash(leafHash(data));
  }

  /** Appends a leaf hash; returns its index. */
  appendLeafHash(hash: Uint8Array): number {
    const index = this.#frontier.size;
    for (const node of this.#frontier.append(hash)) {
      let row = this.#levels[node.level];
      if (row === undefined) {
        row = [];
        this.#levels[node.level] = row;
      }
      row.push(node.hash); // completed nodes of a level arrive in index order
    }
    return index;
  }

  /** Current root. */
  root(): Uint8Array {
    return this.#frontier.root();
  }

  /** Root over the first `treeSize` leaves (treeSize ≤ size). */
  rootAt(treeSize: number): Uint8Array {
    this.#requireWithin(treeSize);
    return rootAtSize(this, treeSize);
  }

  getSubtreeHash(level: number, index: number): Uint8Array {
    const h =
      Number.isSafeInteger(level) && Number.isSafeInteger(index) ? this.#levels[level]?.[index] : undefined;
    if (h === undefined) throw new InvalidInputError(`no perfect subtree at level ${level}, index ${index}`);
    return copyHash(h);
  }

  inclusionProof(index: number, treeSize: number = this.size): Uint8Array[] {
    this.#requireWithin(treeSize);
    return inclusionProof(this, index, treeSize);
  }

  consistencyProof(size1: number, size2: number = this.size): Uint8Array[] {
    this.#requireWithin(size2);
    return consistencyProof(this, size1, size2);
  }

  /** A copy of the current frontier. */
  frontier(): MerkleFrontier {
    return this.#frontier.clone();
  }

  #requireWithin(treeSize: number): void {
    requireSize(treeSize, 'tree size');
    if (treeSize > this.size) throw new InvalidInputError('tree size exceeds the number of leaves');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Verification (RFC 9162 §2.1.3.2 and §2.1.4.2).

export type MerkleProofFailure =
  /** A size or index is not a non-negative safe integer. */
  | 'invalid_size'
  /** Inclusion: leaf index ≥ tree size. */
  | 'index_out_of_range'
  /** Consistency: size1 > size2. */
  | 'size_order'
  /** Consistency: size1 = 0 < size2 (meaningless, RFC 9162 requires 0 < first). */
  | 'empty_tree'
  /** A leaf hash, root or proof entry is not a 32-byte Uint8Array. */
  | 'malformed_hash'
  /** The proof has too many or too few entries for the sizes. */
  | 'proof_length'
  /** The recomputed root(s) differ from the given one(s). */
  | 'root_mismatch';

/** A Merkle proof failed to verify. `reason` says why; nothing in it is secret. */
export class MerkleProofError extends VerificationError {
  readonly proof: 'inclusion' | 'consistency';
  readonly reason: MerkleProofFailure;
  constructor(proof: 'inclusion' | 'consistency', reason: MerkleProofFailure) {
    super(`${proof} proof`);
    this.message = `${proof} proof verification failed: ${reason}`;
    this.proof = proof;
    this.reason = reason;
  }
}

/** Runtime array check without narrowing (inputs may come from untyped JSON). */
function isArrayValue(x: unknown): boolean {
  return Array.isArray(x);
}

function isProofArray(proof: unknown): proof is readonly Uint8Array[] {
  return Array.isArray(proof) && proof.every(isHash);
}

/**
 * Verifies that `leaf` (a leaf hash) is at `index` in the tree of `treeSize` leaves with root `root`.
 * Returns on success; throws `MerkleProofError` otherwise. The final root comparison is constant-time.
 */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  const fail = (reason: MerkleProofFailure): never => {
    throw new MerkleProofError('inclusion', reason);
  };
  if (!isSize(index) || !isSize(treeSize)) return fail('invalid_size');
  if (index >= treeSize) return fail('index_out_of_range');
  if (!isHash(leaf) || !isHash(root) || !isProofArray(proof)) return fail('malformed_hash');

  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return fail('proof_length');
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail('proof_length');
  if (!constantTimeEqual(r, root)) fail('root_mismatch');
}

/**
 * Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1` leaves with root
 * `root1`. Returns on success; throws `MerkleProofError` otherwise. Root comparisons are constant-time.
 *
 * size1 = size2: the proof must be empty and the roots equal (compared as opaque bytes: nothing is hashed); at
 * size 0 both must also equal the empty root. size1 = 0 < size2 always fails.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  const fail = (reason: MerkleProofFailure): never => {
    throw new MerkleProofError('consistency', reason);
  };
  if (!isSize(size1) || !isSize(size2)) return fail('invalid_size');
  if (!isArrayValue(proof)) return fail('malformed_hash');
  if (size1 > size2) return fail('size_order');
  if (size1 === size2) {
    if (proof.length !== 0) return fail('proof_length');
    if (!(root1 instanceof Uint8Array) || !(root2 instanceof Uint8Array)) return fail('malformed_hash');
    const rootsMatch = constantTimeEqual(root1, root2);
    if (size1 === 0 ? !(rootsMatch && constantTimeEqual(root1, EMPTY_ROOT)) : !rootsMatch) {
      return fail('root_mismatch');
    }
    return;
  }
  if (size1 === 0) return fail('empty_tree');
  if (proof.length === 0) return fail('proof_length');
  if (!isHash(root1) || !isHash(root2) || !isProofArray(proof)) return fail('malformed_hash');

  // Step 2: when the old tree is a perfect subtree its root is the proof's implicit first entry.
  const path: readonly Uint8Array[] = decompositionLevels(size1).length === 1 ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0] as Uint8Array;
  let sr = fr;
  for (let i = 1; i < path.length; i++) {
    const c = path[i] as Uint8Array;
    if (sn === 0) return fail('proof_length');
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail('proof_length');
  const firstOk = constantTimeEqual(fr, root1);
  const secondOk = constantTimeEqual(sr, root2);
  if (!firstOk || !secondOk) fail('root_mismatch');
}

/** Whether `h` is the root of the empty tree (constant-time). */
export function isEmptyRoot(h: Uint8Array): boolean {
  return constantTimeEqual(h, EMPTY_ROOT);
}
