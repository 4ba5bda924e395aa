/**
 * Offline verifier of Warden audit exports (docs/spec/audit-export.md, "Verification"). Streaming and bounded
 * in memory: the Merkle root is recomputed with a `MerkleFrontier` (O(log n) hashes), never by holding the leaf
 * hashes. Localisation of tampering therefore comes from what can be observed in one pass:
 *
 * - an edited body → `body-mismatch` at its index (the body no longer hashes to its leaf hash);
 * - a deleted, inserted, repeated or reordered entry whose index was left as is → `index-gap` at the first index
 *   that is out of sequence;
 * - leaf hashes rewritten consistently (renumbered entries, recomputed leaf hashes) → `root-mismatch`, located
 *   at the first index whose leaf hash differs from the same position of a trusted earlier export
 *   (`compareWith`, read in lockstep, O(1) memory), or, given the frontier of a previous checkpoint
 *   (`previous.frontier`), to the first perfect subtree that differs (a range `[lo, hi)`: every leaf before `lo`
 *   is still consistent with the previous checkpoint). A previous checkpoint alone (size and root) only says
 *   whether the first `M` leaves are consistent: a root carries no information about where two leaf sequences
 *   differ, so no search over prefix roots can localise against it.
 *
 * The verifier never throws for anything in the export: every defect becomes a typed problem in the report.
 * It throws only for invalid options (a malformed verifier key: `NoteFormatError`) and for errors of the
 * input iterable itself (I/O).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import {
  BODY_HASH_MISMATCH,
  BODY_INDEX_MISMATCH,
  BODY_NOT_CANONICALISABLE,
  BODY_TIME_INVALID,
  inspectEntryLine,
  judgeEventBody,
} from './export-entry.ts';
import type { EntryEvent } from './export-entry.ts';
import { LineJudges } from './export-judges.ts';
import type { JudgedLine } from './export-judges.ts';
import {
  NoteFormatError,
  NoteVerificationError,
  openCheckpoint,
  parseVerifierKey,
  type Checkpoint,
  type NoteVerifier,
} from './checkpoint.ts';
import { MerkleFrontier, emptyRoot } from './merkle.ts';

export type ExportProblemKind =
  /** Not UTF-8, not JSON, not an object, unknown `type`, missing/extra/ill-typed members, over-long line. */
  | 'malformed-line'
  /** A well-formed line in the wrong place: header not first or repeated, entry or line after the checkpoint. */
  | 'unexpected-line'
  /** An entry's index is not the next one: deleted, inserted, repeated or reordered entries. */
  | 'index-gap'
  /** An event whose `index` differs from its entry's, or whose JCS bytes do not hash to the entry's leaf hash. */
  | 'body-mismatch'
  /** An event body outside the header's `[from, to)` range. */
  | 'range-violation'
  /**
   * An entry inside `[from, to)` without its body (`null`) after one that has its body: retention drops bodies
   * from the start of the log only, so this body was left out of the export, not pruned.
   */
  | 'withheld-body'
  /** The file ends early: no header, fewer entries than `treeSize`, or no checkpoint line. */
  | 'truncated'
  /** Header, entry count and checkpoint disagree on the tree size. */
  | 'size-mismatch'
  /** The root recomputed from the leaf hashes is not the checkpoint's. */
  | 'root-mismatch'
  /** The checkpoint note does not parse (signed-note or checkpoint syntax). */
  | 'malformed-checkpoint'
  /** The checkpoint is not signed by the configured key, or a signature by that key does not verify. */
  | 'bad-signature'
  /** Checkpoint or header origin is not the expected one. */
  | 'origin-mismatch'
  /** The export does not extend the previous checkpoint, or diverges from the trusted earlier export. */
  | 'inconsistent-with-previous'
  /** The `previous` option itself does not verify (bad note, frontier not matching its root). */
  | 'previous-invalid'
  /** The `compareWith` export does not verify on its own, so it was not used for localisation. */
  | 'reference-invalid';

