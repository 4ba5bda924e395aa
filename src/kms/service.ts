import type { AuditEvent, AuditRecorder } from '../audit/index.ts';
import { RsaOaepPrivateKey, WrappingKey, aesKeyUnwrapPadded, rsaOaepDecrypt, wipe } from '../crypto/index.ts';
import type { Authorizer, KmsAction } from './authz.ts';
import { ciphertextAad, formatCiphertext, parseCiphertext } from './ciphertext.ts';
import {
  AuditUnavailableError,
  ForbiddenError,
  ImportOptionsError,
  InvalidRequestError,
  KeyExistsError,
  KeyNotFoundError,
  KmsDecryptionError,
  KmsError,
  KmsSealedError,
  NotExportableError,
  VersionUnavailableError,
  WrongKeyTypeError,
} from './errors.ts';
import {
  decryptWith,
  encryptWith,
  generateMaterial,
  importMaterial,
  loadMaterial,
  macWith,
  publicKeyPem,
  signWith,
  verifyMacWith,
  verifyWith,
} from './key-material.ts';
import type { LoadedKey } from './key-material.ts';
import type { KeyPatch, KmsRepository } from './repository.ts';
import { SealedError } from './root/types.ts';
import type { RootOfTrust } from './root/types.ts';
import {
  DAY_MS,
  DEFAULT_DESTRUCTION_DELAY_MS,
  DEFAULT_ROTATION_PERIOD_MS,
  KEY_NAME_PATTERN,
  KEY_PURPOSE,
  isKeyType,
} from './types.ts';
import type { KeyPurpose, KeyRecord, KeyType, Principal, VersionRecord } from './types.ts';

export const MAX_BATCH_ITEMS = 1000;
export const MAX_PLAINTEXT_BYTES = 64 * 1024;
export const MAX_CONTEXT_BYTES = 8 * 1024;
export const MAX_RANDOM_REQUEST_BYTES = 1024;
const DATA_KEY_BYTES = 32;
/** Metadata read on the hot path is cached this long; other nodes' state changes take effect within it. */
const METADATA_TTL_MS = 1000;
const IMPORT_WRAPPING_KEY = 'import-wrapping-rsa4096';

export interface KeyInfo {
  readonly key: KeyRecord;
  readonly versions: readonly VersionRecord[];
}

export interface CreateKeyRequest {
  readonly name: string;
  readonly type: KeyType;
  /** Days between automatic rotations; 0 disables automatic rotation. Default 90. */
  readonly rotationPeriodDays?: number;
  readonly autoFloorGraceDays?: number | null;
  readonly exportable?: boolean;
  readonly description?: string;
}

export type BatchResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: { code: string; message: string } };

export interface KmsServiceOptions {
  readonly repository: KmsRepository;
  readonly root: RootOfTrust;
  readonly audit: AuditRecorder;
  readonly authorizer: Authorizer;
  readonly now?: () => number;
  /**
   * Names of keys, besides `warden.*`, that belong to Warden's components and are used only by them (the internal
   * CA's key, created by `warden ca init` under a name of its own).
   */
  readonly componentKeys?: readonly string[];
}

/** The principal the scheduler acts as: rotations and destructions it performs are audited under it. */
export const SYSTEM_PRINCIPAL: Principal = {
  id: 'system:scheduler',
  roles: ['system'],
  authMethod: 'internal',
};

/** Warden's own keys (audit checkpoints and hasher, token signing, identity secrets, registry) are named `warden.*`. */
export const SYSTEM_KEY_PREFIX = 'warden.';

/** What only Warden's own components may do with a `warden.*` key (`KmsService.#allowed`). */
const SYSTEM_KEY_RESERVED_ACTIONS: ReadonlySet<KmsAction> = new Set<KmsAction>([
  'keys.import',
  'keys.export',
  'crypto.encrypt',
  'crypto.decrypt',
  'crypto.generate-data-key',
  'crypto.decrypt-data-key',
  'crypto.rewrap',
  'crypto.sign',
  'crypto.hmac',
  'crypto.verify-hmac',
]);

/** The principal under which Warden's own key management (system keys) is audited. */
const WARDEN_PRINCIPAL: Principal = { id: 'system:warden', roles: ['system'], authMethod: 'internal' };

interface CachedMetadata {
  readonly key: KeyRecord;
  readonly versions: Map<number, VersionRecord>;
  readonly fetchedAt: number;
}

/**
 * The KMS: named keys with versions, rotation, states and crypto-shredding, and every cryptographic operation.
 * Key material never leaves it in clear except data keys handed to callers and keys created exportable. Every
 * operation is authorised through one call-out and audited through one recorder; if the audit event cannot be
 * recorded the result is withheld and a change to a key is not made (fail closed).
 */
export class KmsService {
  readonly #repo: KmsRepository;
  readonly #root: RootOfTrust;
  readonly #audit: AuditRecorder;
  readonly #authz: Authorizer;
  readonly #componentKeys: ReadonlySet<string>;
  readonly #now: () => number;
  readonly #loaded = new Map<string, LoadedKey>();
  readonly #metadata = new Map<string, CachedMetadata>();
  /** Serialises administrative changes per key within this process (the repository serialises across nodes). */
  readonly #keyLocks = new Map<string, Promise<unknown>>();

  constructor(options: KmsServiceOptions) {
    this.#repo = options.repository;
    this.#root = options.root;
    this.#audit = options.audit;
    this.#authz = options.authorizer;
    this.#now = options.now ?? Date.now;
    this.#componentKeys = new Set(options.componentKeys ?? []);
  }

  get root(): RootOfTrust {
    return this.#root;
  }

  /** Forgets every unwrapped key (on seal, and whenever the root changes state). */
  forgetKeys(): void {
    this.#loaded.clear();
    this.#metadata.clear();
  }

  // ---- key administration -------------------------------------------------------------------------------

