import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { StoreConflictError, columnTypes } from '../store/index.ts';
import type { Bytes, EpochMillis, Flag, Migration, Store, StoreDialect } from '../store/index.ts';
import { KeyExistsError } from './errors.ts';
import type { KeyPatch, KmsRepository } from './repository.ts';
import type { KeyRecord, KeyType, VersionRecord, VersionState } from './types.ts';

/** Metadata tables, in Warden's main store. */
export interface KmsMetadataSchema {
  kms_keys: {
    name: string;
    type: string;
    created_at: EpochMillis;
    rotation_period_ms: EpochMillis | null;
    next_rotation_at: EpochMillis | null;
    latest_version: number;
    min_decryption_version: number;
    auto_floor_grace_ms: EpochMillis | null;
    exportable: Flag;
    description: string;
  };
  kms_key_versions: {
    name: string;
    version: number;
    state: string;
    created_at: EpochMillis;
    origin: string;
    destroy_at: EpochMillis | null;
    destroyed_at: EpochMillis | null;
    public_key: Bytes | null;
    /** The keystore row holding this version's wrapped material. */
    material_id: string;
  };
}

/** Wrapped key material, in the keystore: a separate database that holds nothing else. */
export interface KeystoreSchema {
  /** One row per write attempt (random id), so concurrent writers never touch each other's rows. */
  keystore_material: { id: string; name: string; version: number; wrapped: Bytes; created_at: EpochMillis };
  keystore_system: { id: string; wrapped: Bytes; created_at: EpochMillis };
}

