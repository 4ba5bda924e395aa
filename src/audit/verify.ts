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
import { canonicalJson, scanCanonicalObject } from './canonical.ts';
import type { CanonicalObjectScan } from './canonical.ts';
import {
  NoteFormatError,
  NoteVerificationError,
  openCheckpoint,
  parseVerifierKey,
  type Checkpoint,
  type NoteVerifier,
} from './checkpoint.ts';
import { MerkleFrontier, digestEquals, emptyRoot, leafHashEncoded } from './merkle.ts';

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
  /** Entries inside `[from, to)` whose body is `null` (pruned by retention). */
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

const LINE_TOO_LONG: unique symbol = Symbol('line too long');
type LineItem = ExportLine | typeof LINE_TOO_LONG;

/** Canonical padded base64 of exactly 32 bytes (the last character carries 2 zero padding bits). */
const LEAF_HASH_B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const RFC3339_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The fixed parts of an entry line as `AuditLog.export` writes it (the fast path; anything else is parsed). */
const ENTRY_HEAD = Buffer.from('{"type":"entry","index":');
const ENTRY_HASH = Buffer.from(',"leafHash":"');
const ENTRY_EVENT = Buffer.from('","event":');
const NULL_EVENT = Buffer.from('null}');
const B64_HASH_LENGTH = 44;

/** An entry's event: pruned, parsed (general path), or canonical bytes recognised in place (fast path). */
type EntryEvent =
  | null
  | { readonly obj: Record<string, unknown> }
  | { readonly bytes: Uint8Array; readonly scan: CanonicalObjectScan };

const B64_VALUES = new Int8Array(256).fill(-1);
const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < B64_ALPHABET.length; i++) B64_VALUES[B64_ALPHABET.charCodeAt(i)] = i;

/**
 * Decodes the 44 bytes at `at` as canonical padded base64 of 32 bytes (exactly what LEAF_HASH_B64 accepts:
 * 43 alphabet characters, the last with two zero padding bits, then "="); undefined for anything else.
 */
function decodeHashB64(b: Uint8Array, at: number): Uint8Array | undefined {
  const out = new Uint8Array(32);
  let o = 0;
  for (let i = at; i < at + 40; i += 4) {
    const v0 = B64_VALUES[b[i] as number] as number;
    const v1 = B64_VALUES[b[i + 1] as number] as number;
    const v2 = B64_VALUES[b[i + 2] as number] as number;
    const v3 = B64_VALUES[b[i + 3] as number] as number;
    if ((v0 | v1 | v2 | v3) < 0) return undefined;
    const v = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
    out[o++] = v >> 16;
    out[o++] = (v >> 8) & 0xff;
    out[o++] = v & 0xff;
  }
  const v0 = B64_VALUES[b[at + 40] as number] as number;
  const v1 = B64_VALUES[b[at + 41] as number] as number;
  const v2 = B64_VALUES[b[at + 42] as number] as number;
  if ((v0 | v1 | v2) < 0 || (v2 & 3) !== 0 || b[at + 43] !== 0x3d) return undefined;
  const v = (v0 << 18) | (v1 << 12) | (v2 << 6);
  out[30] = v >> 16;
  out[31] = (v >> 8) & 0xff;
  return out;
}