  async createKey(principal: Principal, request: CreateKeyRequest): Promise<KeyInfo> {
    return this.#run(principal, 'keys.create', `key:${request.name}`, async (recordChange) => {
      validateName(request.name);
      if (request.name.startsWith(SYSTEM_KEY_PREFIX)) {
        throw new InvalidRequestError(`key names starting with ${SYSTEM_KEY_PREFIX} are reserved for Warden`);
      }
      return this.#createGenerated(request, recordChange);
    });
  }

  /**
   * Creates one of Warden's own keys (`warden.*`) unless it exists, and returns it. Called by Warden's components
   * at start-up (never from the API); audited under `system:warden`, not subject to the policy engine.
   */
  async ensureSystemKey(request: CreateKeyRequest): Promise<KeyInfo> {
    if (!request.name.startsWith(SYSTEM_KEY_PREFIX)) {
      throw new InvalidRequestError(`system key names start with ${SYSTEM_KEY_PREFIX}`);
    }
    const existing = await this.#repo.getKey(request.name);
    if (existing !== undefined) {
      return { key: existing, versions: await this.#repo.listVersions(request.name) };
    }
    return this.#run(
      WARDEN_PRINCIPAL,
      'keys.create',
      `key:${request.name}`,
      async (recordChange) => {
        validateName(request.name);
        return this.#createGenerated(request, recordChange);
      },
      { trusted: true },
    );
  }

  /**
   * Signs with the latest version of a Warden system key without an audit event, for signatures that are
   * themselves the record: the audit log's checkpoints (auditing each would add an entry, so a new checkpoint,
   * forever). Not reachable from the API.
   */
  async signAsSystem(name: string, message: Uint8Array): Promise<{ signature: Buffer; keyVersion: number }> {
    if (!name.startsWith(SYSTEM_KEY_PREFIX)) throw new ForbiddenError('crypto.sign');
    try {
      const { loaded, version } = await this.#latest(name, 'sign');
      return { signature: signWith(loaded, message), keyVersion: version };
    } catch (err) {
      throw err instanceof SealedError ? new KmsSealedError() : err;
    }
  }

  /**
   * A key derived from version 1 of a Warden system HMAC key (`warden.*`): HMAC(key, label). Stable across
   * rotations of that key and across nodes sharing the KMS, so components can hold a local key (the audit log's
   * hasher) without storing it anywhere. Audited under `system:warden`.
   */
  async deriveAsSystem(name: string, label: string): Promise<Buffer> {
    if (!name.startsWith(SYSTEM_KEY_PREFIX)) throw new ForbiddenError('crypto.hmac');
    return this.#run(
      WARDEN_PRINCIPAL,
      'crypto.hmac',
      `key:${name}`,
      async () => {
        const { loaded } = await this.#forVerification(name, 'mac', 1);
        return { result: macWith(loaded, Buffer.from(label, 'utf8')), keyVersion: 1 };
      },
      { trusted: true },
    );
  }

  async #createGenerated(
    request: CreateKeyRequest,
    recordChange: RecordChange,
  ): Promise<{ result: KeyInfo; keyVersion: number }> {
    if (!isKeyType(request.type)) throw new InvalidRequestError(`unknown key type ${String(request.type)}`);
    const generated = generateMaterial(request.type, await this.#seed());
    return this.#insertNewKey(request, generated.material, generated.publicKey, 'generated', recordChange);
  }

  /** Stores a new key with its first version once the change is recorded (`#run`'s `recordChange`). */
  async #insertNewKey(
    request: CreateKeyRequest,
    material: Buffer,
    publicKey: Buffer | null,
    origin: VersionRecord['origin'],
    recordChange: RecordChange,
  ): Promise<{ result: KeyInfo; keyVersion: number }> {
    const now = this.#now();
    const rotationPeriodMs = rotationPeriod(request.rotationPeriodDays);
    const key: KeyRecord = {
      name: request.name,
      type: request.type,
      createdAt: now,
      rotationPeriodMs,
      nextRotationAt: rotationPeriodMs === null ? null : now + rotationPeriodMs,
      latestVersion: 1,
      minDecryptionVersion: 1,
      autoFloorGraceMs:
        request.autoFloorGraceDays === undefined || request.autoFloorGraceDays === null
          ? null
          : positiveDays(request.autoFloorGraceDays, 'autoFloorGraceDays'),
      exportable: request.exportable ?? false,
      description: request.description ?? '',
    };
    const version: VersionRecord = {
      name: request.name,
      version: 1,
      state: 'enabled',
      createdAt: now,
      origin,
      destroyAt: null,
      destroyedAt: null,
      publicKey,
    };
    try {
      const wrapped = await this.#wrap(key, 1, material);
      if ((await this.#repo.getKey(key.name)) !== undefined) throw new KeyExistsError(key.name);
      await recordChange(1);
      await this.#repo.createKey(key, version, wrapped);
    } finally {
      wipe(material);
    }
    this.#metadata.delete(key.name);
    return { result: { key, versions: [version] }, keyVersion: 1 };
  }

  async getKey(principal: Principal, name: string): Promise<KeyInfo> {
    return this.#run(principal, 'keys.read', `key:${name}`, async () => {
      const key = await this.#repo.getKey(name);
      if (key === undefined) throw new KeyNotFoundError(name);
      return { result: { key, versions: await this.#repo.listVersions(name) } };
    });
  }

  async listKeys(principal: Principal): Promise<KeyRecord[]> {
    return this.#run(principal, 'keys.list', 'key:*', async () => ({
      result: (await this.#repo.listKeys()).filter((k) => !k.name.startsWith('_')),
    }));
  }

  async rotateKey(principal: Principal, name: string): Promise<VersionRecord> {
    return this.#run(principal, 'keys.rotate', `key:${name}`, async (recordChange) => {
      const version = await this.#withKeyLock(name, () => this.#rotate(name, undefined, recordChange));
      return { result: version, keyVersion: version.version };
    });
  }

  /**
   * Adds a version once the change is recorded; with `dueBy` (the scheduler), only while the key's rotation is
   * still due by then.
   */
  async #rotate(
    name: string,
    imported: Buffer | undefined,
    recordChange: RecordChange,
    dueBy?: number,
  ): Promise<VersionRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const key = await this.#repo.getKey(name);
      if (key === undefined) throw new KeyNotFoundError(name);
      if (dueBy !== undefined && (key.nextRotationAt === null || key.nextRotationAt > dueBy)) {
        throw new KmsError('conflict', 409, `key ${name} is no longer due for rotation`);
      }
      // A copy of imported material: symmetric material is used as given and wiped below, and a lost race for
      // the version number comes back here for another attempt with it.
      const generated =
        imported === undefined
          ? generateMaterial(key.type, await this.#seed())
          : importMaterial(key.type, Buffer.from(imported));
      const now = this.#now();
      const version: VersionRecord = {
        name,
        version: key.latestVersion + 1,
        state: 'enabled',
        createdAt: now,
        origin: imported === undefined ? 'generated' : 'imported',
        destroyAt: null,
        destroyedAt: null,
        publicKey: generated.publicKey,
      };
      const wrapped = await this.#wrap(key, version.version, generated.material);
      wipe(generated.material);
      await recordChange(version.version);
      const nextRotationAt = key.rotationPeriodMs === null ? null : now + key.rotationPeriodMs;
      if (await this.#repo.addVersion(name, key.latestVersion, version, wrapped, nextRotationAt)) {
        this.#metadata.delete(name);
        return version;
      }
    }
    throw new KmsError('conflict', 409, `key ${name} is being rotated concurrently; try again`);
  }

  async updateKey(
    principal: Principal,
    name: string,
    changes: {
      rotationPeriodDays?: number;
      minDecryptionVersion?: number;
      autoFloorGraceDays?: number | null;
      description?: string;
    },
  ): Promise<KeyRecord> {
    return this.#run(principal, 'keys.update', `key:${name}`, async (recordChange) => {
      const result = await this.#withKeyLock(name, async () => {
        this.#refuseWhileSealed();
        const key = await this.#repo.getKey(name);
        if (key === undefined) throw new KeyNotFoundError(name);
        const patch: { -readonly [K in keyof KeyPatch]: KeyPatch[K] } = {};
        if (changes.rotationPeriodDays !== undefined) {
          patch.rotationPeriodMs = rotationPeriod(changes.rotationPeriodDays);
          patch.nextRotationAt =
            patch.rotationPeriodMs === null ? null : this.#now() + patch.rotationPeriodMs;
        }
        if (changes.minDecryptionVersion !== undefined) {
          const floor = changes.minDecryptionVersion;
          if (!Number.isInteger(floor) || floor < 1 || floor > key.latestVersion) {
            throw new InvalidRequestError(`minDecryptionVersion must be 1..${key.latestVersion}`);
          }
          patch.minDecryptionVersion = floor;
        }
        if (changes.autoFloorGraceDays !== undefined) {
          patch.autoFloorGraceMs =
            changes.autoFloorGraceDays === null
              ? null
              : positiveDays(changes.autoFloorGraceDays, 'autoFloorGraceDays');
        }
        if (changes.description !== undefined) patch.description = changes.description.slice(0, 1024);
        await recordChange();
        await this.#repo.updateKey(name, patch);
        this.#metadata.delete(name);
        return { ...key, ...patch };
      });
      return { result };
    });
  }

  /** Disables one version, or every enabled version when `version` is omitted. */
  async disable(principal: Principal, name: string, version?: number): Promise<VersionRecord[]> {
    return this.#setState(principal, 'keys.disable', name, version, 'enabled', 'disabled');
  }

  async enable(principal: Principal, name: string, version?: number): Promise<VersionRecord[]> {
    return this.#setState(principal, 'keys.enable', name, version, 'disabled', 'enabled');
  }

  async #setState(
    principal: Principal,
    action: KmsAction,
    name: string,
    version: number | undefined,
    from: 'enabled' | 'disabled',
    to: 'enabled' | 'disabled',
  ): Promise<VersionRecord[]> {
    return this.#run(principal, action, `key:${name}`, async (recordChange) => {
      const changed = await this.#withKeyLock(name, async () => {
        this.#refuseWhileSealed();
        const versions = await this.#versionsFor(name, version);
        const targets = versions.filter((v) => v.state === from);
        if (version !== undefined && targets.length === 0) {
          throw new VersionUnavailableError(name, version, versions[0]?.state.replace('_', ' ') ?? 'missing');
        }
        if (targets.length > 0) await recordChange(version);
        for (const v of targets) await this.#repo.setVersionState(name, v.version, to, null);
        this.#forget(name);
        return targets.map((v) => ({ ...v, state: to }));
      });
      return { result: changed, keyVersion: version };
    });
  }

  /**
   * Schedules a version for destruction after `delayDays` (default 7; cancellable until then). A delay of 0
   * destroys it now. Destruction deletes the wrapped material: everything the version protected is unreadable.
   */
  async scheduleDestruction(
    principal: Principal,
    name: string,
    version: number,
    delayDays?: number,
  ): Promise<VersionRecord> {
    return this.#run(principal, 'keys.destroy', `key:${name}`, async (recordChange) => {
      const result = await this.#withKeyLock(name, async () => {
        this.#refuseWhileSealed();
        const [v] = await this.#versionsFor(name, version);
        if (v === undefined) throw new KeyNotFoundError(name, version);
        if (v.state === 'destroyed') throw new VersionUnavailableError(name, version, 'already destroyed');
        const delayMs =
          delayDays === undefined ? DEFAULT_DESTRUCTION_DELAY_MS : nonNegativeDays(delayDays, 'delayDays');
        await recordChange(version);
        if (delayMs === 0) {
          await this.#repo.destroyVersion(name, version, this.#now());
          this.#forget(name);
          return { ...v, state: 'destroyed' as const, destroyedAt: this.#now(), destroyAt: null };
        }
        const destroyAt = this.#now() + delayMs;
        await this.#repo.setVersionState(name, version, 'scheduled_destruction', destroyAt);
        this.#forget(name);
        return { ...v, state: 'scheduled_destruction' as const, destroyAt };
      });
      return { result, keyVersion: version };
    });
  }

  async cancelDestruction(principal: Principal, name: string, version: number): Promise<VersionRecord> {
    return this.#run(principal, 'keys.destroy', `key:${name}`, async (recordChange) => {
      const result = await this.#withKeyLock(name, async () => {
        this.#refuseWhileSealed();
        const [v] = await this.#versionsFor(name, version);
        if (v?.state !== 'scheduled_destruction')
          throw new VersionUnavailableError(name, version, 'not scheduled for destruction');
        await recordChange(version);
        // Only while it is still scheduled: the scheduler (of any node) may have destroyed it since it was read.
        if (!(await this.#repo.setVersionState(name, version, 'disabled', null, 'scheduled_destruction'))) {
          this.#forget(name);
          throw new VersionUnavailableError(name, version, 'no longer scheduled for destruction');
        }
        this.#forget(name);
        return { ...v, state: 'disabled' as const, destroyAt: null };
      });
      return { result, keyVersion: version };
    });
  }

  /** The RSA-4096 public key (SPKI PEM) BYOK blobs are wrapped for; created on first use. */
  async importWrappingKey(principal: Principal): Promise<string> {
    return this.#run(principal, 'keys.import-wrapping-key', 'key:*', async () => {
      const info = await this.#ensureImportWrappingKey();
      return { result: info.publicPem };
    });
  }

  async #ensureImportWrappingKey(): Promise<{ privateKey: RsaOaepPrivateKey; publicPem: string }> {
    let wrapped = await this.#repo.getSystemMaterial(IMPORT_WRAPPING_KEY);
    if (wrapped === undefined) {
      const generated = await RsaOaepPrivateKey.generate(4096);
      const der = generated.exportPkcs8Der();
      await this.#repo.putSystemMaterial(
        IMPORT_WRAPPING_KEY,
        await this.#root.wrap(der, systemAad(IMPORT_WRAPPING_KEY)).catch(mapSealed),
      );
      wipe(der);
      // Another process may have created one first: everyone uses the stored one.
      wrapped = await this.#repo.getSystemMaterial(IMPORT_WRAPPING_KEY);
      if (wrapped === undefined)
        throw new KmsError('internal_error', 500, 'import wrapping key missing after creation');
    }
    const material = await this.#root.unwrap(wrapped, systemAad(IMPORT_WRAPPING_KEY)).catch(mapSealed);
    const privateKey = RsaOaepPrivateKey.fromPkcs8Der(material);
    wipe(material);
    return { privateKey, publicPem: privateKey.publicKey().toPem() };
  }

  /**
   * BYOK: `blob` = RSA-OAEP-SHA256(ephemeral AES-256 key) (512 bytes) || AES-KWP(ephemeral key, target key),
   * as Vault and AWS KMS accept. Creates the key, or adds a new version when a key of that name exists — then
   * key options (exportable, rotation period, floor grace, description) are refused (`ImportOptionsError`).
   */
  async importKey(principal: Principal, request: CreateKeyRequest & { blob: Buffer }): Promise<KeyInfo> {
    return this.#run(principal, 'keys.import', `key:${request.name}`, async (recordChange) => {
      validateName(request.name);
      if (!isKeyType(request.type)) throw new InvalidRequestError(`unknown key type ${String(request.type)}`);
      const existing = await this.#repo.getKey(request.name);
      if (existing !== undefined) {
        const given = KEY_OPTIONS.filter((option) => request[option] !== undefined);
        if (given.length > 0) throw new ImportOptionsError(request.name, given);
        if (existing.type !== request.type)
          throw new WrongKeyTypeError(request.name, existing.type, `import ${request.type} material`);
      }
      const { privateKey } = await this.#ensureImportWrappingKey();
      if (request.blob.length <= 512) throw new InvalidRequestError('import blob is too short');
      let target: Buffer;
      try {
        const ephemeral = rsaOaepDecrypt(privateKey, request.blob.subarray(0, 512));
        target = aesKeyUnwrapPadded(WrappingKey.fromBytes(ephemeral), request.blob.subarray(512));
        wipe(ephemeral);
      } catch {
        throw new KmsDecryptionError();
      }
      if (existing !== undefined) {
        const version = await this.#withKeyLock(request.name, async () => {
          try {
            return await this.#rotate(request.name, target, recordChange);
          } finally {
            wipe(target);
          }
        });
        return {
          result: { key: (await this.#repo.getKey(request.name)) ?? existing, versions: [version] },
          keyVersion: version.version,
        };
      }
      const checked = importMaterial(request.type, target);
      // Brought material is not rotated unless asked: a rotation would replace it with material the KMS made.
      const rotationPeriodDays = request.rotationPeriodDays ?? 0;
      return this.#insertNewKey(
        { ...request, rotationPeriodDays },
        checked.material,
        checked.publicKey,
        'imported',
        recordChange,
      );
    });
  }

  /** Key material of an exportable key (raw bytes for symmetric keys, PKCS#8 DER for private keys). */
  async exportKey(
    principal: Principal,
    name: string,
    version?: number,
  ): Promise<{ version: number; material: Buffer }> {
    return this.#run(principal, 'keys.export', `key:${name}`, async () => {
      const meta = await this.#meta(name);
      if (!meta.key.exportable) throw new NotExportableError(name);
      const v = version ?? meta.key.latestVersion;
      this.#usable(meta, v, 'use');
      return { result: { version: v, material: await this.#materialOf(name, v) }, keyVersion: v };
    });
  }

  // ---- cryptographic operations -------------------------------------------------------------------------

  async encrypt(
    principal: Principal,
    name: string,
    plaintext: Uint8Array,
    context: Uint8Array = EMPTY,
  ): Promise<string> {
    return this.#run(principal, 'crypto.encrypt', `key:${name}`, async () => {
      checkSize(plaintext, MAX_PLAINTEXT_BYTES, 'plaintext');
      const { loaded, version } =
        this.#latestCached(name, 'encrypt') ?? (await this.#latest(name, 'encrypt'));
      return {
        result: formatCiphertext(
          name,
          version,
          encryptWith(loaded, plaintext, aadFor(name, version, context)),
        ),
        keyVersion: version,
      };
    });
  }

  async decrypt(principal: Principal, ciphertext: string, context: Uint8Array = EMPTY): Promise<Buffer> {
    const parsed = safeParse(ciphertext);
    return this.#run(principal, 'crypto.decrypt', `key:${parsed?.keyName ?? '?'}`, async () => {
      const { plaintext, version } = await this.#decryptParsed(parsed, context);
      return { result: plaintext, keyVersion: version };
    });
  }

  async #decryptParsed(
    parsed: ReturnType<typeof safeParse>,
    context: Uint8Array,
  ): Promise<{ plaintext: Buffer; version: number }> {
    if (parsed === undefined) throw new KmsDecryptionError();
    checkSize(context, MAX_CONTEXT_BYTES, 'context');
    const meta = this.#freshMeta(parsed.keyName) ?? (await this.#meta(parsed.keyName));
    if (KEY_PURPOSE[meta.key.type] !== 'encrypt') throw new KmsDecryptionError();
    this.#usable(meta, parsed.version, 'decrypt');
    const loaded = this.#cachedKey(meta.key, parsed.version) ?? (await this.#load(meta.key, parsed.version));
    return {
      plaintext: decryptWith(loaded, parsed.sealed, aadFor(parsed.keyName, parsed.version, context)),
      version: parsed.version,
    };
  }

  /** A fresh 256-bit data key from the root's entropy, wrapped under the key's latest version. */
  async generateDataKey(
    principal: Principal,
    name: string,
    context: Uint8Array = EMPTY,
    options: { includePlaintext?: boolean } = {},
  ): Promise<{ ciphertext: string; plaintext?: Buffer; keyVersion: number }> {
    return this.#run(principal, 'crypto.generate-data-key', `key:${name}`, async () => {
      const { loaded, version } =
        this.#latestCached(name, 'encrypt') ?? (await this.#latest(name, 'encrypt'));
      const dataKey = await this.#root.randomBytes(DATA_KEY_BYTES).catch(mapSealed);
      const ciphertext = formatCiphertext(
        name,
        version,
        encryptWith(loaded, dataKey, aadFor(name, version, context)),
      );
      if (options.includePlaintext === false) wipe(dataKey);
      return {
        result: {
          ciphertext,
          keyVersion: version,
          ...(options.includePlaintext === false ? {} : { plaintext: dataKey }),
        },
        keyVersion: version,
      };
    });
  }

  async decryptDataKey(
    principal: Principal,
    ciphertext: string,
    context: Uint8Array = EMPTY,
  ): Promise<Buffer> {
    const parsed = safeParse(ciphertext);
    return this.#run(principal, 'crypto.decrypt-data-key', `key:${parsed?.keyName ?? '?'}`, async () => {
      const { plaintext, version } = await this.#decryptParsed(parsed, context);
      if (plaintext.length !== DATA_KEY_BYTES) {
        wipe(plaintext);
        throw new KmsDecryptionError();
      }
      return { result: plaintext, keyVersion: version };
    });
  }

  /** Re-encrypts under the key's latest version, keeping the context; the plaintext never leaves the KMS. */
  async rewrap(principal: Principal, ciphertext: string, context: Uint8Array = EMPTY): Promise<string> {
    const parsed = safeParse(ciphertext);
    return this.#run(principal, 'crypto.rewrap', `key:${parsed?.keyName ?? '?'}`, async () => {
      const { plaintext } = await this.#decryptParsed(parsed, context);
      try {
        const name = parsed?.keyName ?? '';
        const { loaded, version } = await this.#latest(name, 'encrypt');
        return {
          result: formatCiphertext(
            name,
            version,
            encryptWith(loaded, plaintext, aadFor(name, version, context)),
          ),
          keyVersion: version,
        };
      } finally {
        wipe(plaintext);
      }
    });
  }

  async sign(
    principal: Principal,
    name: string,
    message: Uint8Array,
  ): Promise<{ signature: Buffer; keyVersion: number }> {
    return this.#run(principal, 'crypto.sign', `key:${name}`, async () => {
      checkSize(message, MAX_PLAINTEXT_BYTES, 'message');
      const { loaded, version } = this.#latestCached(name, 'sign') ?? (await this.#latest(name, 'sign'));
      return { result: { signature: signWith(loaded, message), keyVersion: version }, keyVersion: version };
    });
  }

  async verify(
    principal: Principal,
    name: string,
    message: Uint8Array,
    signature: Uint8Array,
    version?: number,
  ): Promise<boolean> {
    return this.#run(principal, 'crypto.verify', `key:${name}`, async () => {
      const { loaded, version: v } = await this.#forVerification(name, 'sign', version);
      return { result: verifyWith(loaded, message, signature), keyVersion: v };
    });
  }

  async hmac(
    principal: Principal,
    name: string,
    data: Uint8Array,
  ): Promise<{ mac: Buffer; keyVersion: number }> {
    return this.#run(principal, 'crypto.hmac', `key:${name}`, async () => {
      checkSize(data, MAX_PLAINTEXT_BYTES, 'data');
      const { loaded, version } = this.#latestCached(name, 'mac') ?? (await this.#latest(name, 'mac'));
      return { result: { mac: macWith(loaded, data), keyVersion: version }, keyVersion: version };
    });
  }

  async verifyHmac(
    principal: Principal,
    name: string,
    data: Uint8Array,
    tag: Uint8Array,
    version?: number,
  ): Promise<boolean> {
    return this.#run(principal, 'crypto.verify-hmac', `key:${name}`, async () => {
      const { loaded, version: v } = await this.#forVerification(name, 'mac', version);
      return { result: verifyMacWith(loaded, data, tag), keyVersion: v };
    });
  }

  async publicKey(
    principal: Principal,
    name: string,
    version?: number,
  ): Promise<{ pem: string; keyVersion: number }> {
    return this.#run(principal, 'keys.read', `key:${name}`, async () => {
      const meta = await this.#metaFor(name, 'sign');
      const v = version ?? meta.key.latestVersion;
      const record = meta.versions.get(v);
      if (record?.publicKey === undefined || record.publicKey === null || record.state === 'destroyed')
        throw new VersionUnavailableError(name, v, 'not available');
      const pem = publicKeyPem(meta.key.type, record.publicKey);
      return { result: { pem, keyVersion: v }, keyVersion: v };
    });
  }

  async randomBytes(principal: Principal, length: number): Promise<Buffer> {
    return this.#run(principal, 'crypto.random', 'random', async () => {
      if (!Number.isInteger(length) || length < 1 || length > MAX_RANDOM_REQUEST_BYTES) {
        throw new InvalidRequestError(`length must be 1..${MAX_RANDOM_REQUEST_BYTES}`);
      }
      return { result: await this.#root.randomBytes(length).catch(mapSealed) };
    });
  }

  // ---- batches: one authorisation per key and one audit event per batch, per-item results -------------------

  async encryptBatch(
    principal: Principal,
    name: string,
    items: readonly { plaintext: Uint8Array; context?: Uint8Array }[],
  ): Promise<BatchResult<string>[]> {
    return this.#latestKeyBatch(principal, 'crypto.encrypt', name, 'encrypt', items, {
      input: (item) => [item.plaintext, 'plaintext'],
      run: (item, loaded, version) =>
        formatCiphertext(
          name,
          version,
          encryptWith(loaded, item.plaintext, aadFor(name, version, item.context ?? EMPTY)),
        ),
    });
  }

  /** Items may name different keys: each distinct key is authorised once, and denied keys' items fail alone. */
  async decryptBatch(
    principal: Principal,
    items: readonly { ciphertext: string; context?: Uint8Array }[],
  ): Promise<BatchResult<Buffer>[]> {
    checkBatch(items);
    const parsed = items.map((item) => safeParse(item.ciphertext));
    return this.#runBatch<{ ciphertext: string; context?: Uint8Array }, Buffer>(
      principal,
      'crypto.decrypt',
      items,
      {
        keyOf: (_item, i) => parsed[i]?.keyName ?? '?',
        run: async (item, i) => {
          const { plaintext, version } = await this.#decryptParsed(parsed[i], item.context ?? EMPTY);
          return { result: plaintext, version };
        },
        discard: wipe,
      },
    );
  }

  async decryptDataKeyBatch(
    principal: Principal,
    items: readonly { ciphertext: string; context?: Uint8Array }[],
  ): Promise<BatchResult<Buffer>[]> {
    checkBatch(items);
    const parsed = items.map((item) => safeParse(item.ciphertext));
    return this.#runBatch<{ ciphertext: string; context?: Uint8Array }, Buffer>(
      principal,
      'crypto.decrypt-data-key',
      items,
      {
        keyOf: (_item, i) => parsed[i]?.keyName ?? '?',
        run: async (item, i) => {
          const { plaintext, version } = await this.#decryptParsed(parsed[i], item.context ?? EMPTY);
          if (plaintext.length !== DATA_KEY_BYTES) {
            wipe(plaintext);
            throw new KmsDecryptionError();
          }
          return { result: plaintext, version };
        },
        discard: wipe,
      },
    );
  }

  async rewrapBatch(
    principal: Principal,
    items: readonly { ciphertext: string; context?: Uint8Array }[],
  ): Promise<BatchResult<string>[]> {
    checkBatch(items);
    const parsed = items.map((item) => safeParse(item.ciphertext));
    return this.#runBatch(principal, 'crypto.rewrap', items, {
      keyOf: (_item, i) => parsed[i]?.keyName ?? '?',
      run: async (item, i) => {
        const context = item.context ?? EMPTY;
        const { plaintext } = await this.#decryptParsed(parsed[i], context);
        try {
          const name = parsed[i]?.keyName ?? '';
          const { loaded, version } =
            this.#latestCached(name, 'encrypt') ?? (await this.#latest(name, 'encrypt'));
          const aad = aadFor(name, version, context);
          return { result: formatCiphertext(name, version, encryptWith(loaded, plaintext, aad)), version };
        } finally {
          wipe(plaintext);
        }
      },
    });
  }

  async generateDataKeyBatch(
    principal: Principal,
    name: string,
    items: readonly { context?: Uint8Array }[],
    options: { includePlaintext?: boolean } = {},
  ): Promise<BatchResult<BatchDataKey>[]> {
    return this.#latestKeyBatch<{ context?: Uint8Array }, BatchDataKey>(
      principal,
      'crypto.generate-data-key',
      name,
      'encrypt',
      items,
      {
        run: async (item, loaded, version) => {
          const dataKey = await this.#root.randomBytes(DATA_KEY_BYTES).catch(mapSealed);
          const aad = aadFor(name, version, item.context ?? EMPTY);
          const ciphertext = formatCiphertext(name, version, encryptWith(loaded, dataKey, aad));
          if (options.includePlaintext !== false)
            return { ciphertext, keyVersion: version, plaintext: dataKey };
          wipe(dataKey);
          return { ciphertext, keyVersion: version };
        },
        discard: (key) => {
          if (key.plaintext !== undefined) wipe(key.plaintext);
        },
      },
    );
  }

  async signBatch(
    principal: Principal,
    name: string,
    items: readonly { message: Uint8Array }[],
  ): Promise<BatchResult<{ signature: Buffer; keyVersion: number }>[]> {
    return this.#latestKeyBatch(principal, 'crypto.sign', name, 'sign', items, {
      input: (item) => [item.message, 'message'],
      run: (item, loaded, version) => ({ signature: signWith(loaded, item.message), keyVersion: version }),
    });
  }

  async verifyBatch(
    principal: Principal,
    name: string,
    items: readonly { message: Uint8Array; signature: Uint8Array; version?: number }[],
  ): Promise<BatchResult<boolean>[]> {
    return this.#verificationBatch(principal, 'crypto.verify', name, 'sign', items, (loaded, item) =>
      verifyWith(loaded, item.message, item.signature),
    );
  }

  async hmacBatch(
    principal: Principal,
    name: string,
    items: readonly { data: Uint8Array }[],
  ): Promise<BatchResult<{ mac: Buffer; keyVersion: number }>[]> {
    return this.#latestKeyBatch(principal, 'crypto.hmac', name, 'mac', items, {
      input: (item) => [item.data, 'data'],
      run: (item, loaded, version) => ({ mac: macWith(loaded, item.data), keyVersion: version }),
    });
  }

  async verifyHmacBatch(
    principal: Principal,
    name: string,
    items: readonly { data: Uint8Array; mac: Uint8Array; version?: number }[],
  ): Promise<BatchResult<boolean>[]> {
    return this.#verificationBatch(principal, 'crypto.verify-hmac', name, 'mac', items, (loaded, item) =>
      verifyMacWith(loaded, item.data, item.mac),
    );
  }

  // ---- scheduler entry points ---------------------------------------------------------------------------

  /** Rotations that are due (including those missed while down), automatic floors, and due destructions. */
  async runMaintenance(): Promise<{ rotated: string[]; floorsRaised: string[]; destroyed: string[] }> {
    const now = this.#now();
    const rotated: string[] = [];
    // Rotations need the root; floors and destructions do not. A rotation that fails (a sealed root) ends the
    // rotations of this run, but erasure deadlines are still kept; the failure is reported once they ran.
    let rotationFailure: { readonly error: unknown } | undefined;
    try {
      for (const name of await this.#repo.dueRotations(now)) {
        const done = await skipIfOvertaken(
          this.#run(SYSTEM_PRINCIPAL, 'keys.rotate', `key:${name}`, async (recordChange) => {
            const version = await this.#withKeyLock(name, () =>
              this.#rotate(name, undefined, recordChange, now),
            );
            return { result: version, keyVersion: version.version };
          }),
        );
        if (done) rotated.push(name);
      }
    } catch (error) {
      rotationFailure = { error };
    }
    const floorsRaised: string[] = [];
    for (const key of await this.#repo.listKeys()) {
      if (key.autoFloorGraceMs === null) continue;
      const versions = await this.#repo.listVersions(key.name);
      const floor = Math.max(
        key.minDecryptionVersion,
        ...versions
          .filter((v) => v.version > 1 && v.createdAt + (key.autoFloorGraceMs ?? 0) <= now)
          .map((v) => v.version),
      );
      if (floor > key.minDecryptionVersion) {
        await this.updateKey(SYSTEM_PRINCIPAL, key.name, { minDecryptionVersion: floor });
        floorsRaised.push(`${key.name}:${floor}`);
      }
    }
    const destroyed: string[] = [];
    for (const { name, version } of await this.#repo.dueDestructions(now)) {
      const done = await skipIfOvertaken(
        this.#run(SYSTEM_PRINCIPAL, 'keys.destroy', `key:${name}`, async (recordChange) => {
          await this.#withKeyLock(name, async () => {
            const [v] = await this.#versionsFor(name, version);
            if (v?.state !== 'scheduled_destruction' || v.destroyAt === null || v.destroyAt > now)
              throw new VersionUnavailableError(name, version, 'no longer due for destruction');
            await recordChange(version);
            // The re-check above is a read; the destruction itself is conditional, so a cancel that committed
            // in between (another node) wins.
            const destroyed = await this.#repo.destroyIfDue(name, version, now, this.#now());
            this.#forget(name);
            if (!destroyed) throw new VersionUnavailableError(name, version, 'no longer due for destruction');
          });
          return { result: true, keyVersion: version };
        }),
      );
      if (done) destroyed.push(`${name}:${version}`);
    }
    await this.#repo.flushPendingScrub();
    if (rotationFailure !== undefined) throw rotationFailure.error;
    return { rotated, floorsRaised, destroyed };
  }

  // ---- internals ----------------------------------------------------------------------------------------

  /**
   * Authorises, runs, and audits one operation. The result is released only after its audit event is durable;
   * failures are audited too, and a failed audit turns any outcome into `AuditUnavailableError`.
   *
   * An operation that changes a key calls `recordChange` once it has checked what it can and right before it
   * writes: the success event is recorded then, so a change whose event cannot be recorded is never made (the
   * KMS fails closed for changes as for results). If the write then fails, or `recordChange` is called again
   * (a lost race retried under another version), the earlier event is followed by a failure event, recorded
   * when the log allows (the first record stands, as for policy changes).
   */
  async #run<T>(
    principal: Principal,
    action: KmsAction,
    resource: string,
    operation: (
      recordChange: (keyVersion?: number) => Promise<void>,
    ) => Promise<{ result: T; keyVersion?: number | undefined }>,
    options: { readonly trusted?: boolean } = {},
  ): Promise<T> {
    const started = performance.now();
    if (options.trusted !== true && !this.#allowed(principal, action, resource)) {
      const denied = auditEvent(principal, action, resource, started, 'denied');
      denied.reason = 'forbidden';
      await this.#audited(denied);
      throw new ForbiddenError(action);
    }
    /** The change recorded as made but not yet known to be: `keyVersion` of its event. */
    let recorded: { readonly keyVersion: number | undefined } | undefined;
    const undone = async (reason: string): Promise<void> => {
      if (recorded === undefined) return;
      const failed = auditEvent(principal, action, resource, started, 'failure');
      failed.reason = reason;
      if (recorded.keyVersion !== undefined) failed.keyVersion = recorded.keyVersion;
      recorded = undefined;
      await this.#audited(failed).catch(() => undefined);
    };
    const recordChange = async (keyVersion?: number): Promise<void> => {
      await undone('conflict');
      const event = auditEvent(principal, action, resource, started, 'success');
      if (keyVersion !== undefined) event.keyVersion = keyVersion;
      await this.#audited(event);
      recorded = { keyVersion };
    };
    let outcome: { result: T; keyVersion?: number | undefined };
    try {
      outcome = await operation(recordChange);
    } catch (err) {
      const mapped = err instanceof SealedError ? new KmsSealedError() : err;
      const reason = mapped instanceof KmsError ? mapped.code : 'internal_error';
      if (recorded !== undefined) {
        await undone(reason);
        throw mapped;
      }
      const failed = auditEvent(principal, action, resource, started, 'failure');
      failed.reason = reason;
      await this.#audited(failed);
      throw mapped;
    }
    if (recorded !== undefined) return outcome.result;
    const succeeded = auditEvent(principal, action, resource, started, 'success');
    if (outcome.keyVersion !== undefined) succeeded.keyVersion = outcome.keyVersion;
    await this.#audited(succeeded);
    return outcome.result;
  }

  /**
   * A batch whose items all use the latest version of one key, read once for the batch. `input` names the bytes
   * an item brings, size-checked before the key is read (as single calls check them).
   */
  #latestKeyBatch<I, T>(
    principal: Principal,
    action: KmsAction,
    name: string,
    purpose: KeyPurpose,
    items: readonly I[],
    plan: {
      input?: (item: I) => [bytes: Uint8Array, what: string];
      run: (item: I, loaded: LoadedKey, version: number) => T | Promise<T>;
      discard?: (result: T) => void;
    },
  ): Promise<BatchResult<T>[]> {
    checkBatch(items);
    const latest = once(() => this.#latest(name, purpose));
    return this.#runBatch(principal, action, items, {
      keyOf: () => name,
      run: async (item) => {
        const input = plan.input?.(item);
        if (input !== undefined) checkSize(input[0], MAX_PLAINTEXT_BYTES, input[1]);
        const { loaded, version } = await latest();
        return { result: await plan.run(item, loaded, version), version };
      },
      ...(plan.discard === undefined ? {} : { discard: plan.discard }),
    });
  }

  /** A batch of verifications against one key, each item at its own (or the latest usable) version. */
  #verificationBatch<I extends { version?: number }>(
    principal: Principal,
    action: KmsAction,
    name: string,
    purpose: KeyPurpose,
    items: readonly I[],
    check: (loaded: LoadedKey, item: I) => boolean,
  ): Promise<BatchResult<boolean>[]> {
    checkBatch(items);
    return this.#runBatch(principal, action, items, {
      keyOf: () => name,
      run: async (item) => {
        const { loaded, version } = await this.#forVerification(name, purpose, item.version);
        return { result: check(loaded, item), version };
      },
    });
  }

  /**
   * Runs a batch as one operation, audited once as Vault audits one entry per request: each distinct key is
   * authorised once (the items of a denied key get `forbidden`), the items run, and ONE event records what
   * happened (see `batchAuditEvent`). No result is released unless that event is durable; an unexpected error
   * fails the whole batch once its event is recorded.
   */
  async #runBatch<I, T>(
    principal: Principal,
    action: KmsAction,
    items: readonly I[],
    plan: BatchPlan<I, T>,
  ): Promise<BatchResult<T>[]> {
    const started = performance.now();
    const keys = items.map((item, i) => plan.keyOf(item, i));
    const allowed = new Map<string, boolean>();
    for (const key of keys) {
      if (!allowed.has(key)) allowed.set(key, this.#allowed(principal, action, `key:${key}`));
    }
    const tally: BatchTally = { errors: new Map(), used: new Set() };
    let unexpected: { readonly error: unknown } | undefined;
    const failed = (code: string, message: string): BatchResult<T> => {
      tally.errors.set(code, (tally.errors.get(code) ?? 0) + 1);
      return { ok: false, error: { code, message } };
    };
    const results = await Promise.all(
      items.map(async (item, i): Promise<BatchResult<T>> => {
        const key = keys[i] ?? '?';
        if (allowed.get(key) !== true) return failed('forbidden', `not allowed to ${action}`);
        try {
          const { result, version } = await plan.run(item, i);
          tally.used.add(`${key}:${version}`);
          return { ok: true, value: result };
        } catch (err) {
          const mapped = err instanceof SealedError ? new KmsSealedError() : err;
          if (mapped instanceof KmsError) return failed(mapped.code, mapped.message);
          unexpected ??= { error: mapped };
          return failed('internal_error', 'internal error');
        }
      }),
    );
    const denied = [...allowed].filter(([, ok]) => !ok).map(([key]) => key);
    try {
      await this.#audited(batchAuditEvent(principal, action, started, keys, denied, tally));
      if (unexpected !== undefined) throw unexpected.error;
    } catch (err) {
      if (plan.discard !== undefined) for (const r of results) if (r.ok) plan.discard(r.value);
      throw err;
    }
    return results;
  }

  /**
   * The authorizer's decision, except that Warden's own keys (`warden.*`) are used (every cryptographic operation
   * but signature verification), imported into and exported only by Warden's components (`internal` principals),
   * whatever a policy grants: a caller that could sign with the token-signing, checkpoint or registry key, decrypt
   * with the identity secrets key, compute with the hasher key or import material of its choosing could mint
   * tokens, forge checkpoints and signatures, and read what those keys protect.
   */
  #allowed(principal: Principal, action: KmsAction, resource: string): boolean {
    const name = resource.startsWith('key:') ? resource.slice(4) : undefined;
    if (
      name !== undefined &&
      (name.startsWith(SYSTEM_KEY_PREFIX) || this.#componentKeys.has(name)) &&
      principal.authMethod !== 'internal' &&
      SYSTEM_KEY_RESERVED_ACTIONS.has(action)
    ) {
      return false;
    }
    return this.#authz.authorize(principal, action, resource);
  }

  async #audited(event: AuditEvent): Promise<void> {
    try {
      await this.#audit.record(event);
    } catch {
      throw new AuditUnavailableError();
    }
  }

  async #withKeyLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#keyLocks.get(name) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.#keyLocks.set(name, tail);
    try {
      return await next;
    } finally {
      if (this.#keyLocks.get(name) === tail) this.#keyLocks.delete(name);
    }
  }

  /**
   * Changes to a key that need no key material (states, destruction, the floor) are refused while the root is
   * sealed, as every use is: sealing is the brake that stops a stolen credential, shredding included.
   */
  #refuseWhileSealed(): void {
    if (this.#root.status().sealed) throw new KmsSealedError();
  }

  /** Fresh (uncached) version records: all of them, or just `version`. */
  async #versionsFor(name: string, version: number | undefined): Promise<VersionRecord[]> {
    if ((await this.#repo.getKey(name)) === undefined) throw new KeyNotFoundError(name);
    if (version === undefined) return this.#repo.listVersions(name);
    const one = await this.#repo.getVersion(name, version);
    if (one === undefined) throw new KeyNotFoundError(name, version);
    return [one];
  }

  #forget(name: string): void {
    this.#metadata.delete(name);
    for (const id of [...this.#loaded.keys()]) if (id.startsWith(`${name}#`)) this.#loaded.delete(id);
  }

  /** The cached metadata of `name` while it is fresh; undefined when it must be read. */
  #freshMeta(name: string): CachedMetadata | undefined {
    const cached = this.#metadata.get(name);
    return cached !== undefined && this.#now() - cached.fetchedAt < METADATA_TTL_MS ? cached : undefined;
  }

  async #meta(name: string): Promise<CachedMetadata> {
    const cached = this.#freshMeta(name);
    if (cached !== undefined) return cached;
    const now = this.#now();
    const key = await this.#repo.getKey(name);
    if (key === undefined) throw new KeyNotFoundError(name);
    const versions = new Map((await this.#repo.listVersions(name)).map((v) => [v.version, v]));
    const fresh = { key, versions, fetchedAt: now };
    this.#metadata.set(name, fresh);
    return fresh;
  }

  async #metaFor(name: string, purpose: KeyPurpose): Promise<CachedMetadata> {
    const meta = await this.#meta(name);
    if (KEY_PURPOSE[meta.key.type] !== purpose) throw new WrongKeyTypeError(name, meta.key.type, purpose);
    return meta;
  }

  #usable(meta: CachedMetadata, version: number, use: 'use' | 'decrypt' | 'verify'): void {
    const record = meta.versions.get(version);
    if (record === undefined)
      throw use === 'decrypt' ? new KmsDecryptionError() : new KeyNotFoundError(meta.key.name, version);
    if (record.state !== 'enabled')
      throw new VersionUnavailableError(meta.key.name, version, record.state.replace('_', ' '));
    if (use === 'decrypt' && version < meta.key.minDecryptionVersion) {
      throw new VersionUnavailableError(
        meta.key.name,
        version,
        `below the minimum decryption version ${meta.key.minDecryptionVersion}`,
      );
    }
  }

  /**
   * `#latest` from the caches alone, without waiting for a turn (the hot path: nearly every call finds both
   * cached); undefined when something must be read. Throws what `#latest` throws for what it can see.
   */
  #latestCached(name: string, purpose: KeyPurpose): { loaded: LoadedKey; version: number } | undefined {
    const meta = this.#freshMeta(name);
    if (meta === undefined) return undefined;
    if (KEY_PURPOSE[meta.key.type] !== purpose) throw new WrongKeyTypeError(name, meta.key.type, purpose);
    const version = meta.key.latestVersion;
    this.#usable(meta, version, 'use');
    const loaded = this.#cachedKey(meta.key, version);
    return loaded === undefined ? undefined : { loaded, version };
  }

  async #latest(name: string, purpose: KeyPurpose): Promise<{ loaded: LoadedKey; version: number }> {
    const meta = await this.#metaFor(name, purpose);
    const version = meta.key.latestVersion;
    this.#usable(meta, version, 'use');
    return { loaded: await this.#load(meta.key, version), version };
  }

  /** The key of `version` (default: latest) for a verification; any enabled version verifies. */
  async #forVerification(
    name: string,
    purpose: KeyPurpose,
    version: number | undefined,
  ): Promise<{ loaded: LoadedKey; version: number }> {
    const meta = await this.#metaFor(name, purpose);
    const v = version ?? meta.key.latestVersion;
    this.#usable(meta, v, 'verify');
    return { loaded: await this.#load(meta.key, v), version: v };
  }

  /** The unwrapped key if cached; refuses (and forgets every key) once the root is sealed. */
  #cachedKey(key: KeyRecord, version: number): LoadedKey | undefined {
    // A sealed root means no key may be used, cached or not (the root can be sealed behind the service's back).
    if (this.#root.status().sealed) {
      this.#loaded.clear();
      throw new KmsSealedError();
    }
    return this.#loaded.get(`${key.name}#${version}`);
  }

  async #load(key: KeyRecord, version: number): Promise<LoadedKey> {
    const cached = this.#cachedKey(key, version);
    if (cached !== undefined) return cached;
    const id = `${key.name}#${version}`;
    const material = await this.#materialOf(key.name, version, key);
    try {
      const loaded = loadMaterial(key.type, material);
      this.#loaded.set(id, loaded);
      return loaded;
    } finally {
      wipe(material);
    }
  }

  async #materialOf(name: string, version: number, known?: KeyRecord): Promise<Buffer> {
    const key = known ?? (await this.#repo.getKey(name));
    if (key === undefined) throw new KeyNotFoundError(name);
    const wrapped = await this.#repo.getWrappedMaterial(name, version);
    if (wrapped === undefined) throw new VersionUnavailableError(name, version, 'destroyed');
    return this.#root.unwrap(wrapped, materialAad(key, version)).catch(mapSealed);
  }

  async #wrap(key: KeyRecord, version: number, material: Buffer): Promise<Buffer> {
    return this.#root.wrap(material, materialAad(key, version)).catch(mapSealed);
  }

  /** 32 bytes of root entropy (the HSM's generator when one is configured) for new key material. */
  async #seed(): Promise<Buffer> {
    return this.#root.randomBytes(32).catch(mapSealed);
  }
}

