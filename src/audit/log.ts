/**
 * Warden's tamper-evident audit log: an append-only RFC 6962 Merkle log kept in Warden's store (SQLite by default,
 * PostgreSQL), with group-committed durable appends, signed C2SP checkpoints, inclusion and consistency proofs,
 * filtered queries with paging, retention pruning that keeps every hash, and export in the format of
 * docs/spec/audit-export.md. It implements `AuditRecorder`, so every component records through it unchanged.
 * Design and measured figures: docs/audit.md.
 */
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { constantTimeEqual } from '../crypto/index.ts';
import { InvalidInputError } from '../crypto/index.ts';
import { openStore } from '../store/index.ts';
import type { Store, StoreConfig } from '../store/index.ts';
import { canonicalBytes } from './canonical.ts';
import { isValidKeyName, openCheckpoint, parseCheckpoint, signCheckpoint } from './checkpoint.ts';
import type { NoteSigner, NoteVerifier } from './checkpoint.ts';
import {
  MerkleFrontier,
  emptyRoot,
  frontierCoords,
  leafHash,
  planConsistencyProof,
  planInclusionProof,
  planRoot,
  assembleProof,
  verifyConsistency,
} from './merkle.ts';
import {
  AUDIT_STATE_ID,
  TERM_COLUMNS,
  auditLogMigrations,
  fetchSubtreeHashes,
  indexTerms,
  insertBatch,
} from './log-store.ts';
import type { AuditDB, AuditEntriesTable, AuditNodesTable } from './log-store.ts';
import { AuditLogError } from './errors.ts';
import type { AuditLogFailure } from './errors.ts';
import { AuditHasher } from './recorder.ts';
import { BLOCK_SIZE, BlockCombiner, summarizeBlock } from './verify-blocks.ts';
import type { BlockSummary, EntryRow } from './verify-blocks.ts';
import { MAX_VERIFY_THREADS, verifyInWorkers } from './verify-parallel.ts';
import type { VerifyBlockJob } from './verify-worker.ts';
import type { AuditEvent, AuditRecorder } from './recorder.ts';

/** Default retention: event bodies older than this are pruned by the scheduled `prune` (the lead schedules it). */
export const DEFAULT_RETENTION_MS = 365 * 24 * 60 * 60 * 1000;
/** Largest page `query` returns. */
export const MAX_QUERY_LIMIT = 1000;
const DEFAULT_QUERY_LIMIT = 100;
const DEFAULT_CHECKPOINT_SECONDS = 10;
const DEFAULT_CHECKPOINT_ENTRIES = 10_000;
/** Most events committed by one transaction. */
const DEFAULT_MAX_BATCH = 4096;
/** Entries read per query by export and verify. */
const SCAN_PAGE = 5000;
/** Entries whose bodies one prune transaction drops (short transactions: the writer keeps going). */
const PRUNE_CHUNK = 10_000;
/** The query index is brought up to date in the background once it lags this many entries behind. */
const INDEX_LAG = 8192;
/**
 * Entries whose terms one index transaction adds. Each transaction is one synchronous statement on the event loop:
 * 8192 entries took ~30 ms, a stall every 8192 appends under load; 1024 take ~4 ms, and the run yields a turn
 * between transactions.
 */
const INDEX_CHUNK = 1024;

export { AuditLogError };
export type { AuditLogFailure };

// ---------------------------------------------------------------------------------------------------------
// Public types.

export interface AuditLogOptions {
  /** Where the log lives. A `StoreConfig` is opened (and closed by `close()`); a `Store` is used and left open. */
  readonly store: StoreConfig | Store<AuditDB>;
  /** Checkpoint origin; must be a valid key name, and the signer's key name by convention. */
  readonly origin: string;
  readonly signer: NoteSigner;
  /** Sign a checkpoint when this many seconds passed or entries were added since the last one. 10 s / 10 000. */
  readonly checkpointEvery?: { readonly seconds: number; readonly entries: number };
  /** Per-log key of `hash()` (keyed hashes of sensitive values). */
  readonly hasherKey?: Uint8Array;
  /** Clock, epoch milliseconds. Entry times never go backwards even if it does. */
  readonly now?: () => number;
  /** Failures of background work (timed checkpoints). Default: ignored, retried at the next trigger. */
  readonly onBackgroundError?: (err: unknown) => void;
  /** Most events per transaction. Default 4096. */
  readonly maxBatch?: number;
}

/** A logged entry: the event plus its position and time (RFC 3339 UTC, milliseconds). */
export type AuditEntry = AuditEvent & { readonly index: number; readonly time: string };

export interface AppendReceipt {
  readonly index: number;
  readonly time: string;
  readonly leafHash: Uint8Array;
}

export interface StoredCheckpoint {
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  /** The signed note (C2SP checkpoint). */
  readonly note: string;
  /** When it was signed, epoch ms. */
  readonly createdAt: number;
}

/** Instants as epoch milliseconds or RFC 3339 strings. */
export type AuditTime = number | string | Date;