export const KMS_METADATA_MIGRATIONS: readonly Migration[] = [
  {
    id: 'kms/0001-keys',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('kms_keys')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('rotation_period_ms', t.epochMillis)
        .addColumn('next_rotation_at', t.epochMillis)
        .addColumn('latest_version', 'integer', (c) => c.notNull())
        .addColumn('min_decryption_version', 'integer', (c) => c.notNull())
        .addColumn('auto_floor_grace_ms', t.epochMillis)
        .addColumn('exportable', t.flag, (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('kms_key_versions')
        .addColumn('name', 'text', (c) => c.notNull().references('kms_keys.name'))
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .addColumn('origin', 'text', (c) => c.notNull())
        .addColumn('destroy_at', t.epochMillis)
        .addColumn('destroyed_at', t.epochMillis)
        .addColumn('public_key', t.bytes)
        .addColumn('material_id', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('kms_key_versions_pk', ['name', 'version'])
        .execute();
      await db.schema
        .createIndex('kms_keys_next_rotation')
        .on('kms_keys')
        .column('next_rotation_at')
        .execute();
      await db.schema
        .createIndex('kms_key_versions_destroy_at')
        .on('kms_key_versions')
        .column('destroy_at')
        .execute();
    },
  },
];

export const KEYSTORE_MIGRATIONS: readonly Migration[] = [
  {
    id: 'keystore/0001-material',
    async up(db: Kysely<unknown>, dialect: StoreDialect) {
      const t = columnTypes(dialect);
      await db.schema
        .createTable('keystore_material')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('wrapped', t.bytes, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('keystore_system')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('wrapped', t.bytes, (c) => c.notNull())
        .addColumn('created_at', t.epochMillis, (c) => c.notNull())
        .execute();
    },
  },
];

/** Orphan material younger than this may belong to a create or rotation still in flight on another node. */
const ORPHAN_GRACE_MS = 10 * 60 * 1000;

function toKey(row: KmsMetadataSchema['kms_keys']): KeyRecord {
  return {
    name: row.name,
    type: row.type as KeyType,
    createdAt: row.created_at,
    rotationPeriodMs: row.rotation_period_ms,
    nextRotationAt: row.next_rotation_at,
    latestVersion: row.latest_version,
    minDecryptionVersion: row.min_decryption_version,
    autoFloorGraceMs: row.auto_floor_grace_ms,
    exportable: row.exportable === 1,
    description: row.description,
  };
}

function toVersion(row: KmsMetadataSchema['kms_key_versions']): VersionRecord {
  return {
    name: row.name,
    version: row.version,
    state: row.state as VersionState,
    createdAt: row.created_at,
    origin: row.origin as VersionRecord['origin'],
    destroyAt: row.destroy_at,
    destroyedAt: row.destroyed_at,
    publicKey: row.public_key === null ? null : Buffer.from(row.public_key),
  };
}

function versionRow(v: VersionRecord, materialId: string): KmsMetadataSchema['kms_key_versions'] {
  return {
    material_id: materialId,
    name: v.name,
    version: v.version,
    state: v.state,
    created_at: v.createdAt,
    origin: v.origin,
    destroy_at: v.destroyAt,
    destroyed_at: v.destroyedAt,
    public_key: v.publicKey,
  };
}

/**
 * The KMS repository over two stores. Cross-store writes are ordered for crash safety: material first, then the
 * metadata that points to it; on destruction, material deleted (and scrubbed) first, then the version marked.
 */
export class SqlKmsRepository implements KmsRepository {
  readonly #meta: Store<KmsMetadataSchema>;
  readonly #keys: Store<KeystoreSchema>;
  readonly #now: () => number;
  #scrubPending = false;

  constructor(
    metadata: Store<KmsMetadataSchema>,
    keystore: Store<KeystoreSchema>,
    now: () => number = Date.now,
  ) {
    this.#meta = metadata;
    this.#keys = keystore;
    this.#now = now;
  }

  static async open(
    metadata: Store<KmsMetadataSchema>,
    keystore: Store<KeystoreSchema>,
    now?: () => number,
  ): Promise<SqlKmsRepository> {
    await metadata.migrate(KMS_METADATA_MIGRATIONS);
    await keystore.migrate(KEYSTORE_MIGRATIONS);
    return new SqlKmsRepository(metadata, keystore, now);
  }

  async createKey(key: KeyRecord, version: VersionRecord, wrappedMaterial: Buffer): Promise<void> {
    if ((await this.getKey(key.name)) !== undefined) throw new KeyExistsError(key.name);
    const materialId = await this.#putMaterial(key.name, version.version, wrappedMaterial);
    try {
      await this.#meta.transaction(async (trx) => {
        await trx
          .insertInto('kms_keys')
          .values({
            name: key.name,
            type: key.type,
            created_at: key.createdAt,
            rotation_period_ms: key.rotationPeriodMs,
            next_rotation_at: key.nextRotationAt,
            latest_version: key.latestVersion,
            min_decryption_version: key.minDecryptionVersion,
            auto_floor_grace_ms: key.autoFloorGraceMs,
            exportable: key.exportable ? 1 : 0,
            description: key.description,
          })
          .execute();
        await trx.insertInto('kms_key_versions').values(versionRow(version, materialId)).execute();
      });
    } catch (err) {
      await this.#deleteMaterial(materialId);
      if (err instanceof StoreConflictError) throw new KeyExistsError(key.name);
      throw err;
    }
  }

  async #putMaterial(name: string, version: number, wrapped: Buffer): Promise<string> {
    const id = randomBytes(16).toString('hex');
    await this.#keys.db
      .insertInto('keystore_material')
      .values({ id, name, version, wrapped, created_at: this.#now() })
      .execute();
    return id;
  }

  async getKey(name: string): Promise<KeyRecord | undefined> {
    const row = await this.#meta.db
      .selectFrom('kms_keys')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return row === undefined ? undefined : toKey(row);
  }

  async listKeys(): Promise<KeyRecord[]> {
    return (await this.#meta.db.selectFrom('kms_keys').selectAll().orderBy('name').execute()).map(toKey);
  }

  async getVersion(name: string, version: number): Promise<VersionRecord | undefined> {
    const row = await this.#meta.db
      .selectFrom('kms_key_versions')
      .selectAll()
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    return row === undefined ? undefined : toVersion(row);
  }

  async listVersions(name: string): Promise<VersionRecord[]> {
    const rows = await this.#meta.db
      .selectFrom('kms_key_versions')
      .selectAll()
      .where('name', '=', name)
      .orderBy('version')
      .execute();
    return rows.map(toVersion);
  }

  async addVersion(
    name: string,
    expectedLatest: number,
    version: VersionRecord,
    wrappedMaterial: Buffer,
    nextRotationAt: number | null,
  ): Promise<boolean> {
    const materialId = await this.#putMaterial(name, version.version, wrappedMaterial);
    let won = false;
    try {
      won = await this.#meta.transaction(async (trx) => {
        const updated = await trx
          .updateTable('kms_keys')
          .set({ latest_version: version.version, next_rotation_at: nextRotationAt })
          .where('name', '=', name)
          .where('latest_version', '=', expectedLatest)
          .executeTakeFirst();
        if (updated.numUpdatedRows !== 1n) return false;
        await trx.insertInto('kms_key_versions').values(versionRow(version, materialId)).execute();
        return true;
      });
    } finally {
      if (!won) await this.#deleteMaterial(materialId);
    }
    return won;
  }

  async updateKey(name: string, patch: KeyPatch): Promise<void> {
    const set: Partial<KmsMetadataSchema['kms_keys']> = {};
    if (patch.rotationPeriodMs !== undefined) set.rotation_period_ms = patch.rotationPeriodMs;
    if (patch.nextRotationAt !== undefined) set.next_rotation_at = patch.nextRotationAt;
    if (patch.minDecryptionVersion !== undefined) set.min_decryption_version = patch.minDecryptionVersion;
    if (patch.autoFloorGraceMs !== undefined) set.auto_floor_grace_ms = patch.autoFloorGraceMs;
    if (patch.description !== undefined) set.description = patch.description;
    if (Object.keys(set).length === 0) return;
    await this.#meta.db.updateTable('kms_keys').set(set).where('name', '=', name).execute();
  }

  async setVersionState(
    name: string,
    version: number,
    state: Exclude<VersionState, 'destroyed'>,
    destroyAt: number | null,
    expected?: VersionState,
  ): Promise<boolean> {
    let update = this.#meta.db
      .updateTable('kms_key_versions')
      .set({ state, destroy_at: destroyAt })
      .where('name', '=', name)
      .where('version', '=', version)
      .where('state', '!=', 'destroyed');
    if (expected !== undefined) update = update.where('state', '=', expected);
    const result = await update.executeTakeFirst();
    return result.numUpdatedRows === 1n;
  }

  async getWrappedMaterial(name: string, version: number): Promise<Buffer | undefined> {
    const id = await this.#materialId(name, version);
    if (id === undefined) return undefined;
    const row = await this.#keys.db
      .selectFrom('keystore_material')
      .select('wrapped')
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : Buffer.from(row.wrapped);
  }

  async #materialId(name: string, version: number): Promise<string | undefined> {
    const row = await this.#meta.db
      .selectFrom('kms_key_versions')
      .select('material_id')
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    return row?.material_id;
  }

  async destroyVersion(name: string, version: number, at: number): Promise<void> {
    const id = await this.#materialId(name, version);
    if (id !== undefined) await this.#deleteMaterial(id);
    await this.#meta.db
      .updateTable('kms_key_versions')
      .set({ state: 'destroyed', destroyed_at: at, destroy_at: null })
      .where('name', '=', name)
      .where('version', '=', version)
      .execute();
  }

  async destroyIfDue(name: string, version: number, dueBy: number, at: number): Promise<boolean> {
    const id = await this.#materialId(name, version);
    // One statement decides: a concurrent cancel either committed first (no row matches) or waits for this one.
    const marked = await this.#meta.db
      .updateTable('kms_key_versions')
      .set({ state: 'destroyed', destroyed_at: at, destroy_at: null })
      .where('name', '=', name)
      .where('version', '=', version)
      .where('state', '=', 'scheduled_destruction')
      .where('destroy_at', '<=', dueBy)
      .executeTakeFirst();
    if (marked.numUpdatedRows !== 1n) return false;
    if (id !== undefined) await this.#deleteMaterial(id);
    return true;
  }

  async #deleteMaterial(id: string): Promise<void> {
    await this.#keys.db.deleteFrom('keystore_material').where('id', '=', id).execute();
    this.#scrubPending = true;
    await this.flushPendingScrub();
  }

  async #materialExists(id: string): Promise<boolean> {
    const row = await this.#keys.db
      .selectFrom('keystore_material')
      .select('id')
      .where('id', '=', id)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * Makes deleted material unrecoverable from the keystore's files. A reader holding the WAL can keep the
   * checkpoint from completing; the scrub then stays pending and maintenance retries it until it completes.
   * Returns whether nothing is pending any more.
   */
  async flushPendingScrub(force = false): Promise<boolean> {
    if (!this.#scrubPending && !force) return true;
    const { complete } = await this.#keys.scrub(['keystore_material']);
    this.#scrubPending = !complete;
    return complete;
  }

  async dueRotations(now: number): Promise<string[]> {
    const rows = await this.#meta.db
      .selectFrom('kms_keys')
      .select('name')
      .where('next_rotation_at', 'is not', null)
      .where('next_rotation_at', '<=', now)
      .orderBy('name')
      .execute();
    return rows.map((r) => r.name);
  }

  async dueDestructions(now: number): Promise<{ name: string; version: number }[]> {
    return this.#meta.db
      .selectFrom('kms_key_versions')
      .select(['name', 'version'])
      .where('state', '=', 'scheduled_destruction')
      .where('destroy_at', '<=', now)
      .orderBy('name')
      .orderBy('version')
      .execute();
  }

  async getSystemMaterial(id: string): Promise<Buffer | undefined> {
    const row = await this.#keys.db
      .selectFrom('keystore_system')
      .select('wrapped')
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : Buffer.from(row.wrapped);
  }

  async putSystemMaterial(id: string, wrapped: Buffer): Promise<void> {
    try {
      await this.#keys.db
        .insertInto('keystore_system')
        .values({ id, wrapped, created_at: this.#now() })
        .execute();
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
    }
  }

  async reconcile(): Promise<{ orphanMaterialRemoved: number; destructionsCompleted: number }> {
    // Versions first, material second: material is always written before the version row that points to it, so
    // every version read here already had its material when the material is read — unless a destruction took
    // it. Reading in the other order would take a version committed in between (another node rotating) for an
    // interrupted destruction and destroy it.
    const versions = await this.#meta.db
      .selectFrom('kms_key_versions')
      .select(['name', 'version', 'state', 'material_id'])
      .execute();
    const material = await this.#keys.db
      .selectFrom('keystore_material')
      .select(['id', 'created_at'])
      .execute();
    const referencedBy = new Map(versions.map((v) => [v.material_id, v]));
    const present = new Set(material.map((m) => m.id));
    let orphanMaterialRemoved = 0;
    for (const m of material) {
      const owner = referencedBy.get(m.id);
      const orphan = owner === undefined && m.created_at < this.#now() - ORPHAN_GRACE_MS;
      if (orphan || owner?.state === 'destroyed') {
        await this.#deleteMaterial(m.id);
        orphanMaterialRemoved++;
      }
    }
    let destructionsCompleted = 0;
    for (const v of versions) {
      if (
        v.state !== 'destroyed' &&
        !present.has(v.material_id) &&
        !(await this.#materialExists(v.material_id))
      ) {
        // Material gone but version not marked: a destruction interrupted between its two steps.
        await this.destroyVersion(v.name, v.version, this.#now());
        destructionsCompleted++;
      }
    }
    // A scrub a concurrent reader kept from completing before a restart is finished here.
    await this.flushPendingScrub(true);
    return { orphanMaterialRemoved, destructionsCompleted };
  }

  async close(): Promise<void> {
    await this.#meta.close();
    await this.#keys.close();
  }
}