const EMPTY = new Uint8Array(0);

/** The options of `CreateKeyRequest` that only a new key takes. */
const KEY_OPTIONS = ['exportable', 'rotationPeriodDays', 'autoFloorGraceDays', 'description'] as const;

/** Records a key change before it is made (`KmsService.#run`); rejects with `AuditUnavailableError`. */
type RecordChange = (keyVersion?: number) => Promise<void>;

/**
 * A scheduled rotation or destruction, which resolves false instead of failing when someone acted first between
 * the listing of what is due and the act (another node's scheduler rotated or destroyed, an operator cancelled):
 * the other due work still runs, and the refusal is audited.
 */
async function skipIfOvertaken(work: Promise<unknown>): Promise<boolean> {
  try {
    await work;
    return true;
  } catch (err) {
    if (err instanceof KmsError && (err.code === 'conflict' || err.code === 'version_unavailable'))
      return false;
    throw err;
  }
}

function aadFor(name: string, version: number, context: Uint8Array): Buffer {
  checkSize(context, MAX_CONTEXT_BYTES, 'context');
  return ciphertextAad(name, version, context);
}

function systemAad(id: string): Buffer {
  return Buffer.from(`warden/kms/v1 system\0${id}`, 'utf8');
}

/** Material is bound to its key name, version and type, so a wrapped blob cannot be moved to another key. */
function materialAad(key: KeyRecord, version: number): Buffer {
  return Buffer.from(`warden/kms/v1 material\0${key.name}\0${version}\0${key.type}`, 'utf8');
}