export interface ExportProblem {
  readonly kind: ExportProblemKind;
  /** Entry index (tree position) the problem is located at, when known. */
  readonly index?: number;
  /** When localisation is to a range of entries: the first divergence lies in `[range[0], range[1])`. */
  readonly range?: readonly [number, number];
  /** 1-based line number in the export, when the problem is tied to a line. */
  readonly line?: number;
  /** Human-readable detail; never echoes event contents. */
  readonly message: string;
}

/** A line of an export, without its terminating `\n`; bytes are decoded as strict UTF-8. */
export type ExportLine = string | Uint8Array;
export type ExportLines = AsyncIterable<ExportLine> | Iterable<ExportLine>;

/** A checkpoint saved earlier, trusted: either its size and root, or the signed note itself. */
export type PreviousCheckpoint =
  | {
      readonly size: number;
      readonly rootHash: Uint8Array;
      /** Optional `MerkleFrontier.serialize()` of the log at `size`; enables range localisation. */
      readonly frontier?: Uint8Array;
    }
  | {
      readonly note: string;
      /** Key that signed the previous note; defaults to `verifierKey`. */
      readonly verifierKey?: string;
      readonly frontier?: Uint8Array;
    };

export interface VerifyExportOptions {
  /** The log's public key (C2SP vkey), configured out of band. */
  readonly verifierKey: string;
  /** Expected origin; defaults to the vkey's key name (Warden logs sign with a key named after the origin). */
  readonly origin?: string;
  readonly previous?: PreviousCheckpoint;
  /** A trusted earlier export of the same log, read in lockstep to locate the first diverging leaf. */
  readonly compareWith?: ExportLines;
  /** Problems kept in the report (default 100); further ones are only counted in `problemsOmitted`. */
  readonly maxProblems?: number;
  /**
   * `verifyExportFile` only: worker threads that judge entry bodies. Default: one per CPU, at most 4, for files
   * of 4 MiB and more; otherwise 1 (all work on the calling thread). The report is the same either way.
   */
  readonly threads?: number;
}

export interface VerifyExportReport {
  /** True iff no problem at all was found. */
  readonly ok: boolean;
  /** Origin from the verified checkpoint, else from the header. */
  readonly origin: string | undefined;
  /** Tree size of the verified checkpoint, else the header's. */
  readonly treeSize: number | undefined;
  /** Body range of the header. */
  readonly from: number | undefined;
  readonly to: number | undefined;
  /** Entry lines whose leaf hash entered the recomputed tree. */
  readonly entriesChecked: number;
  /** Event bodies checked against their leaf hashes. */
  readonly bodiesChecked: number;
  /**
   * Entries inside `[from, to)` whose body is `null` before the first body of the range (pruned by retention,
   * which drops bodies from the start of the log only; a `null` after a body is a `withheld-body` problem).
   */
  readonly prunedBodies: number;
  /** RFC 6962 root recomputed over all leaf hashes of the export, in file order. */
  readonly root: Uint8Array;
  /** The checkpoint, present only when its signature and origin verified. */
  readonly checkpoint: Checkpoint | undefined;
  readonly lines: number;
  readonly problems: readonly ExportProblem[];
  readonly problemsOmitted: number;
}

/** Longest line `verifyExportFile`/`readExportLines` accept (bytes); longer lines are `malformed-line`. */
export const MAX_EXPORT_LINE_BYTES = 16 * 1024 * 1024;

/** Canonical padded base64 of exactly 32 bytes (the last character carries 2 zero padding bits). */
const LEAF_HASH_B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Exports smaller than this are verified on the calling thread by default: workers cost more to start. */
const PARALLEL_MIN_BYTES = 4 << 20;
const MAX_JUDGE_THREADS = 4;
/** Batches (1 MiB read chunks) judged ahead of the sequential pass. */
const JUDGED_AHEAD = 8;

const LINE_TOO_LONG: unique symbol = Symbol('line too long');
type LineItem = ExportLine | typeof LINE_TOO_LONG;

