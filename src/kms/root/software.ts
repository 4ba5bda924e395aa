import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, open, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';
import {
  AeadKey,
  constantTimeEqual,
  DecryptionError,
  hkdf,
  hkdfDeriveKey,
  HkdfInputKey,
  InvalidInputError,
  open as openAead,
  randomBytes,
  seal as sealAead,
  wipe,
} from '../../crypto/index.ts';
import { combine, decodeShare, encodeShare, MAX_SHARES, MIN_THRESHOLD, split, type Share } from './shamir.ts';
import { SealedError, type RootOfTrust, type RootStatus } from './types.ts';
import { makeDirectoryDurably, syncDirectory } from '../../durable/index.ts';

/**
 * The software root of trust: a random 256-bit root key that exists at rest only as Shamir shares held by
 * operators (docs/spec/shamir-shares.md). Like Vault, a process starts sealed and needs `threshold` shares typed
 * in before it can wrap or unwrap key material.
 *
 * The root key never encrypts anything itself. HKDF-SHA256 derives two independent values from it, so the only
 * use of the root is as HKDF input:
 * - the wrapping key (AES-256-GCM), info "warden/kms/root wrap v1";
 * - the key-check value, info "warden/kms/root key-check v1", stored in the seal state so that a wrong
 *   combination of shares is detected before anything is unwrapped with it.
 *
 * Once shares combine and the key check passes, the root's bytes and the shares are wiped and only the derived
 * wrapping key is kept, inside a node:crypto KeyObject in a private field (absent from JSON and util.inspect).
 * A KeyObject cannot be overwritten from JavaScript; `seal()` drops the reference and the key is freed when
 * collected. Pending shares live in memory only and are wiped on `seal`, `resetUnseal` and after combining.
 */
export const ROOT_KEY_BYTES = 32;
export const SEAL_STATE_VERSION = 1;
/** First byte of every wrapped blob. The HKDF info names the version too, so each version has its own key. */
export const WRAP_FORMAT_V1 = 0x01;

const WRAP_INFO = Buffer.from('warden/kms/root wrap v1', 'ascii');
const KEY_CHECK_INFO = Buffer.from('warden/kms/root key-check v1', 'ascii');
const KEY_CHECK_BYTES = 32;
const DEV_FILE_FORMAT = 'warden-dev-root/v1';

export type SoftwareRootErrorCode =
  | 'not_initialized'
  | 'already_initialized'
  | 'key_check_failed'
  | 'share_conflict'
  | 'dev_mode'
  | 'state_malformed'
  | 'dev_file_insecure'
  | 'dev_file_malformed';

/** State and lifecycle errors of the software root. Messages name files and counts, never key or share bytes. */
export class SoftwareRootError extends Error {
  readonly code: SoftwareRootErrorCode;
  constructor(code: SoftwareRootErrorCode, message: string) {
    super(message);
    this.name = 'SoftwareRootError';
    this.code = code;
  }
}

/** What survives a restart: nothing secret. The key-check value reveals nothing about the wrapping key. */
export interface SealState {
  readonly version: typeof SEAL_STATE_VERSION;
  readonly shares: number;
  readonly threshold: number;
  /** HKDF-SHA256(root, salt empty, info "warden/kms/root key-check v1", 32 bytes), lowercase hex. */
  readonly keyCheck: string;
  /** ISO 8601. */
  readonly createdAt: string;
}

/** Where the seal state lives. Injected so the root does not depend on any particular store. */
export interface SealStateStore {
  load(): Promise<SealState | undefined>;
  save(state: SealState): Promise<void>;
}

export interface UnsealProgress {
  readonly sealed: boolean;
  /** Distinct shares held so far; 0 once unsealed. */
  readonly progress: number;
  readonly threshold: number;
  /** False when the share changed nothing: a repeat of one already given, or the root was already unsealed. */
  readonly accepted: boolean;
}

const SEAL_STATE_KEYS = ['version', 'shares', 'threshold', 'keyCheck', 'createdAt'];