function safeParse(ciphertext: string): ReturnType<typeof parseCiphertext> | undefined {
  try {
    return parseCiphertext(ciphertext);
  } catch {
    return undefined;
  }
}

function mapSealed(err: unknown): never {
  if (err instanceof SealedError) throw new KmsSealedError();
  throw err;
}

function validateName(name: string): void {
  if (typeof name !== 'string' || !KEY_NAME_PATTERN.test(name)) {
    throw new InvalidRequestError(
      'key names are 1-128 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit',
    );
  }
}

function rotationPeriod(days: number | undefined): number | null {
  if (days === undefined) return DEFAULT_ROTATION_PERIOD_MS;
  if (days === 0) return null;
  return positiveDays(days, 'rotationPeriodDays');
}

function positiveDays(days: number, field: string): number {
  if (typeof days !== 'number' || !Number.isFinite(days) || days <= 0 || days > 36500)
    throw new InvalidRequestError(`${field} must be a positive number of days`);
  return Math.round(days * DAY_MS);
}

function nonNegativeDays(days: number, field: string): number {
  return days === 0 ? 0 : positiveDays(days, field);
}

function checkSize(bytes: Uint8Array, max: number, what: string): void {
  if (!(bytes instanceof Uint8Array)) throw new InvalidRequestError(`${what} must be bytes`);
  if (bytes.byteLength > max) throw new InvalidRequestError(`${what} exceeds ${max} bytes`);
}

