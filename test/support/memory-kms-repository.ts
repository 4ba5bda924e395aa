import { KeyExistsError } from '../../src/kms/errors.ts';
import type { KeyPatch, KmsRepository } from '../../src/kms/repository.ts';
import type { KeyRecord, VersionRecord, VersionState } from '../../src/kms/types.ts';

/**
 * An in-memory `KmsRepository` for tests of layers above the KMS (HTTP API, SDK, CLI). It keeps the port's
 * contract (compare-and-set rotation, first-writer-wins system material, shred-then-mark destruction) but none
 * of a real store's durability.
 */
export class MemoryKmsRepository implements KmsRepository {
  readonly keys = new Map<string, KeyRecord>();
  readonly versions = new Map<string, Map<number, VersionRecord>>();
  readonly material = new Map<string, Buffer>();
  readonly system = new Map<string, Buffer>();

  createKey(key: KeyRecord, version: VersionRecord, wrappedMaterial: Buffer): Promise<void> {
    if (this.keys.has(key.name)) return Promise.reject(new KeyExistsError(key.name));
    this.material.set(`${key.name}#${version.version}`, Buffer.from(wrappedMaterial));
    this.keys.set(key.name, key);
    this.versions.set(key.name, new Map([[version.version, version]]));
    return Promise.resolve();
  }

  getKey(name: string): Promise<KeyRecord | undefined> {
    return Promise.resolve(this.keys.get(name));
  }

  listKeys(): Promise<KeyRecord[]> {
    return Promise.resolve([...this.keys.values()].sort((a, b) => a.name.localeCompare(b.name)));
  }

  getVersion(name: string, version: number): Promise<VersionRecord | undefined> {
    return Promise.resolve(this.versions.get(name)?.get(version));
  }

  listVersions(name: string): Promise<VersionRecord[]> {
    return Promise.resolve(
      [...(this.versions.get(name)?.values() ?? [])].sort((a, b) => a.version - b.version),
    );
  }

  addVersion(
    name: string,
    expectedLatest: number,
    version: VersionRecord,
    wrappedMaterial: Buffer,
    nextRotationAt: number | null,
  ): Promise<boolean> {
    const key = this.keys.get(name);
    if (key?.latestVersion !== expectedLatest) return Promise.resolve(false);
    this.material.set(`${name}#${version.version}`, Buffer.from(wrappedMaterial));
    this.versions.get(name)?.set(version.version, version);
    this.keys.set(name, { ...key, latestVersion: version.version, nextRotationAt });
    return Promise.resolve(true);
  }

  updateKey(name: string, patch: KeyPatch): Promise<void> {
    const key = this.keys.get(name);
    if (key !== undefined) this.keys.set(name, { ...key, ...patch });
    return Promise.resolve();
  }

  setVersionState(
    name: string,
    version: number,
    state: Exclude<VersionState, 'destroyed'>,
    destroyAt: number | null,
    expected?: VersionState,
  ): Promise<boolean> {
    const versions = this.versions.get(name);
    const record = versions?.get(version);
    if (versions === undefined || record === undefined || record.state === 'destroyed')
      return Promise.resolve(false);
    if (expected !== undefined && record.state !== expected) return Promise.resolve(false);
    versions.set(version, { ...record, state, destroyAt });
    return Promise.resolve(true);
  }

  getWrappedMaterial(name: string, version: number): Promise<Buffer | undefined> {
    return Promise.resolve(this.material.get(`${name}#${version}`));
  }

  destroyVersion(name: string, version: number, at: number): Promise<void> {
    this.material.delete(`${name}#${version}`);
    const versions = this.versions.get(name);
    const record = versions?.get(version);
    if (versions !== undefined && record !== undefined) {
      versions.set(version, { ...record, state: 'destroyed', destroyAt: null, destroyedAt: at });
    }
    return Promise.resolve();
  }

  destroyIfDue(name: string, version: number, dueBy: number, at: number): Promise<boolean> {
    const record = this.versions.get(name)?.get(version);
    if (record?.state !== 'scheduled_destruction' || record.destroyAt === null || record.destroyAt > dueBy)
      return Promise.resolve(false);
    return this.destroyVersion(name, version, at).then(() => true);
  }

  dueRotations(now: number): Promise<string[]> {
    return Promise.resolve(
      [...this.keys.values()]
        .filter((k) => k.nextRotationAt !== null && k.nextRotationAt <= now)
        .map((k) => k.name),
    );
  }

  dueDestructions(now: number): Promise<{ name: string; version: number }[]> {
    const due: { name: string; version: number }[] = [];
    for (const versions of this.versions.values()) {
      for (const v of versions.values()) {
        if (v.state === 'scheduled_destruction' && v.destroyAt !== null && v.destroyAt <= now)
          due.push({ name: v.name, version: v.version });
      }
    }
    return Promise.resolve(due);
  }

  getSystemMaterial(id: string): Promise<Buffer | undefined> {
    return Promise.resolve(this.system.get(id));
  }

  putSystemMaterial(id: string, wrapped: Buffer): Promise<void> {
    if (!this.system.has(id)) this.system.set(id, Buffer.from(wrapped));
    return Promise.resolve();
  }

  /** Nothing to scrub: memory holds no files. */
  flushPendingScrub(): Promise<boolean> {
    return Promise.resolve(true);
  }

  reconcile(): Promise<{ orphanMaterialRemoved: number; destructionsCompleted: number }> {
    return Promise.resolve({ orphanMaterialRemoved: 0, destructionsCompleted: 0 });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