export interface AuditQuery {
  /** Principal id. */
  readonly principal?: string;
  readonly action?: string;
  readonly resource?: string;
  readonly outcome?: string;
  /** Inclusive. */
  readonly from?: AuditTime;
  /** Exclusive. */
  readonly to?: AuditTime;
  /** Cursor: only entries with a larger index. */
  readonly after?: number;
  /** 1..1000, default 100. */
  readonly limit?: number;
}

export interface AuditQueryEntry {
  readonly index: number;
  readonly time: string;
  readonly leafHash: Uint8Array;
  /** The entry, or null when its body was pruned by retention. */
  readonly entry: AuditEntry | null;
}

export interface AuditQueryPage {
  readonly entries: readonly AuditQueryEntry[];
  /** Pass as `after` for the next page; null when this page is the last. */
  readonly nextCursor: number | null;
}

/** Receives export lines (without the trailing newline), in order. */
export type AuditLineConsumer = (line: string) => void | Promise<void>;

export interface AuditExportOptions {
  /** Bodies of entries with time ≥ from (inclusive) … */
  readonly from?: AuditTime;
  /** … and time < to are included; other entries carry only their leaf hash. */
  readonly to?: AuditTime;
}

export interface AuditExportSummary {
  readonly treeSize: number;
  readonly from: number;
  readonly to: number;
  readonly checkpoint: StoredCheckpoint;
}

export interface AuditVerifyReport {
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
  /** Entries whose body was re-hashed and matched its leaf hash. */
  readonly bodiesChecked: number;
  /** Entries whose body was pruned (leaf hash only). */
  readonly bodiesPruned: number;
  /** Stored checkpoints whose root was recomputed from the leaves (and signature checked, with a verifier). */
  readonly checkpointsChecked: number;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** `isoTime` for the append path, where consecutive entries mostly share a millisecond. */
class IsoClock {
  #ms = Number.NaN;
  #text = '';
  format(ms: number): string {
    if (ms !== this.#ms) {
      this.#ms = ms;
      this.#text = isoTime(ms);
    }
    return this.#text;
  }
}

function toMillis(t: AuditTime, what: string): number {
  const ms = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : t.getTime();
  if (!Number.isFinite(ms)) throw new InvalidInputError(`${what} is not a valid time`);
  return Math.trunc(ms);
}

function requireIndex(n: unknown, what: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new InvalidInputError(`${what} must be a non-negative safe integer`);
  }
}