function matchAt(b: Uint8Array, at: number, want: Uint8Array): boolean {
  if (at + want.byteLength > b.byteLength) return false;
  for (let i = 0; i < want.byteLength; i++) if (b[at + i] !== want[i]) return false;
  return true;
}

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

  /**
   * Entry lines exactly as `AuditLog.export` writes them, with an event whose bytes are recognised as canonical
   * in place (`scanCanonicalObject`): no JSON.parse, no re-serialisation, the bytes are hashed as they are. It
   * accepts only lines the general path would parse to the same index, leaf hash and event, so the outcome is
   * identical; it returns false (the general path takes over) for anything else.
   */
  #fastEntry(item: ExportLine): boolean {
    let b: Uint8Array;
    if (typeof item === 'string') {
      // A well-formed string's UTF-8 bytes decode back to it; otherwise the general path handles it.
      if (!item.isWellFormed()) return false;
      b = Buffer.from(item, 'utf8');
    } else {
      b = item;
    }
    if (!matchAt(b, 0, ENTRY_HEAD)) return false;
    let p = ENTRY_HEAD.byteLength;
    const digitsStart = p;
    let index = 0;
    while (p < b.byteLength && (b[p] as number) >= 0x30 && (b[p] as number) <= 0x39) {
      index = index * 10 + ((b[p] as number) - 0x30);
      p++;
    }
    const digits = p - digitsStart;
    if (digits === 0 || digits > 16 || (digits > 1 && b[digitsStart] === 0x30) || !isSize(index))
      return false;
    if (!matchAt(b, p, ENTRY_HASH)) return false;
    p += ENTRY_HASH.byteLength;
    if (p + B64_HASH_LENGTH > b.byteLength) return false;
    const leaf = decodeHashB64(b, p);
    if (leaf === undefined) return false;
    p += B64_HASH_LENGTH;
    if (!matchAt(b, p, ENTRY_EVENT)) return false;
    p += ENTRY_EVENT.byteLength;
    const end = b.byteLength - 1;
    if (b[end] !== 0x7d) return false;
    if (p + NULL_EVENT.byteLength === b.byteLength && matchAt(b, p, NULL_EVENT)) {
      this.#acceptEntry(index, leaf, null);
      return true;
    }
    const scan = scanCanonicalObject(b, p, end);
    if (scan === undefined) return false;
    this.#acceptEntry(index, leaf, { bytes: b.subarray(p, end), scan });
    return true;
  }

  #acceptEntry(index: number, leaf: Uint8Array, event: EntryEvent): void {
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
    if (event === null) {
      if (h !== undefined && index >= h.from && index < h.to) this.#pruned++;
      return;
    }
    if (h !== undefined && (index < h.from || index >= h.to)) {
      this.add({
        kind: 'range-violation',
        index,
        line: this.#line,
        message: 'event body outside the header range',
      });
    }
    if (!this.#o.checkBodies) return;
    this.#bodies++;
    const parsed = 'obj' in event ? event.obj : undefined;
    if (
      (parsed !== undefined ? parsed.index : (event as { scan: CanonicalObjectScan }).scan.index) !== index
    ) {
      this.add({
        kind: 'body-mismatch',
        index,
        line: this.#line,
        message: 'event.index differs from the entry index',
      });
      return;
    }
    const time = parsed !== undefined ? parsed.time : (event as { scan: CanonicalObjectScan }).scan.time;
    if (typeof time !== 'string' || !RFC3339_MS_UTC.test(time)) {
      this.#malformed('event time is not RFC 3339 UTC with milliseconds');
    }
    let canonical: Uint8Array;
    if (parsed === undefined) {
      canonical = (event as { bytes: Uint8Array }).bytes;
    } else {
      try {
        canonical = Buffer.from(canonicalJson(parsed), 'utf8');
      } catch {
        this.#malformed('event cannot be canonicalised');
        return;
      }
    }
    if (!digestEquals(leafHashEncoded(canonical, 'binary'), leaf)) {
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
                : 'recomputed root differs from the checkpoint (use compareWith or previous.frontier to locate)',
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

  for await (const item of input) {
    if (Array.isArray(item)) {
      const batch = item as readonly LineItem[];
      if (ref !== undefined) await ref.fill(batch.length);
      for (const line of batch) checker.push(line);
    } else {
      if (ref !== undefined) await ref.fill(1);
      checker.push(item as LineItem);
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

/** Verifies an export file. Reads it once, sequentially, in 1 MiB chunks. */
export function verifyExportFile(path: string, opts: VerifyExportOptions): Promise<VerifyExportReport> {
  return run(readLineBatches(path), opts);
}