function checkBatch(items: readonly unknown[]): void {
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH_ITEMS) {
    throw new InvalidRequestError(`a batch holds 1..${MAX_BATCH_ITEMS} items`);
  }
}

/** One generated data key of a batch (the plaintext only when asked for). */
type BatchDataKey = { ciphertext: string; plaintext?: Buffer; keyVersion: number };

/** How one batch went, for its audit event: error counts by code, and the `name:version` of every key used. */
interface BatchTally {
  readonly errors: Map<string, number>;
  readonly used: Set<string>;
}

/** A batch's items for `#runBatch`: the key each item is authorised against, and its work. */
interface BatchPlan<I, T> {
  /** The key an item uses; an unparseable ciphertext's is `?`, authorised as `key:?` like a single call. */
  keyOf(item: I, index: number): string;
  run(item: I, index: number): Promise<{ result: T; version: number }>;
  /** Wipes a secret result that will not be released (the batch's audit event could not be recorded). */
  discard?(result: T): void;
}

/** Key names listed in a batch's audit event; more are counted, not listed, so one event stays small. */
const MAX_AUDITED_KEYS = 64;

type MutableEvent = { -readonly [K in keyof AuditEvent]: AuditEvent[K] };

/** An operation's audit event; the caller adds its reason, key version or details. */
function auditEvent(
  principal: Principal,
  action: KmsAction,
  resource: string,
  started: number,
  outcome: AuditEvent['outcome'],
): MutableEvent {
  const event: MutableEvent = {
    action: `kms.${action}`,
    principal: { id: principal.id, authMethod: principal.authMethod },
    resource,
    outcome,
  };
  const request = principal.request;
  if (request !== undefined) {
    if (request.id !== undefined) event.requestId = request.id;
    if (request.sourceIp !== undefined) event.sourceIp = request.sourceIp;
    if (request.userAgent !== undefined) event.userAgent = request.userAgent.slice(0, 256);
    // What the caller said the use was for, next to what it did: the evidence a purpose-bound policy rests on.
    if (request.purpose !== undefined) event.details = { purpose: request.purpose };
  }
  event.latencyMs = Math.round((performance.now() - started) * 1000) / 1000;
  return event;
}