/** Validates a seal state from any store; `source` names it in errors. */
export function parseSealState(value: unknown, source = 'seal state'): SealState {
  const malformed = (why: string): SoftwareRootError =>
    new SoftwareRootError('state_malformed', `${source} is malformed: ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed('not an object');
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length !== SEAL_STATE_KEYS.length || !keys.every((k) => SEAL_STATE_KEYS.includes(k))) {
    throw malformed(`expected exactly the fields ${SEAL_STATE_KEYS.join(', ')}`);
  }
  const { version, shares, threshold, keyCheck, createdAt } = record;
  if (version !== SEAL_STATE_VERSION) throw malformed('unsupported version');
  if (
    typeof shares !== 'number' ||
    typeof threshold !== 'number' ||
    !Number.isInteger(shares) ||
    !Number.isInteger(threshold) ||
    threshold < MIN_THRESHOLD ||
    threshold > shares ||
    shares > MAX_SHARES
  ) {
    throw malformed(`need ${MIN_THRESHOLD} <= threshold <= shares <= ${MAX_SHARES}`);
  }
  if (typeof keyCheck !== 'string' || !/^[0-9a-f]{64}$/.test(keyCheck)) {
    throw malformed('keyCheck is not 64 lowercase hex digits');
  }
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) {
    throw malformed('createdAt is not a date');
  }
  return { version, shares, threshold, keyCheck, createdAt };
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Writes `data` to a fresh mode-0600 temp file beside `file` and fsyncs it; returns the temp path. */
async function writeTemp(file: string, data: string): Promise<string> {
  await makeDirectoryDurably(path.dirname(file));
  // A random name, so a temp file left by a crash never collides with a later write.
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp);
    throw err;
  }
  await handle.close();
  return tmp;
}

/** Replaces `file` atomically: readers see the old or the new content, never a mixture or a truncation. */
async function replaceFile(file: string, data: string): Promise<void> {
  const tmp = await writeTemp(file, data);
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp);
    throw err;
  }
  await syncDirectory(path.dirname(file));
}

/**
 * Creates `file` atomically unless it exists. link() fails on an existing target where rename() would replace
 * it, so two processes creating the file at once cannot overwrite each other's.
 */
async function createFileExclusive(file: string, data: string): Promise<void> {
  const tmp = await writeTemp(file, data);
  try {
    await link(tmp, file);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  } finally {
    await unlink(tmp);
  }
  await syncDirectory(path.dirname(file));
}

/**
 * Seal state in a JSON file, replaced atomically (temp file, fsync, rename, directory fsync) with mode 0600. A
 * crash mid-write leaves at most a stray `.<name>.<uuid>.tmp` beside it, which `load` never reads.
 */
export function fileSealStateStore(file: string): SealStateStore {
  return {
    async load() {
      let raw: string;
      try {
        raw = await readFile(file, 'utf8');
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return undefined;
        throw err;
      }
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        throw new SoftwareRootError('state_malformed', `seal state ${file} is not valid JSON`);
      }
      return parseSealState(json, `seal state ${file}`);
    },
    async save(state) {
      await replaceFile(file, `${JSON.stringify(parseSealState(state), null, 2)}\n`);
    },
  };
}

function keyCheckOf(root: HkdfInputKey): Buffer {
  return hkdf(root, { info: KEY_CHECK_INFO, length: KEY_CHECK_BYTES });
}

function wrapKeyOf(root: HkdfInputKey): AeadKey {
  return hkdfDeriveKey(root, { info: WRAP_INFO }, AeadKey);
}

/** Runs `fn` inside a promise, so its exceptions become rejections as the async interface promises. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(fn());
  });
}

function requireBytes(value: unknown, what: string): void {
  // A plain-JS caller passing undefined as aad would otherwise get encryption bound to nothing.
  if (!(value instanceof Uint8Array)) throw new InvalidInputError(`${what} must be a Uint8Array`);
}

/**
 * Reads the development root key file. Opened without following symlinks and checked through the open handle,
 * so the file that is checked is the file that is read.
 */
async function readDevRoot(file: string): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    if (isErrno(err, 'ELOOP')) {
      throw new SoftwareRootError('dev_file_insecure', `development root key ${file} is a symbolic link`);
    }
    throw err;
  }
  let raw: string;
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new SoftwareRootError('dev_file_insecure', `development root key ${file} is not a regular file`);
    }
    if ((info.mode & 0o077) !== 0) {
      throw new SoftwareRootError(
        'dev_file_insecure',
        `development root key ${file} is readable or writable by group or others: chmod 600 it`,
      );
    }
    raw = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    doc = undefined;
  }
  const record = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
  const key = typeof record.rootKey === 'string' ? Buffer.from(record.rootKey, 'base64url') : undefined;
  if (record.format !== DEV_FILE_FORMAT || key?.byteLength !== ROOT_KEY_BYTES) {
    if (key !== undefined) wipe(key);
    throw new SoftwareRootError('dev_file_malformed', `${file} is not a ${DEV_FILE_FORMAT} file`);
  }
  return key;
}

export class SoftwareRootOfTrust implements RootOfTrust {
  readonly kind = 'software';
  /** Undefined in development mode, which has no shares and no seal state. */
  readonly #store: SealStateStore | undefined;
  #state: SealState | undefined;
  #initializing = false;
  #wrapKey: AeadKey | undefined;
  /** Shares given so far while unsealing, by x-coordinate. */
  readonly #pending = new Map<number, Uint8Array>();

  private constructor(store: SealStateStore | undefined, state: SealState | undefined, wrapKey?: AeadKey) {
    this.#store = store;
    this.#state = state;
    this.#wrapKey = wrapKey;
  }

  /** A sealed root over `store`; call `init` if `status().initialized` is false, otherwise `unseal`. */
  static async open(store: SealStateStore): Promise<SoftwareRootOfTrust> {
    const state = await store.load();
    return new SoftwareRootOfTrust(store, state === undefined ? undefined : parseSealState(state));
  }

  /**
   * INSECURE DEVELOPMENT MODE. The root key is kept IN CLEAR in `file` (created on first use, mode 0600) and the
   * root comes up unsealed with no shares and no operators. Anyone who can read that file, or a backup of it, can
   * unwrap every key this root protects. It exists for the quickstart only; `status().insecureDevMode` is true so
   * that every surface can say so. Nothing selects it implicitly: the caller must ask for it by name. A file that
   * is readable or writable by group or others, or is a symbolic link, is refused rather than fixed.
   *
   * `seal()` works but there is nothing to unseal with afterwards: open the file again.
   */
  static async openDevMode(file: string): Promise<SoftwareRootOfTrust> {
    let root = await readDevRoot(file);
    if (root === undefined) {
      const fresh = randomBytes(ROOT_KEY_BYTES);
      const doc = {
        format: DEV_FILE_FORMAT,
        warning: 'INSECURE DEVELOPMENT ROOT KEY stored in clear. Never use it for real data.',
        createdAt: new Date().toISOString(),
        rootKey: fresh.toString('base64url'),
      };
      wipe(fresh);
      // If another process won the race to create the file, its key is the one to use: read back either way.
      await createFileExclusive(file, `${JSON.stringify(doc, null, 2)}\n`);
      root = await readDevRoot(file);
      if (root === undefined) {
        throw new SoftwareRootError(
          'dev_file_malformed',
          `development root key ${file} vanished while created`,
        );
      }
    }
    try {
      return new SoftwareRootOfTrust(undefined, undefined, wrapKeyOf(HkdfInputKey.fromBytes(root)));
    } finally {
      wipe(root);
    }
  }

  #shamirStore(): SealStateStore {
    if (this.#store === undefined) {
      throw new SoftwareRootError(
        'dev_mode',
        'a development-mode root has no shares to initialise or unseal',
      );
    }
    return this.#store;
  }

  #shamirState(): SealState {
    this.#shamirStore();
    if (this.#state === undefined) {
      throw new SoftwareRootError('not_initialized', 'the root key has not been initialised: run init first');
    }
    return this.#state;
  }

  /**
   * Generates the root key, saves the seal state and returns the encoded shares, to be shown once and handed to
   * operators: they are the only copy of the root. The root stays sealed until `threshold` shares are given
   * back, which proves the shares work before any data depends on them. Refused if the store already holds a
   * state. Two processes initialising one store at once are not detected here; the second state wins and the
   * first set of shares will not unseal, so nothing was wrapped under it.
   */
  async init(options: { readonly shares: number; readonly threshold: number }): Promise<string[]> {
    const store = this.#shamirStore();
    if (this.#state !== undefined || this.#initializing) {
      throw new SoftwareRootError('already_initialized', 'the root key is already initialised');
    }
    this.#initializing = true;
    try {
      if ((await store.load()) !== undefined) {
        throw new SoftwareRootError('already_initialized', 'the root key is already initialised');
      }
      const root = randomBytes(ROOT_KEY_BYTES);
      let shares: Share[];
      let keyCheck: string;
      try {
        shares = split(root, options.shares, options.threshold);
        keyCheck = keyCheckOf(HkdfInputKey.fromBytes(root)).toString('hex');
      } finally {
        wipe(root);
      }
      try {
        const state: SealState = {
          version: SEAL_STATE_VERSION,
          shares: options.shares,
          threshold: options.threshold,
          keyCheck,
          createdAt: new Date().toISOString(),
        };
        await store.save(state);
        this.#state = state;
        return shares.map(encodeShare);
      } finally {
        for (const share of shares) wipe(share.y);
      }
    } finally {
      this.#initializing = false;
    }
  }

  /**
   * Adds one encoded share. A malformed or mistyped share (bad checksum), or one that cannot belong to this root
   * (wrong length, number above the share count), throws `InvalidInputError` and keeps the progress. A repeat
   * of a share already given is ignored (`accepted: false`). A different share under a number already given
   * means one of them is wrong; which one cannot be told, so all pending shares are discarded. When `threshold`
   * shares are in, they are combined and checked against the key-check value; on a mismatch all are discarded
   * and the error does not say which share was wrong, because nothing can.
   */
  unseal(encodedShare: string): UnsealProgress {
    const state = this.#shamirState();
    if (this.#wrapKey !== undefined) {
      return { sealed: false, progress: 0, threshold: state.threshold, accepted: false };
    }
    const share = decodeShare(encodedShare);
    if (share.y.byteLength !== ROOT_KEY_BYTES || share.x > state.shares) {
      wipe(share.y);
      throw new InvalidInputError(
        `not a share of this root key (it has ${state.shares} shares of ${ROOT_KEY_BYTES} bytes)`,
      );
    }
    const existing = this.#pending.get(share.x);
    if (existing !== undefined) {
      const same = constantTimeEqual(existing, share.y);
      wipe(share.y);
      if (same) return this.#progress(state, false);
      this.resetUnseal();
      throw new SoftwareRootError(
        'share_conflict',
        `two different shares numbered ${share.x} were given: unseal progress was discarded, start again`,
      );
    }
    this.#pending.set(share.x, share.y);
    if (this.#pending.size < state.threshold) return this.#progress(state, true);

    let root: Buffer;
    try {
      root = combine([...this.#pending].map(([x, y]) => ({ x, y })));
    } finally {
      // Pass or fail, this attempt is over: the next share starts a fresh one.
      this.resetUnseal();
    }
    try {
      const key = HkdfInputKey.fromBytes(root);
      const check = keyCheckOf(key);
      if (!constantTimeEqual(check, Buffer.from(state.keyCheck, 'hex'))) {
        throw new SoftwareRootError(
          'key_check_failed',
          'the shares do not reconstruct this root key (one is wrong or belongs to another root): ' +
            'unseal progress was discarded, start again',
        );
      }
      this.#wrapKey = wrapKeyOf(key);
    } finally {
      wipe(root);
    }
    return { sealed: false, progress: 0, threshold: state.threshold, accepted: true };
  }

  #progress(state: SealState, accepted: boolean): UnsealProgress {
    return { sealed: true, progress: this.#pending.size, threshold: state.threshold, accepted };
  }

  /** Discards (and wipes) the shares given so far. */
  resetUnseal(): void {
    for (const y of this.#pending.values()) wipe(y);
    this.#pending.clear();
  }

  status(): RootStatus {
    const sealed = this.#wrapKey === undefined;
    if (this.#store === undefined) {
      return { kind: this.kind, initialized: true, sealed, insecureDevMode: true };
    }
    const state = this.#state;
    if (state === undefined) return { kind: this.kind, initialized: false, sealed };
    return {
      kind: this.kind,
      initialized: true,
      sealed,
      threshold: state.threshold,
      shares: state.shares,
      progress: this.#pending.size,
    };
  }

  #unsealedKey(): AeadKey {
    if (this.#wrapKey === undefined) throw new SealedError();
    return this.#wrapKey;
  }

  /** 0x01 || AES-256-GCM nonce(12) || ciphertext || tag(16), under the derived wrapping key, bound to `aad`. */
  wrap(material: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return settle(() => {
      const key = this.#unsealedKey();
      requireBytes(material, 'material');
      requireBytes(aad, 'aad');
      return Buffer.concat([Uint8Array.of(WRAP_FORMAT_V1), sealAead(key, material, aad)]);
    });
  }

  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return settle(() => {
      const key = this.#unsealedKey();
      requireBytes(wrapped, 'wrapped');
      requireBytes(aad, 'aad');
      if (wrapped[0] !== WRAP_FORMAT_V1) throw new DecryptionError();
      return openAead(key, wrapped.subarray(1), aad);
    });
  }

  /**
   * The operating system's CSPRNG, sealed or not: it owes nothing to the root key, and refusing would only make
   * sealing break callers that never touch key material. New key material still cannot be wrapped while sealed.
   */
  randomBytes(length: number): Promise<Buffer> {
    return settle(() => randomBytes(length));
  }

  /** Forgets the wrapping key and wipes pending shares. The seal state on disk is untouched. */
  seal(): Promise<void> {
    this.#wrapKey = undefined;
    this.resetUnseal();
    return Promise.resolve();
  }

  /** The software root holds no handles: closing is sealing. */
  close(): Promise<void> {
    return this.seal();
  }

  toJSON(): RootStatus {
    return this.status();
  }

  [inspect.custom](): string {
    return `SoftwareRootOfTrust ${inspect(this.status())}`;
  }
}
