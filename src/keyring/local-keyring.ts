import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AeadKey, DecryptionError, open as openSealed, seal } from '../crypto/index.ts';
import type { KeySlot, SlotUnwrapper, SlotWrapper } from '../envelope/index.ts';
import { makeDirectoryDurably, writeFileDurably } from '../durable/index.ts';

/**
 * The development keyring: key-encryption keys kept in clear in a local JSON file. It exists so the quickstart
 * works before a KMS is set up, and is loudly marked insecure. The file must be mode 0600 and may not sit inside
 * a tree being encrypted (it would be encrypted along with the data it protects, or shipped with it).
 */
export const KEYRING_FORMAT = 'warden-dev-keyring/v1';
const KEY_BYTES = 32;
const WRAPPED_BYTES = 12 + KEY_BYTES + 16;

export class KeyringError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'KeyringError';
    this.code = code;
  }
}

interface KeyringFile {
  format: typeof KEYRING_FORMAT;
  warning: string;
  primary: string;
  keys: { id: string; created: string; key: string }[];
}

export function defaultKeyringPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WARDEN_KEYRING) return path.resolve(env.WARDEN_KEYRING);
  const configHome = env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config');
  return path.join(configHome, 'warden', 'dev-keyring.json');
}

export class LocalKeyring implements SlotWrapper, SlotUnwrapper {
  readonly slotType = 'local' as const;
  readonly path: string;
  readonly primaryId: string;
  readonly #keys: Map<string, AeadKey>;

  private constructor(file: string, primaryId: string, keys: Map<string, AeadKey>) {
    this.path = file;
    this.primaryId = primaryId;
    this.#keys = keys;
  }

  /** Opens the keyring, creating it (with one fresh key) when `create` is set and the file does not exist. */
  static async open(
    file: string,
    options: { create?: boolean } = {},
  ): Promise<{ keyring: LocalKeyring; created: boolean }> {
    let raw: string;
    try {
      const info = await stat(file);
      if ((info.mode & 0o077) !== 0) {
        throw new KeyringError(
          'keyring_insecure',
          `keyring ${file} is readable by group or others: chmod 600 it`,
        );
      }
      raw = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!options.create) throw new KeyringError('keyring_missing', `no keyring at ${file}`);
      return { keyring: await LocalKeyring.create(file), created: true };
    }
    return { keyring: LocalKeyring.parse(file, raw), created: false };
  }

  private static parse(file: string, raw: string): LocalKeyring {
    let doc: Partial<KeyringFile>;
    try {
      doc = JSON.parse(raw) as Partial<KeyringFile>;
    } catch {
      throw new KeyringError('keyring_malformed', `keyring ${file} is not valid JSON`);
    }
    if (doc.format !== KEYRING_FORMAT || !Array.isArray(doc.keys)) {
      throw new KeyringError('keyring_malformed', `keyring ${file} is not a ${KEYRING_FORMAT} file`);
    }
    const keys = new Map<string, AeadKey>();
    for (const entry of doc.keys) {
      const key = Buffer.from(typeof entry.key === 'string' ? entry.key : '', 'base64');
      if (typeof entry.id !== 'string' || entry.id.length === 0 || key.length !== KEY_BYTES) {
        throw new KeyringError('keyring_malformed', `keyring ${file} has a malformed key entry`);
      }
      keys.set(entry.id, AeadKey.fromBytes(key));
      key.fill(0);
    }
    if (typeof doc.primary !== 'string' || !keys.has(doc.primary))
      throw new KeyringError('keyring_malformed', `keyring ${file} names a missing primary key`);
    return new LocalKeyring(file, doc.primary, keys);
  }

  private static async create(file: string): Promise<LocalKeyring> {
    await makeDirectoryDurably(path.dirname(file));
    const id = `dev-${randomUUID()}`;
    const key = randomBytes(KEY_BYTES);
    const doc: KeyringFile = {
      format: KEYRING_FORMAT,
      warning: 'INSECURE DEVELOPMENT KEYRING: keys are stored in clear. Use the Warden KMS for real data.',
      primary: id,
      keys: [{ id, created: new Date().toISOString(), key: key.toString('base64') }],
    };
    // A crash never leaves a half-written keyring.
    await writeFileDurably(file, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
    const keys = new Map([[id, AeadKey.fromBytes(key)]]);
    key.fill(0);
    return new LocalKeyring(file, id, keys);
  }

  /** Refuses to protect a tree that contains the keyring itself. */
  assertOutside(tree: string): void {
    const rel = path.relative(path.resolve(tree), this.path);
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
      throw new KeyringError(
        'keyring_inside_tree',
        `the keyring ${this.path} lies inside ${tree}: move it or set WARDEN_KEYRING`,
      );
    }
  }

  wrapDataKey(dataKey: Uint8Array, slotAadFor: (ref: string) => Buffer): Promise<KeySlot> {
    const kek = this.#keys.get(this.primaryId);
    if (kek === undefined) throw new KeyringError('keyring_malformed', 'primary key missing');
    const wrappedKey = seal(kek, dataKey, slotAadFor(this.primaryId));
    return Promise.resolve({ type: 'local', ref: this.primaryId, wrappedKey });
  }

  canUnwrap(slot: KeySlot): boolean {
    return slot.type === 'local' && this.#keys.has(slot.ref);
  }

  /** The slot is nonce(12) || AES-256-GCM ciphertext(32) || tag(16), exactly `seal`'s output for a 32-byte key. */
  unwrapDataKey(slot: KeySlot, aad: Buffer): Promise<Buffer> {
    const kek = this.#keys.get(slot.ref);
    if (kek === undefined || slot.wrappedKey.length !== WRAPPED_BYTES) throw new DecryptionError();
    return Promise.resolve(openSealed(kek, slot.wrappedKey, aad));
  }
}
