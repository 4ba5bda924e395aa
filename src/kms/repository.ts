import type { KeyRecord, VersionRecord, VersionState } from './types.ts';

/**
 * Persistence port of the KMS. Metadata (keys, versions, states) and key material live in two separate stores:
 * the material only ever wrapped by the root of trust, in the keystore. Writes that touch both are ordered so a
 * crash at any point leaves a state `reconcile` repairs: material is written before the metadata that points to
 * it, and deleted (crypto-shredded) before its version is marked destroyed — except by the scheduler's
 * `destroyIfDue`, which marks first (conditionally) and deletes after.
 */
export type KeyPatch = Partial<
  Pick<
    KeyRecord,
    'rotationPeriodMs' | 'nextRotationAt' | 'minDecryptionVersion' | 'autoFloorGraceMs' | 'description'
  >
>;

export interface KmsRepository {
  /** Inserts a key with its first version. Throws `KeyExistsError` when the name is taken. */
  createKey(key: KeyRecord, version: VersionRecord, wrappedMaterial: Buffer): Promise<void>;
  getKey(name: string): Promise<KeyRecord | undefined>;
  listKeys(): Promise<KeyRecord[]>;
  getVersion(name: string, version: number): Promise<VersionRecord | undefined>;
  listVersions(name: string): Promise<VersionRecord[]>;
  /**
   * Adds `version.version` (= expectedLatest + 1) only if the key's latest version is still `expectedLatest`, so
   * concurrent rotations (threads, processes, nodes) serialise: returns false when another writer won.
   */
  addVersion(
    name: string,
    expectedLatest: number,
    version: VersionRecord,
    wrappedMaterial: Buffer,
    nextRotationAt: number | null,
  ): Promise<boolean>;
  updateKey(name: string, patch: KeyPatch): Promise<void>;
  /**
   * Sets a version's state unless it is destroyed — and, given `expected`, only while its state is still that, in
   * one conditional statement (a cancelled destruction must not come back from destroyed). Returns whether the
   * version changed.
   */
  setVersionState(
    name: string,
    version: number,
    state: Exclude<VersionState, 'destroyed'>,
    destroyAt: number | null,
    expected?: VersionState,
  ): Promise<boolean>;
  getWrappedMaterial(name: string, version: number): Promise<Buffer | undefined>;
  /** Crypto-shredding: deletes the wrapped material, then marks the version destroyed. */
  destroyVersion(name: string, version: number, at: number): Promise<void>;
  /**
   * The scheduler's destruction: marks the version destroyed in ONE conditional statement, only while it is still
   * scheduled for destruction at or before `dueBy` — so a cancel committed first (by any node) always wins — and
   * then deletes and scrubs its material (a crash in between leaves material of a destroyed version, which
   * `reconcile` deletes). Returns false, changing nothing, when the version was no longer due.
   */
  destroyIfDue(name: string, version: number, dueBy: number, at: number): Promise<boolean>;
  dueRotations(now: number): Promise<string[]>;
  dueDestructions(now: number): Promise<{ name: string; version: number }[]>;
  /** Keystore entries that belong to the KMS itself (the BYOK wrapping key), outside the key namespace. */
  getSystemMaterial(id: string): Promise<Buffer | undefined>;
  /** Stores it unless an entry with that id exists (first writer wins). */
  putSystemMaterial(id: string, wrapped: Buffer): Promise<void>;
  /** Retries a scrub of deleted material that a concurrent reader kept from completing; true when none is left. */
  flushPendingScrub(): Promise<boolean>;
  /** Repairs what a crash between the two stores can leave: orphan material, half-destroyed versions. */
  reconcile(): Promise<{ orphanMaterialRemoved: number; destructionsCompleted: number }>;
  close(): Promise<void>;
}