function isStore(s: StoreConfig | Store<AuditDB>): s is Store<AuditDB> {
  return typeof (s as Partial<Store<AuditDB>>).transaction === 'function';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A plain Uint8Array copy (node:crypto digests are Buffers; the store's convention is plain Uint8Array). */
function plain(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

interface Pending {
  readonly event: AuditEvent;
  readonly resolve: (r: AppendReceipt) => void;
  readonly reject: (err: unknown) => void;
}

/** Builds the entry object of an event: its fields plus index and time (which win over anything in the event). */
function buildEntry(event: AuditEvent, index: number, time: string): AuditEntry {
  if (typeof event !== 'object' || (event as unknown) === null) {
    throw new InvalidInputError('audit event must be an object');
  }
  const { action, resource, outcome, principal } = event;
  if (
    typeof action !== 'string' ||
    typeof resource !== 'string' ||
    typeof outcome !== 'string' ||
    typeof principal !== 'object' ||
    (principal as unknown) === null ||
    typeof principal.id !== 'string'
  ) {
    throw new InvalidInputError('audit event needs string action, resource, outcome and principal.id');
  }
  const entry: AuditEntry = { ...event, index, time };
  if (typeof event.latencyMs === 'number') {
    // JCS numbers: latency is the one non-integer, rounded to microseconds (canonical.ts).
    return { ...entry, latencyMs: Math.round(event.latencyMs * 1000) / 1000 };
  }
  return entry;
}

// ---------------------------------------------------------------------------------------------------------
// The log.

/**
 * The tamper-evident audit log. One writer per log: open it once (per database) and share it; a second writer on
 * the same database is detected (`concurrent_writer`) rather than allowed to fork the log.
 */
export class AuditLog implements AuditRecorder {
  readonly origin: string;
  readonly #store: Store<AuditDB>;
  readonly #ownsStore: boolean;
  readonly #signer: NoteSigner;
  readonly #hasher: AuditHasher | undefined;
  readonly #now: () => number;
  readonly #checkpointEntries: number;
  readonly #maxBatch: number;
  readonly #onBackgroundError: (err: unknown) => void;
  readonly #timer: NodeJS.Timeout;

  /** Committed state: only ever replaced after a commit. */
  #frontier: MerkleFrontier;
  #lastTime: number;
  #latest: StoredCheckpoint | undefined;
  /** A batch failed: the in-memory state may be behind the database; reload before the next batch. */
  #stale = false;
  readonly #clock = new IsoClock();
  /** Entries below this index are in the query index (`audit_terms`). */
  #indexedBelow: number;
  #indexing: Promise<unknown> = Promise.resolve();
  #indexPending = false;

  #queue: Pending[] = [];
  #draining: Promise<void> | undefined;
  #checkpointing: Promise<unknown> = Promise.resolve();
  /**
   * Prunes exclude exports and `verify()`: they read the log page by page, and a prune between two pages would
   * show bodies before pruned ones, which the verifiers take for bodies withheld (`#readingWhole`).
   */
  #pruning: Promise<unknown> = Promise.resolve();
  readonly #readers = new Set<Promise<unknown>>();
  #backgroundPending = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  private constructor(
    store: Store<AuditDB>,
    ownsStore: boolean,
    options: AuditLogOptions,
    frontier: MerkleFrontier,
    lastTime: number,
    latest: StoredCheckpoint | undefined,
    indexedBelow: number,
  ) {
    this.#store = store;
    this.#ownsStore = ownsStore;
    this.origin = options.origin;
    this.#signer = options.signer;
    this.#hasher = options.hasherKey === undefined ? undefined : new AuditHasher(options.hasherKey);
    this.#now = options.now ?? Date.now;
    const every = options.checkpointEvery ?? {
      seconds: DEFAULT_CHECKPOINT_SECONDS,
      entries: DEFAULT_CHECKPOINT_ENTRIES,
    };
    if (!(every.seconds > 0) || !Number.isSafeInteger(every.entries) || every.entries < 1) {
      throw new InvalidInputError('checkpointEvery needs seconds > 0 and entries ≥ 1');
    }
    this.#checkpointEntries = every.entries;
    this.#maxBatch = Math.max(1, Math.trunc(options.maxBatch ?? DEFAULT_MAX_BATCH));
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
    this.#frontier = frontier;
    this.#lastTime = lastTime;
    this.#latest = latest;
    this.#indexedBelow = indexedBelow;
    this.#timer = setInterval(() => {
      if (this.#frontier.size !== (this.#latest?.treeSize ?? -1)) this.#backgroundCheckpoint();
      if (this.#indexedBelow < this.#frontier.size) this.#backgroundIndex();
    }, every.seconds * 1000);
    this.#timer.unref();
  }

  /**
   * Opens (creating if needed) the log: migrates the schema, loads the persisted frontier and checks it against
   * the stored rows and the latest checkpoint (throws `AuditLogError('integrity')` if they disagree).
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    if (!isValidKeyName(options.origin))
      throw new InvalidInputError('audit log origin must be a valid key name');
    const owns = !isStore(options.store);
    const store = isStore(options.store) ? options.store : await openStore<AuditDB>(options.store);
    try {
      await store.migrate(auditLogMigrations);
      const now = options.now ?? Date.now;
      let state = await store.db
        .selectFrom('audit_state')
        .selectAll()
        .where('id', '=', AUDIT_STATE_ID)
        .executeTakeFirst();
      if (state === undefined) {
        const empty = new MerkleFrontier();
        await store.db
          .insertInto('audit_state')
          .values({
            id: AUDIT_STATE_ID,
            origin: options.origin,
            size: 0,
            frontier: empty.serialize(),
            pruned_below: 0,
            updated_at: now(),
          })
          .onConflict((oc) => oc.column('id').doNothing())
          .execute();
        state = await store.db
          .selectFrom('audit_state')
          .selectAll()
          .where('id', '=', AUDIT_STATE_ID)
          .executeTakeFirstOrThrow();
      }
      if (state.origin !== options.origin) {
        throw new InvalidInputError('this database holds the audit log of another origin');
      }
      const frontier = await loadFrontier(store.db, state.frontier, state.size);
      const last = await store.db
        .selectFrom('audit_entries')
        .select('time')
        .orderBy('idx', 'desc')
        .limit(1)
        .executeTakeFirst();
      const latest = await latestCheckpoint(store.db);
      if (latest !== undefined) {
        if (latest.treeSize > frontier.size) {
          throw new AuditLogError('integrity', 'the log is shorter than its latest signed checkpoint');
        }
        const root = assembleProof(
          planRoot(latest.treeSize),
          await fetchSubtreeHashes(store.db, planRoot(latest.treeSize).nodes),
        )[0];
        if (root === undefined || !constantTimeEqual(root, latest.rootHash)) {
          throw new AuditLogError('integrity', 'stored hashes do not match the latest signed checkpoint');
        }
      }
      const terms = await store.db
        .selectFrom('audit_terms_state')
        .select('indexed_below')
        .where('id', '=', AUDIT_STATE_ID)
        .executeTakeFirstOrThrow();
      return new AuditLog(store, owns, options, frontier, last?.time ?? 0, latest, terms.indexed_below);
    } catch (err) {
      if (owns) await store.close();
      throw err;
    }
  }

  /** Number of committed entries. */
  get size(): number {
    return this.#frontier.size;
  }

  /** Root over the committed entries. */
  root(): Uint8Array {
    return plain(this.#frontier.root());
  }

  // -------------------------------------------------------------------------------------------------------
  // Appending.

  /** Records an event; resolves once it is committed (durable). Rejects, recording nothing, when it cannot be. */
  async record(event: AuditEvent): Promise<void> {
    await this.append(event);
  }

  /** As `record`, and says where the event went. */
  append(event: AuditEvent): Promise<AppendReceipt> {
    if (this.#closed) return Promise.reject(new AuditLogError('closed', 'audit log is closed'));
    return new Promise<AppendReceipt>((resolve, reject) => {
      this.#queue.push({ event, resolve, reject });
      // Start the writer on the next turn so everything recorded in this one shares the first batch.
      this.#draining ??= new Promise<void>((r) => setImmediate(r)).then(() => this.#drain());
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      await this.#commit(batch);
      // Yield to the event loop between batches. SQLite commits synchronously, so when writers append again as
      // soon as they are acknowledged the queue never empties, and without this turn timers and I/O (sockets,
      // pipes, the checkpoint timer) would starve for as long as they keep writing.
      if (this.#queue.length > 0) await new Promise<void>((r) => setImmediate(r));
    }
    this.#draining = undefined;
  }

  async #commit(batch: readonly Pending[]): Promise<void> {
    if (this.#stale) {
      try {
        await this.#reload();
      } catch (err) {
        const e = new AuditLogError('unavailable', 'audit log storage is unavailable', { cause: err });
        for (const p of batch) p.reject(e);
        return;
      }
    }
    const base = this.#frontier.size;
    const frontier = this.#frontier.clone();
    let lastTime = this.#lastTime;
    const rows: AuditEntriesTable[] = [];
    const nodes: AuditNodesTable[] = [];
    const accepted: { pending: Pending; receipt: AppendReceipt }[] = [];
    for (const p of batch) {
      const index = base + accepted.length;
      const ms = Math.max(lastTime, Math.trunc(this.#now()));
      const time = this.#clock.format(ms);
      let body: Buffer;
      try {
        body = canonicalBytes(buildEntry(p.event, index, time));
      } catch (err) {
        p.reject(
          err instanceof InvalidInputError ? err : new InvalidInputError('audit event is not encodable'),
        );
        continue;
      }
      lastTime = ms;
      const leaf = leafHash(body);
      for (const n of frontier.append(leaf)) {
        if (n.level > 0) nodes.push({ level: n.level, idx: n.index, hash: n.hash });
      }
      rows.push({
        idx: index,
        time: ms,
        leaf_hash: leaf,
        body,
        principal: p.event.principal.id,
        action: p.event.action,
        resource: p.event.resource,
        outcome: p.event.outcome,
      });
      accepted.push({ pending: p, receipt: { index, time, leafHash: leaf } });
    }
    if (accepted.length === 0) return;
    const serialized = frontier.serialize();
    try {
      await this.#store.transaction(
        async (trx) => {
          // Compare-and-swap on the size: a second writer makes this fail instead of forking the log.
          const res = await trx
            .updateTable('audit_state')
            .set({ size: frontier.size, frontier: serialized, updated_at: lastTime })
            .where('id', '=', AUDIT_STATE_ID)
            .where('size', '=', base)
            .executeTakeFirst();
          if (res.numUpdatedRows !== 1n) {
            throw new AuditLogError('concurrent_writer', 'the audit log was changed by another writer');
          }
          await insertBatch(trx, this.#store.kind, rows, nodes);
        },
        { isolation: 'read committed' },
      );
    } catch (err) {
      this.#stale = true;
      const e =
        err instanceof AuditLogError
          ? err
          : new AuditLogError('unavailable', 'audit log storage is unavailable', { cause: err });
      for (const a of accepted) a.pending.reject(e);
      return;
    }
    this.#frontier = frontier;
    this.#lastTime = lastTime;
    for (const a of accepted) a.pending.resolve(a.receipt);
    if (frontier.size - (this.#latest?.treeSize ?? 0) >= this.#checkpointEntries)
      this.#backgroundCheckpoint();
    if (frontier.size - this.#indexedBelow >= INDEX_LAG) this.#backgroundIndex();
  }

  // -------------------------------------------------------------------------------------------------------
  // Query index.

  /**
   * Brings the query index up to the committed size, in transactions of INDEX_CHUNK entries, one run at a time.
   * The index is derived data: the entries are the truth, and a crash only leaves the watermark behind.
   */
  #index(): Promise<unknown> {
    const run = this.#indexing.then(async () => {
      const target = this.#frontier.size;
      while (this.#indexedBelow < target) {
        const lo = this.#indexedBelow;
        const hi = Math.min(target, lo + INDEX_CHUNK);
        await this.#store.transaction((trx) => indexTerms(trx, this.#store.kind, lo, hi), {
          isolation: 'read committed',
        });
        this.#indexedBelow = hi;
        if (this.#indexedBelow < target) await new Promise<void>((r) => setImmediate(r));
      }
    });
    this.#indexing = run.catch(() => undefined);
    return run;
  }

  #backgroundIndex(): void {
    if (this.#indexPending || this.#closed) return;
    this.#indexPending = true;
    this.#index()
      .catch((err: unknown) => {
        this.#onBackgroundError(err);
      })
      .finally(() => {
        this.#indexPending = false;
      });
  }

  /** After a failed batch: the commit may have happened anyway (lost reply) or another writer moved on. */
  async #reload(): Promise<void> {
    const state = await this.#store.db
      .selectFrom('audit_state')
      .selectAll()
      .where('id', '=', AUDIT_STATE_ID)
      .executeTakeFirstOrThrow();
    const frontier = await loadFrontier(this.#store.db, state.frontier, state.size);
    const last = await this.#store.db
      .selectFrom('audit_entries')
      .select('time')
      .orderBy('idx', 'desc')
      .limit(1)
      .executeTakeFirst();
    this.#frontier = frontier;
    this.#lastTime = Math.max(this.#lastTime, last?.time ?? 0);
    this.#stale = false;
  }

  // -------------------------------------------------------------------------------------------------------
  // Proofs.

  #requireSize(treeSize: number): void {
    requireIndex(treeSize, 'tree size');
    if (treeSize > this.#frontier.size) throw new InvalidInputError('tree size exceeds the log size');
  }

  /** Inclusion proof of entry `index` in the tree of `treeSize` entries (default: the current size). */
  async inclusionProof(index: number, treeSize: number = this.size): Promise<Uint8Array[]> {
    this.#requireSize(treeSize);
    const plan = planInclusionProof(index, treeSize);
    return assembleProof(plan, await fetchSubtreeHashes(this.#store.db, plan.nodes)).map(plain);
  }

  /** Consistency proof from `size1` to `size2` (default: the current size), 0 < size1 ≤ size2. */
  async consistencyProof(size1: number, size2: number = this.size): Promise<Uint8Array[]> {
    this.#requireSize(size2);
    const plan = planConsistencyProof(size1, size2);
    return assembleProof(plan, await fetchSubtreeHashes(this.#store.db, plan.nodes)).map(plain);
  }

  /** Root of the tree of the first `treeSize` entries. */
  async rootAt(treeSize: number): Promise<Uint8Array> {
    this.#requireSize(treeSize);
    if (treeSize === this.#frontier.size) return this.root();
    const plan = planRoot(treeSize);
    return plain(assembleProof(plan, await fetchSubtreeHashes(this.#store.db, plan.nodes))[0] as Uint8Array);
  }

  /** Stored leaf hashes of entries [from, to). */
  async leafHashes(from: number, to: number): Promise<Uint8Array[]> {
    requireIndex(from, 'from');
    this.#requireSize(to);
    const rows = await this.#store.db
      .selectFrom('audit_entries')
      .select(['idx', 'leaf_hash'])
      .where('idx', '>=', from)
      .where('idx', '<', to)
      .orderBy('idx')
      .execute();
    return rows.map((r) => r.leaf_hash);
  }

  // -------------------------------------------------------------------------------------------------------
  // Checkpoints.

  /** The latest signed checkpoint, if any. */
  latestCheckpoint(): StoredCheckpoint | undefined {
    return this.#latest;
  }

  /** All stored checkpoints, oldest first. */
  async checkpoints(): Promise<StoredCheckpoint[]> {
    const rows = await this.#store.db.selectFrom('audit_checkpoints').selectAll().orderBy('size').execute();
    return rows.map(rowToCheckpoint);
  }

  /**
   * Signs a checkpoint of the current committed size (returns the latest one if nothing was added since), after
   * checking that it extends the previous checkpoint. Checkpoints are made one at a time.
   */
  checkpoint(): Promise<StoredCheckpoint> {
    const run = this.#checkpointing.then(() => this.#makeCheckpoint());
    this.#checkpointing = run.catch(() => undefined);
    return run;
  }

  #backgroundCheckpoint(): void {
    if (this.#backgroundPending) return; // one queued background checkpoint covers every trigger until it runs
    this.#backgroundPending = true;
    this.checkpoint()
      .catch((err: unknown) => {
        this.#onBackgroundError(err);
      })
      .finally(() => {
        this.#backgroundPending = false;
      });
  }

  async #makeCheckpoint(): Promise<StoredCheckpoint> {
    const size = this.#frontier.size;
    const root = this.root();
    const prev = this.#latest;
    if (prev !== undefined) {
      if (prev.treeSize > size)
        throw new AuditLogError('integrity', 'the log shrank below its last checkpoint');
      if (prev.treeSize === size) {
        if (!constantTimeEqual(prev.rootHash, root)) {
          throw new AuditLogError('integrity', 'the root changed at the size of the last checkpoint');
        }
        return prev;
      }
      if (prev.treeSize > 0) {
        // Never sign a checkpoint that does not extend the previous one.
        const proof = await this.consistencyProof(prev.treeSize, size);
        try {
          verifyConsistency(prev.treeSize, size, proof, prev.rootHash, root);
        } catch (err) {
          throw new AuditLogError('integrity', 'the log does not extend its last checkpoint', { cause: err });
        }
      }
    }
    const note = await signCheckpoint(
      { origin: this.origin, treeSize: size, rootHash: root, extensions: [] },
      this.#signer,
    );
    const cp: StoredCheckpoint = { treeSize: size, rootHash: root, note, createdAt: this.#now() };
    await this.#store.db
      .insertInto('audit_checkpoints')
      .values({ size, root, note, created_at: cp.createdAt })
      .execute();
    this.#latest = cp;
    return cp;
  }

  // -------------------------------------------------------------------------------------------------------
  // Query, retention, export.

  /** Entries matching every given filter, in index order, one page at a time. */
  async query(q: AuditQuery = {}): Promise<AuditQueryPage> {
    const limit = q.limit ?? DEFAULT_QUERY_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_QUERY_LIMIT) {
      throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_QUERY_LIMIT}`);
    }
    if (q.after !== undefined) requireIndex(q.after, 'after');
    const from = q.from === undefined ? undefined : toMillis(q.from, 'from');
    const to = q.to === undefined ? undefined : toMillis(q.to, 'to');
    const terms: { column: string; term: string }[] = [];
    for (const [column, prefix] of TERM_COLUMNS) {
      const value = q[column];
      if (value !== undefined) terms.push({ column, term: `${prefix}${value}` });
    }
    let rows: { idx: number; time: number; leaf_hash: Uint8Array; body: Uint8Array | null }[];
    const first = terms[0];
    if (first === undefined) {
      let sel = this.#store.db.selectFrom('audit_entries').select(['idx', 'time', 'leaf_hash', 'body']);
      if (from !== undefined) sel = sel.where('time', '>=', from);
      if (to !== undefined) sel = sel.where('time', '<', to);
      if (q.after !== undefined) sel = sel.where('idx', '>', q.after);
      rows = await sel
        .orderBy('idx')
        .limit(limit + 1)
        .execute();
    } else {
      // Filtered: walk the first filter's terms in index order (one range scan of audit_terms) and check the
      // others on the joined entry. The index is first brought up to every committed entry.
      await this.#index();
      const upper = this.#indexedBelow;
      let sel = this.#store.db
        .selectFrom('audit_terms as t')
        .innerJoin('audit_entries as e', 'e.idx', 't.idx')
        .select(['e.idx', 'e.time', 'e.leaf_hash', 'e.body'])
        .where('t.term', '=', first.term)
        .where('t.idx', '<', upper);
      for (const { column, term } of terms.slice(1)) {
        sel = sel.where(sql.ref(`e.${column}`), '=', term.slice(2));
      }
      // Times never decrease with the index: the start of a time range is an index bound for the term scan.
      if (from !== undefined) {
        sel = sel
          .where('e.time', '>=', from)
          .where('t.idx', '>=', await this.#firstIndexAtOrAfter(from, upper));
      }
      if (to !== undefined) sel = sel.where('e.time', '<', to);
      if (q.after !== undefined) sel = sel.where('t.idx', '>', q.after);
      rows = await sel
        .orderBy('t.idx')
        .limit(limit + 1)
        .execute();
    }
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    return {
      entries: page.map((r) => ({
        index: r.idx,
        time: isoTime(r.time),
        leafHash: r.leaf_hash,
        entry: r.body === null ? null : (JSON.parse(utf8.decode(r.body)) as AuditEntry),
      })),
      nextCursor: more ? (page.at(-1)?.idx ?? null) : null,
    };
  }

  /**
   * Retention: drops the bodies of entries older than `olderThan` (epoch ms), keeping their leaf hashes and every
   * node, so roots, proofs and checkpoints stay verifiable. Returns how many bodies were dropped. The policy
   * (default DEFAULT_RETENTION_MS) and the schedule belong to the caller.
   */
  prune(olderThan: AuditTime): Promise<number> {
    const readers = [...this.#readers];
    const run = this.#pruning.then(async () => {
      await Promise.allSettled(readers);
      return this.#prune(olderThan);
    });
    this.#pruning = run.catch(() => undefined);
    return run;
  }

  async #prune(olderThan: AuditTime): Promise<number> {
    const cutoff = toMillis(olderThan, 'olderThan');
    // Times never decrease with the index: the entries older than the cutoff are a prefix [0, end).
    const end = await this.#firstIndexAtOrAfter(cutoff, this.#frontier.size);
    const state = await this.#store.db
      .selectFrom('audit_state')
      .select('pruned_below')
      .where('id', '=', AUDIT_STATE_ID)
      .executeTakeFirstOrThrow();
    let dropped = 0;
    for (let at = state.pruned_below; at < end; at += PRUNE_CHUNK) {
      const hi = Math.min(end, at + PRUNE_CHUNK);
      dropped += await this.#store.transaction(
        async (trx) => {
          const res = await trx
            .updateTable('audit_entries')
            .set({ body: null })
            .where('idx', '>=', at)
            .where('idx', '<', hi)
            .where('body', 'is not', null)
            .executeTakeFirst();
          await trx
            .updateTable('audit_state')
            .set({ pruned_below: hi })
            .where('id', '=', AUDIT_STATE_ID)
            .where('pruned_below', '<', hi)
            .execute();
          return Number(res.numUpdatedRows);
        },
        { isolation: 'read committed' },
      );
    }
    return dropped;
  }

  /**
   * Writes an export (docs/spec/audit-export.md) of the whole tree to `sink`: a writable stream (lines joined by
   * "\n", backpressure respected) or a function called with each line. A checkpoint is signed first so the
   * export's tree size is covered; bodies are included for entries whose time is in [from, to).
   */
  export(
    sink: NodeJS.WritableStream | AuditLineConsumer,
    options: AuditExportOptions = {},
  ): Promise<AuditExportSummary> {
    return this.#readingWhole(() => this.#export(sink, options));
  }

  /** Runs `read` after the prunes already asked for; a prune asked for meanwhile waits for it. */
  #readingWhole<T>(read: () => Promise<T>): Promise<T> {
    const run = this.#pruning.then(read);
    const settled = run.catch(() => undefined);
    this.#readers.add(settled);
    void settled.then(() => this.#readers.delete(settled));
    return run;
  }

  async #export(
    sink: NodeJS.WritableStream | AuditLineConsumer,
    options: AuditExportOptions,
  ): Promise<AuditExportSummary> {
    const cp = await this.checkpoint();
    const n = cp.treeSize;
    const from =
      options.from === undefined ? 0 : await this.#firstIndexAtOrAfter(toMillis(options.from, 'from'), n);
    const to = Math.max(
      from,
      options.to === undefined ? n : await this.#firstIndexAtOrAfter(toMillis(options.to, 'to'), n),
    );
    const write = lineWriter(sink);
    await write([
      JSON.stringify({ type: 'warden-audit-export', version: 1, origin: this.origin, treeSize: n, from, to }),
    ]);
    for (let at = 0; at < n; at += SCAN_PAGE) {
      const end = Math.min(n, at + SCAN_PAGE);
      const withBodies = at < to && end > from;
      const rows = await this.#store.db
        .selectFrom('audit_entries')
        .select(withBodies ? ['idx', 'leaf_hash', 'body'] : ['idx', 'leaf_hash'])
        .where('idx', '>=', at)
        .where('idx', '<', end)
        .orderBy('idx')
        .execute();
      if (rows.length !== end - at)
        throw new AuditLogError('integrity', `entries missing in [${at}, ${end})`);
      const lines: string[] = [];
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i] as { idx: number; leaf_hash: Uint8Array; body?: Uint8Array | null };
        if (r.idx !== at + i) throw new AuditLogError('integrity', `entry ${at + i} is missing`);
        const body =
          r.idx >= from && r.idx < to && r.body !== undefined && r.body !== null
            ? utf8.decode(r.body)
            : 'null';
        lines.push(`{"type":"entry","index":${r.idx},"leafHash":"${b64(r.leaf_hash)}","event":${body}}`);
      }
      await write(lines);
    }
    await write([JSON.stringify({ type: 'checkpoint', note: cp.note })]);
    return { treeSize: n, from, to, checkpoint: cp };
  }

  async #firstIndexAtOrAfter(ms: number, n: number): Promise<number> {
    // Entry times never decrease with the index, so a time range is an index range.
    const row = await this.#store.db
      .selectFrom('audit_entries')
      .select((eb) => eb.fn.min('idx').as('first'))
      .where('time', '>=', ms)
      .where('idx', '<', n)
      .executeTakeFirst();
    return row?.first ?? n;
  }

  /**
   * Full check of the stored log: every body re-hashed against its leaf hash (and its `index` field), the tree
   * rebuilt from the leaf hashes, and every stored checkpoint's root (and, given a verifier, its signature and
   * origin) checked against it, and the final root against the persisted frontier. Throws
   * `AuditLogError('integrity')` naming the first bad index or checkpoint.
   */
  verify(options: { verifier?: NoteVerifier } = {}): Promise<AuditVerifyReport> {
    return this.#readingWhole(() => this.#verify(options));
  }

  async #verify(options: { verifier?: NoteVerifier }): Promise<AuditVerifyReport> {
    const size = this.#frontier.size;
    const cps = (await this.checkpoints()).filter((c) => c.treeSize <= size);
    let nextCp = 0;
    const checkCheckpointsAt = (treeSize: number, root: Uint8Array): void => {
      for (let c = cps[nextCp]; c !== undefined && c.treeSize === treeSize; c = cps[++nextCp]) {
        if (!constantTimeEqual(root, c.rootHash)) {
          throw new AuditLogError('integrity', `checkpoint at size ${c.treeSize} does not match the entries`);
        }
        const body = parseCheckpoint(c.note.slice(0, c.note.indexOf('\n\n') + 1));
        if (
          body.treeSize !== c.treeSize ||
          !constantTimeEqual(body.rootHash, c.rootHash) ||
          body.origin !== this.origin
        ) {
          throw new AuditLogError('integrity', `checkpoint at size ${c.treeSize} disagrees with its note`);
        }
        if (options.verifier !== undefined) openCheckpoint(c.note, [options.verifier], this.origin);
      }
    };
    checkCheckpointsAt(0, emptyRoot());
    const combiner = new BlockCombiner();
    for await (const block of this.#verifiedBlocks(
      size,
      cps.map((c) => c.treeSize),
    )) {
      for (const { size: at, root } of combiner.add(block)) checkCheckpointsAt(at, root);
      if (cps[nextCp]?.treeSize === combiner.size) checkCheckpointsAt(combiner.size, combiner.root());
    }
    const unchecked = cps[nextCp];
    if (unchecked !== undefined) {
      throw new AuditLogError('integrity', `checkpoint at size ${unchecked.treeSize} was not checked`);
    }
    const { bodiesChecked, bodiesPruned } = combiner;
    const rootHash = combiner.root();
    const state = await this.#store.db
      .selectFrom('audit_state')
      .select(['size', 'frontier'])
      .where('id', '=', AUDIT_STATE_ID)
      .executeTakeFirstOrThrow();
    const persisted = MerkleFrontier.deserialize(state.frontier);
    if (persisted.size < size || !constantTimeEqual(await this.rootAt(size), rootHash)) {
      throw new AuditLogError('integrity', 'stored nodes do not match the entries');
    }
    if (persisted.size === size && !constantTimeEqual(persisted.root(), rootHash)) {
      throw new AuditLogError('integrity', 'the persisted frontier does not match the entries');
    }
    return { treeSize: size, rootHash, bodiesChecked, bodiesPruned, checkpointsChecked: nextCp };
  }

  /**
   * The log's blocks (verify-blocks.ts), checked, in order. A SQLite log with more than one block is checked by
   * worker threads, each through its own read-only connection; otherwise (PostgreSQL, in-memory SQLite, small
   * logs, one CPU) block by block on this thread.
   */
  async *#verifiedBlocks(size: number, checkpointSizes: readonly number[]): AsyncGenerator<BlockSummary> {
    const jobs: VerifyBlockJob[] = [];
    let cp = 0; // checkpoint sizes are ascending: one pass hands each block the sizes strictly inside it
    for (let start = 0; start < size; start += BLOCK_SIZE) {
      const count = Math.min(BLOCK_SIZE, size - start);
      while (cp < checkpointSizes.length && (checkpointSizes[cp] as number) <= start) cp++;
      const prefixSizes: number[] = [];
      for (; cp < checkpointSizes.length && (checkpointSizes[cp] as number) < start + count; cp++) {
        prefixSizes.push(checkpointSizes[cp] as number);
      }
      jobs.push({ id: jobs.length, start, count, prefixSizes });
    }
    const threads = Math.min(availableParallelism(), MAX_VERIFY_THREADS, jobs.length);
    if (this.#store.file !== undefined && threads > 1) {
      yield* verifyInWorkers(this.#store.file, jobs, threads);
      return;
    }
    for (const job of jobs) {
      const rows = await this.#store.db
        .selectFrom('audit_entries')
        .select(['idx', 'leaf_hash', 'body'])
        .where('idx', '>=', job.start)
        .where('idx', '<', job.start + job.count)
        .orderBy('idx')
        .execute();
      yield summarizeBlock(
        job.start,
        job.count,
        rows.map((r): EntryRow => [r.idx, r.leaf_hash, r.body]),
        job.prefixSizes,
      );
    }
  }

  /** Keyed hash (`hmac-sha256:<hex>`) of a sensitive value with this log's key, for events and searches. */
  hash(value: string | Uint8Array): string {
    if (this.#hasher === undefined) throw new InvalidInputError('audit log opened without a hasherKey');
    return this.#hasher.hash(value);
  }

  /**
   * Stops accepting events, commits those already queued, signs a final checkpoint, and closes the store if the
   * log opened it. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      await this.#draining;
      await this.#indexing;
      await this.#checkpointing;
      if (!this.#stale) await this.checkpoint();
    } finally {
      if (this.#ownsStore) await this.#store.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading.

function rowToCheckpoint(r: {
  size: number;
  root: Uint8Array;
  note: string;
  created_at: number;
}): StoredCheckpoint {
  return { treeSize: r.size, rootHash: r.root, note: r.note, createdAt: r.created_at };
}

async function latestCheckpoint(db: Kysely<AuditDB>): Promise<StoredCheckpoint | undefined> {
  const row = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .orderBy('size', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : rowToCheckpoint(row);
}

/** The persisted frontier, checked against the node table and the entry count (the tables are the truth). */
async function loadFrontier(
  db: Kysely<AuditDB>,
  serialized: Uint8Array,
  size: number,
): Promise<MerkleFrontier> {
  const frontier = MerkleFrontier.deserialize(serialized);
  if (frontier.size !== size) throw new AuditLogError('integrity', 'persisted frontier and size disagree');
  const count = await db
    .selectFrom('audit_entries')
    .select((eb) => eb.fn.max('idx').as('last'))
    .executeTakeFirst();
  if ((count?.last ?? -1) !== size - 1) {
    throw new AuditLogError('integrity', 'persisted tree size does not match the stored entries');
  }
  const fromNodes = MerkleFrontier.fromSubtreeHashes(
    size,
    await fetchSubtreeHashes(db, frontierCoords(size)),
  );
  if (!constantTimeEqual(fromNodes.root(), frontier.root())) {
    throw new AuditLogError('integrity', 'persisted frontier does not match the stored nodes');
  }
  return fromNodes;
}

function lineWriter(sink: NodeJS.WritableStream | AuditLineConsumer): (lines: string[]) => Promise<void> {
  if (typeof sink === 'function') {
    return async (lines) => {
      for (const l of lines) await sink(l);
    };
  }
  return async (lines) => {
    if (lines.length === 0) return;
    if (!sink.write(`${lines.join('\n')}\n`)) await once(sink, 'drain');
  };
}