/**
 * The one event of a batch. Resource: `key:<name>` when every item names that key, else `key:*`. Outcome:
 * `denied` when any key was denied, else `failure` when any item failed, else `success`; reason `forbidden`, the
 * one error code, or `multiple_errors`. Details: `batch`, `items`, `succeeded`, `errors.<code>` (items per error
 * code), `keys` (the sorted `name:version` pairs that produced results), `denied` (key names refused), and
 * `distinctKeys` when more than MAX_AUDITED_KEYS were used. `keyVersion` when exactly one version was used.
 */
function batchAuditEvent(
  principal: Principal,
  action: KmsAction,
  started: number,
  keys: readonly string[],
  denied: readonly string[],
  tally: BatchTally,
): AuditEvent {
  const first = keys[0] ?? '?';
  const oneKey = keys.every((key) => key === first);
  const failures = [...tally.errors].sort(([a], [b]) => (a < b ? -1 : 1));
  const outcome = denied.length > 0 ? 'denied' : failures.length > 0 ? 'failure' : 'success';
  const event = auditEvent(principal, action, oneKey ? `key:${first}` : 'key:*', started, outcome);
  if (outcome !== 'success') {
    event.reason =
      outcome === 'denied'
        ? 'forbidden'
        : failures.length === 1
          ? (failures[0]?.[0] ?? '')
          : 'multiple_errors';
  }
  const used = [...tally.used].sort();
  if (oneKey && used.length === 1) event.keyVersion = Number(used[0]?.slice(first.length + 1));
  const failedItems = failures.reduce((sum, [, count]) => sum + count, 0);
  const details: Record<string, string | number | boolean> = {
    ...event.details,
    batch: true,
    items: keys.length,
    succeeded: keys.length - failedItems,
  };
  for (const [code, count] of failures) details[`errors.${code}`] = count;
  if (used.length > 0) details.keys = used.slice(0, MAX_AUDITED_KEYS).join(',');
  if (used.length > MAX_AUDITED_KEYS) details.distinctKeys = used.length;
  if (denied.length > 0) details.denied = [...denied].sort().slice(0, MAX_AUDITED_KEYS).join(',');
  event.details = details;
  return event;
}

/** A promise started by the first item of a batch that needs it and shared by the rest (the key, resolved once). */
function once<T>(start: () => Promise<T>): () => Promise<T> {
  let promise: Promise<T> | undefined;
  return () => (promise ??= start());
}