interface Header {
  readonly origin: string;
  readonly treeSize: number;
  readonly from: number;
  readonly to: number;
}

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function hasExactKeys(o: Record<string, unknown>, keys: readonly string[]): boolean {
  let n = 0;
  for (const k in o) {
    if (!keys.includes(k)) return false;
    n++;
  }
  return n === keys.length;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function errorReason(err: unknown): string {
  return err instanceof NoteFormatError || err instanceof NoteVerificationError ? err.reason : 'error';
}

interface ProblemSink {
  add(p: ExportProblem): void;
}

/** A leaf-hash queue filled from a reference export checked in its own `ExportChecker`. */
class Reference {
  readonly checker: ExportChecker;
  readonly #it: Iterator<ExportLine> | AsyncIterator<ExportLine>;
  #queue: Uint8Array[] = [];
  #head = 0;
  #ended = false;

  constructor(lines: ExportLines, verifier: NoteVerifier, origin: string) {
    this.checker = new ExportChecker({ verifier, origin, checkBodies: false, maxProblems: 10 });
    this.checker.onLeaf = (h) => this.#queue.push(h);
    this.#it = Symbol.asyncIterator in lines ? lines[Symbol.asyncIterator]() : lines[Symbol.iterator]();
  }

  get available(): number {
    return this.#queue.length - this.#head;
  }

  /** Reads reference lines until `n` leaf hashes are queued or the reference ends. */
  async fill(n: number): Promise<void> {
    while (!this.#ended && this.available < n) {
      const r = await this.#it.next();
      if (r.done === true) this.#ended = true;
      else this.checker.push(r.value);
    }
  }

  take(): Uint8Array | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const h = this.#queue[this.#head++];
    if (this.#head > 4096) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return h;
  }

  async drain(): Promise<void> {
    await this.fill(Number.POSITIVE_INFINITY);
  }
}

interface CheckerOptions {
  readonly verifier: NoteVerifier;
  readonly origin: string;
  readonly checkBodies: boolean;
  readonly maxProblems: number;
  readonly previous?: { size: number; rootHash: Uint8Array; frontier?: MerkleFrontier };
}

/** The synchronous core: one call per line, then `finish`. */
class ExportChecker implements ProblemSink {
  onLeaf: ((h: Uint8Array) => void) | undefined;
  reference: Reference | undefined;

  readonly #o: CheckerOptions;
  readonly #frontier = new MerkleFrontier();
  readonly #problems: ExportProblem[] = [];
  #omitted = 0;
  #phase: 'header' | 'entries' | 'done' = 'header';
  #header: Header | undefined;
  #line = 0;
  #expectedIndex = 0;
  #bodies = 0;
  #pruned = 0;
  /** A body inside `[from, to)` was seen: retention cannot explain a `null` body after it. */
  #bodyInRange = false;
  #note: string | undefined;
  #noteLine = 0;
  #divergeAt: number | undefined;
  #prevRoot: Uint8Array | undefined;
  #prevCoords: { end: number; start: number; level: number; hash: Uint8Array }[] = [];
  #prevCoordNext = 0;
  #prevRange: [number, number] | undefined;

  constructor(o: CheckerOptions) {
    this.#o = o;
    if (o.previous?.frontier !== undefined) {
      for (const s of o.previous.frontier.subtrees()) {
        const width = 2 ** s.level;
        this.#prevCoords.push({
          start: s.index * width,
          end: (s.index + 1) * width,
          level: s.level,
          hash: s.hash,
        });
      }
    }
    if (o.previous?.size === 0) this.#prevRoot = emptyRoot();
  }

  add(p: ExportProblem): void {
    if (this.#problems.length < this.#o.maxProblems) this.#problems.push(p);
    else this.#omitted++;
  }

  #malformed(message: string): void {
    this.add({ kind: 'malformed-line', line: this.#line, message });
  }

  push(item: LineItem): void {
    this.#line++;
    if (item === LINE_TOO_LONG) {
      this.#malformed(`line longer than ${MAX_EXPORT_LINE_BYTES} bytes`);
      return;
    }
    if (this.#phase === 'entries' && this.#fastEntry(item)) return;
    let text: string;
    if (typeof item === 'string') {
      text = item;
    } else {
      try {
        text = utf8.decode(item);
      } catch {
        this.#malformed('not valid UTF-8');
        return;
      }
    }
    if (text.length === 0) {
      this.#malformed('empty line');
      return;
    }
    if (text.charCodeAt(0) <= 0x20 || text.charCodeAt(text.length - 1) <= 0x20) {
      this.#malformed('leading or trailing whitespace (lines end in a bare \\n)');
      return;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      this.#malformed('not valid JSON');
      return;
    }
    if (!isPlainObject(obj)) {
      this.#malformed('not a JSON object');
      return;
    }
    const type = obj.type;
    if (type === 'entry') {
      if (this.#phase === 'done') {
        this.add({ kind: 'unexpected-line', line: this.#line, message: 'entry after the checkpoint line' });
        return;
      }
      if (this.#phase === 'header') {
        this.add({
          kind: 'truncated',
          line: this.#line,
          message: 'export does not start with a header line',
        });
        this.#phase = 'entries';
      }
      this.#entry(obj);
    } else if (type === 'warden-audit-export') {
      if (this.#phase !== 'header') {
        this.add({ kind: 'unexpected-line', line: this.#line, message: 'header line not at the start' });
        return;
      }
      this.#phase = 'entries';
      this.#readHeader(obj);
    } else if (type === 'checkpoint') {
      if (this.#phase === 'done') {
        this.add({ kind: 'unexpected-line', line: this.#line, message: 'repeated checkpoint line' });
        return;
      }
      if (!hasExactKeys(obj, ['type', 'note']) || typeof obj.note !== 'string') {
        this.#malformed('checkpoint line must be {"type":"checkpoint","note":string}');
        return;
      }
      if (this.#phase === 'header') {
        this.add({
          kind: 'truncated',
          line: this.#line,
          message: 'export does not start with a header line',
        });
      }
      this.#phase = 'done';
      this.#note = obj.note;
      this.#noteLine = this.#line;
    } else {
      this.#malformed('unknown line type');
    }
  }

  #readHeader(obj: Record<string, unknown>): void {
    const { version, origin, treeSize, from, to } = obj;
    if (!hasExactKeys(obj, ['type', 'version', 'origin', 'treeSize', 'from', 'to'])) {
      this.#malformed('header must have exactly type, version, origin, treeSize, from, to');
      return;
    }
    if (version !== 1) {
      this.#malformed('unsupported export version');
      return;
    }
    if (typeof origin !== 'string' || !isSize(treeSize) || !isSize(from) || !isSize(to)) {
      this.#malformed('header fields have the wrong types');
      return;
    }
    if (!(from <= to && to <= treeSize)) {
      this.#malformed('header range must satisfy 0 <= from <= to <= treeSize');
      return;
    }
    if (origin !== this.#o.origin) {
      this.add({
        kind: 'origin-mismatch',
        line: this.#line,
        message: 'header origin is not the expected origin',
      });
    }
    this.#header = { origin, treeSize, from, to };
  }

  #entry(obj: Record<string, unknown>): void {
    const { index, leafHash: hashB64, event } = obj;
    if (!hasExactKeys(obj, ['type', 'index', 'leafHash', 'event'])) {
      this.#malformed('entry must have exactly type, index, leafHash, event');
      return;
    }
    if (!isSize(index)) {
      this.#malformed('entry index is not a non-negative safe integer');
      return;
    }
    if (typeof hashB64 !== 'string' || !LEAF_HASH_B64.test(hashB64)) {
      this.#malformed('leafHash is not canonical base64 of 32 bytes');
      return;
    }
    if (event !== null && !isPlainObject(event)) {
      this.#malformed('event must be an object or null');
      return;
    }
    this.#acceptEntry(index, Buffer.from(hashB64, 'base64'), event === null ? null : { obj: event });
  }

  /** The fast path (`inspectEntryLine`); false when the general path must take the line. */
  #fastEntry(item: ExportLine): boolean {
    let b: Uint8Array;
    if (typeof item === 'string') {
      // A well-formed string's UTF-8 bytes decode back to it; otherwise the general path handles it.
      if (!item.isWellFormed()) return false;
      b = Buffer.from(item, 'utf8');
    } else {
      b = item;
    }
    const entry = inspectEntryLine(b);
    if (entry === undefined) return false;
    this.#acceptEntry(entry.index, entry.leaf, entry.event);
    return true;
  }

  /**
   * A line whose entry a worker thread already inspected and judged (`judgeLines`): `judged` undefined when
   * the fast path did not recognise it. Same outcome as `push`.
   */
  pushJudged(item: LineItem, judged: JudgedLine | undefined): void {
    if (judged === undefined || this.#phase !== 'entries') {
      this.push(item);
      return;
    }
    this.#line++;
    this.#acceptEntry(
      judged.index,
      judged.leaf,
      judged.verdict === undefined ? null : { verdict: judged.verdict },
    );
  }

  #acceptEntry(index: number, leaf: Uint8Array, event: EntryEvent | { readonly verdict: number }): void {
    const position = this.#frontier.size;
    if (index !== this.#expectedIndex) {
      this.add({
        kind: 'index-gap',
        index: this.#expectedIndex,
        line: this.#line,
        message: `expected entry ${this.#expectedIndex}, found entry ${index}`,
      });
    }
    this.#expectedIndex = index + 1;

    if (this.reference !== undefined && this.#divergeAt === undefined) {
      const ref = this.reference.take();
      if (ref !== undefined && !bytesEqual(ref, leaf)) this.#divergeAt = position;
    }
    const c = this.#prevCoords[this.#prevCoordNext];
    // Completed subtrees are needed only to compare with the previous frontier; otherwise the lean append.
    const completed = c === undefined ? undefined : this.#frontier.append(leaf);
    if (completed === undefined) this.#frontier.appendHash(leaf);
    const size = position + 1;
    this.onLeaf?.(leaf);
    if (this.#o.previous !== undefined) {
      if (size === this.#o.previous.size) this.#prevRoot = this.#frontier.root();
      if (c !== undefined && c.end === size) {
        this.#prevCoordNext++;
        const node = completed?.find((n) => n.level === c.level);
        if (this.#prevRange === undefined && (node === undefined || !bytesEqual(node.hash, c.hash))) {
          this.#prevRange = [c.start, c.end];
        }
      }
    }

    const h = this.#header;
    const inRange = h !== undefined && index >= h.from && index < h.to;
    if (event === null) {
      if (!inRange) return;
      // Retention prunes by time and times never decrease with the index: pruned bodies are a prefix.
      if (this.#bodyInRange) {
        this.add({
          kind: 'withheld-body',
          index,
          line: this.#line,
          message:
            'event body missing after bodies of earlier entries (retention prunes only the oldest): left out of the export',
        });
      } else {
        this.#pruned++;
      }
      return;
    }
    if (inRange) this.#bodyInRange = true;
    if (h !== undefined && !inRange) {
      this.add({
        kind: 'range-violation',
        index,
        line: this.#line,
        message: 'event body outside the header range',
      });
    }
    if (!this.#o.checkBodies) return;
    this.#bodies++;
    const verdict = 'verdict' in event ? event.verdict : judgeEventBody(index, leaf, event);
    if ((verdict & BODY_INDEX_MISMATCH) !== 0) {
      this.add({
        kind: 'body-mismatch',
        index,
        line: this.#line,
        message: 'event.index differs from the entry index',
      });
      return;
    }
    if ((verdict & BODY_TIME_INVALID) !== 0) {
      this.#malformed('event time is not RFC 3339 UTC with milliseconds');
    }
    if ((verdict & BODY_NOT_CANONICALISABLE) !== 0) {
      this.#malformed('event cannot be canonicalised');
      return;
    }
    if ((verdict & BODY_HASH_MISMATCH) !== 0) {
      this.add({
        kind: 'body-mismatch',
        index,
        line: this.#line,
        message: 'event body does not match its leaf hash (edited entry or edited leaf hash)',
      });
    }
  }

  /** Called once the input is exhausted (and the reference drained). */
  finish(): VerifyExportReport {
    const count = this.#frontier.size;
    const root = this.#frontier.root();
    const h = this.#header;
    if (this.#line === 0) {
      this.add({ kind: 'truncated', message: 'empty export' });
    } else if (this.#phase !== 'done') {
      this.add({
        kind: 'truncated',
        line: this.#line,
        message: 'no checkpoint line at the end (truncated export?)',
      });
    }
    if (h !== undefined) {
      if (count < h.treeSize) {
        this.add({
          kind: 'truncated',
          index: count,
          message: `header announces ${h.treeSize} entries, found ${count}`,
        });
      } else if (count > h.treeSize) {
        this.add({
          kind: 'size-mismatch',
          index: h.treeSize,
          message: `header announces ${h.treeSize} entries, found ${count}`,
        });
      }
    }

    let checkpoint: Checkpoint | undefined;
    if (this.#note !== undefined) {
      try {
        checkpoint = openCheckpoint(this.#note, [this.#o.verifier], this.#o.origin).checkpoint;
      } catch (err) {
        const reason = errorReason(err);
        if (err instanceof NoteFormatError) {
          this.add({ kind: 'malformed-checkpoint', line: this.#noteLine, message: `checkpoint: ${reason}` });
        } else if (err instanceof NoteVerificationError && err.reason === 'origin_mismatch') {
          this.add({
            kind: 'origin-mismatch',
            line: this.#noteLine,
            message: 'checkpoint origin is not the expected origin',
          });
        } else {
          this.add({
            kind: 'bad-signature',
            line: this.#noteLine,
            message: `checkpoint signature does not verify with the configured key: ${reason}; root not compared`,
          });
        }
      }
    }
    if (checkpoint !== undefined) {
      if (h !== undefined && checkpoint.treeSize !== h.treeSize) {
        this.add({
          kind: 'size-mismatch',
          line: this.#noteLine,
          message: `checkpoint is for tree size ${checkpoint.treeSize}, header says ${h.treeSize}`,
        });
      }
      if (checkpoint.treeSize !== count) {
        this.add({
          kind: 'size-mismatch',
          line: this.#noteLine,
          message: `checkpoint is for tree size ${checkpoint.treeSize}, export has ${count} entries`,
        });
      }
      if (!bytesEqual(root, checkpoint.rootHash)) {
        const at = this.#divergeAt ?? this.#prevRange?.[0];
        this.add({
          kind: 'root-mismatch',
          ...(at !== undefined ? { index: at } : {}),
          ...(this.#divergeAt === undefined && this.#prevRange !== undefined
            ? { range: this.#prevRange }
            : {}),
          line: this.#noteLine,
          message:
            this.#divergeAt !== undefined
              ? `recomputed root differs from the checkpoint; leaf hashes first diverge from the reference export at index ${this.#divergeAt}`
              : this.#prevRange !== undefined
                ? `recomputed root differs from the checkpoint; first divergence from the previous checkpoint in [${this.#prevRange[0]}, ${this.#prevRange[1]})`
                : 'recomputed root differs from the checkpoint (entries deleted, inserted, reordered or rewritten)',
        });
      }
    }

    const prev = this.#o.previous;
    if (prev !== undefined) {
      if (count < prev.size) {
        this.add({
          kind: 'inconsistent-with-previous',
          index: count,
          message: `export has ${count} entries, fewer than the previous checkpoint's ${prev.size}`,
        });
      } else if (this.#prevRoot === undefined || !bytesEqual(this.#prevRoot, prev.rootHash)) {
        this.add({
          kind: 'inconsistent-with-previous',
          ...(this.#prevRange !== undefined ? { index: this.#prevRange[0], range: this.#prevRange } : {}),
          message:
            this.#prevRange !== undefined
              ? `the first ${prev.size} leaves do not hash to the previous root; first divergence in [${this.#prevRange[0]}, ${this.#prevRange[1]})`
              : `the first ${prev.size} leaves do not hash to the previous root (fork or rewritten log)`,
        });
      }
    }
    if (this.#divergeAt !== undefined) {
      this.add({
        kind: 'inconsistent-with-previous',
        index: this.#divergeAt,
        message: `leaf hash at index ${this.#divergeAt} differs from the reference export`,
      });
    }

    return {
      ok: this.#problems.length === 0 && this.#omitted === 0,
      origin: checkpoint?.origin ?? h?.origin,
      treeSize: checkpoint?.treeSize ?? h?.treeSize,
      from: h?.from,
      to: h?.to,
      entriesChecked: count,
      bodiesChecked: this.#bodies,
      prunedBodies: this.#pruned,
      root,
      checkpoint,
      lines: this.#line,
      problems: this.#problems,
      problemsOmitted: this.#omitted,
    };
  }

  /** The reference export turned out invalid: forget what it said. */
  dropReference(): void {
    this.reference = undefined;
    this.#divergeAt = undefined;
  }

  /** Reference export ended with more leaves than this export: divergence at this export's end. */
  noteReferenceLonger(): void {
    this.#divergeAt ??= this.#frontier.size;
  }
}

function resolvePrevious(
  prev: PreviousCheckpoint,
  verifier: NoteVerifier,
  origin: string,
  problems: ExportProblem[],
): CheckerOptions['previous'] {
  let size: number;
  let rootHash: Uint8Array;
  if ('note' in prev) {
    try {
      const v = prev.verifierKey === undefined ? verifier : parseVerifierKey(prev.verifierKey);
      ({ treeSize: size, rootHash } = openCheckpoint(prev.note, [v], origin).checkpoint);
    } catch (err) {
      problems.push({ kind: 'previous-invalid', message: `previous checkpoint: ${errorReason(err)}` });
      return undefined;
    }
  } else {
    if (!isSize(prev.size) || !(prev.rootHash instanceof Uint8Array) || prev.rootHash.byteLength !== 32) {
      problems.push({ kind: 'previous-invalid', message: 'previous checkpoint: bad size or root hash' });
      return undefined;
    }
    ({ size, rootHash } = prev);
  }
  let frontier: MerkleFrontier | undefined;
  if (prev.frontier !== undefined) {
    try {
      frontier = MerkleFrontier.deserialize(prev.frontier);
    } catch {
      frontier = undefined;
    }
    if (frontier?.size !== size || !bytesEqual(frontier.root(), rootHash)) {
      problems.push({
        kind: 'previous-invalid',
        message: 'previous frontier does not match the previous checkpoint; not used for localisation',
      });
      frontier = undefined;
    }
  }
  return frontier === undefined ? { size, rootHash } : { size, rootHash, frontier };
}

async function run(
  input: AsyncIterable<LineItem | readonly LineItem[]> | Iterable<LineItem | readonly LineItem[]>,
  opts: VerifyExportOptions,
  judges?: LineJudges,
): Promise<VerifyExportReport> {
  const verifier = parseVerifierKey(opts.verifierKey);
  const origin = opts.origin ?? verifier.keyName;
  const maxProblems = opts.maxProblems ?? 100;
  const early: ExportProblem[] = [];
  const previous =
    opts.previous === undefined ? undefined : resolvePrevious(opts.previous, verifier, origin, early);
  const checker = new ExportChecker({
    verifier,
    origin,
    checkBodies: true,
    maxProblems,
    ...(previous !== undefined ? { previous } : {}),
  });
  for (const p of early) checker.add(p);
  const ref = opts.compareWith === undefined ? undefined : new Reference(opts.compareWith, verifier, origin);
  checker.reference = ref;

  const feed = async (batch: readonly LineItem[], judged?: readonly (JudgedLine | undefined)[]) => {
    if (ref !== undefined) await ref.fill(batch.length);
    for (let i = 0; i < batch.length; i++) {
      if (judged === undefined) checker.push(batch[i] as LineItem);
      else checker.pushJudged(batch[i] as LineItem, judged[i]);
    }
  };
  if (judges === undefined) {
    for await (const item of input) await feed(Array.isArray(item) ? item : [item as LineItem]);
  } else {
    // Batches are judged ahead by the workers while this thread feeds the checker in order.
    const ahead: { batch: readonly LineItem[]; judged: Promise<(JudgedLine | undefined)[]> }[] = [];
    try {
      for await (const item of input) {
        const batch = Array.isArray(item) ? item : [item as LineItem];
        const judged = judges.judge(batch.map((l) => (l instanceof Uint8Array ? l : undefined)));
        judged.catch(() => undefined); // awaited in turn below
        ahead.push({ batch, judged });
        if (ahead.length > JUDGED_AHEAD) {
          const next = ahead.shift() as (typeof ahead)[number];
          await feed(next.batch, await next.judged);
        }
      }
      for (const next of ahead) await feed(next.batch, await next.judged);
    } finally {
      await judges.close();
    }
  }
  if (ref !== undefined) {
    await ref.drain();
    const refReport = ref.checker.finish();
    if (ref.available > 0) checker.noteReferenceLonger();
    if (!refReport.ok) {
      checker.dropReference();
      checker.add({
        kind: 'reference-invalid',
        message: `reference export does not verify (${refReport.problems.map((p) => p.kind).join(', ')}); its comparison is unreliable`,
      });
    }
  }
  return checker.finish();
}

/**
 * Whether `event` (a body as the log's query API returns it) is the body of entry `index` whose leaf hash is
 * `leafHash`: its `index` member, an RFC 3339 `time`, and SHA-256(0x00 ‖ JCS(event)) equal to the leaf hash. An
 * inclusion proof vouches for the leaf hash only; this ties the event shown to it.
 */
export function eventMatchesLeaf(
  index: number,
  leafHash: Uint8Array,
  event: Record<string, unknown>,
): boolean {
  return judgeEventBody(index, leafHash, { obj: event }) === 0;
}

/** Verifies an export given as lines (without terminators). See the module comment and the spec. */
export function verifyExport(lines: ExportLines, opts: VerifyExportOptions): Promise<VerifyExportReport> {
  return run(lines, opts);
}

/** Splits a file into lines of at most `MAX_EXPORT_LINE_BYTES`, in batches (one per read chunk). */
async function* readLineBatches(path: string): AsyncGenerator<LineItem[]> {
  let carry: Buffer | undefined;
  let skipping = false; // inside an over-long line: discard up to the next newline
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const batch: LineItem[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const part = chunk.subarray(start, nl);
      if (skipping) {
        skipping = false;
      } else if (carry !== undefined) {
        const line = Buffer.concat([carry, part]);
        batch.push(line.byteLength > MAX_EXPORT_LINE_BYTES ? LINE_TOO_LONG : line);
      } else {
        batch.push(part.byteLength > MAX_EXPORT_LINE_BYTES ? LINE_TOO_LONG : part);
      }
      carry = undefined;
      start = nl + 1;
    }
    if (start < chunk.byteLength && !skipping) {
      const rest = chunk.subarray(start);
      carry = carry === undefined ? Buffer.from(rest) : Buffer.concat([carry, rest]);
      if (carry.byteLength > MAX_EXPORT_LINE_BYTES) {
        batch.push(LINE_TOO_LONG);
        carry = undefined;
        skipping = true;
      }
    }
    if (batch.length > 0) yield batch;
  }
  if (carry !== undefined) yield [carry]; // last line without a final newline
}

/** The lines of an export file (strict UTF-8 is checked by the verifier), e.g. for `compareWith`. */
export async function* readExportLines(path: string): AsyncGenerator<ExportLine> {
  for await (const batch of readLineBatches(path)) {
    for (const line of batch) yield line === LINE_TOO_LONG ? new Uint8Array([0xff]) : line;
  }
}

/**
 * Verifies an export file. Reads it once, sequentially, in 1 MiB chunks; with `threads` > 1 worker threads
 * inspect and judge the entry lines of the chunks ahead while this thread checks them in order.
 */
export async function verifyExportFile(path: string, opts: VerifyExportOptions): Promise<VerifyExportReport> {
  const threads =
    opts.threads ??
    ((await stat(path)).size >= PARALLEL_MIN_BYTES ? Math.min(availableParallelism(), MAX_JUDGE_THREADS) : 1);
  if (!Number.isSafeInteger(threads) || threads < 1)
    throw new RangeError('threads must be a positive integer');
  return await run(readLineBatches(path), opts, threads > 1 ? new LineJudges(threads) : undefined);
}
