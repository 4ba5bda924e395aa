import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { LocalKeyring } from '../../src/keyring/index.ts';
import {
  ArtifactVault,
  FsBlobStore,
  InvalidInputError,
  NotFoundError,
  TooLargeError,
} from '../../src/registry/index.ts';

async function* pieces(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) {
    await Promise.resolve();
    yield buf.subarray(i, i + size);
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

describe('FsBlobStore', () => {
  let dir: string;
  let blobs: FsBlobStore;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'warden-blobs-'));
    blobs = await FsBlobStore.open(path.join(dir, 'store'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('is content-addressed, idempotent, and reads back whole, by range and at random offsets', async () => {
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const ref = await blobs.put(pieces(data, 7000));
    assert.equal(ref.id, createHash('sha256').update(data).digest('hex'));
    assert.equal(ref.size, data.length);
    assert.deepEqual(await blobs.put(pieces(data, 65536)), ref);
    assert.deepEqual(await collect(blobs.get(ref.id)), data);
    assert.deepEqual(await collect(blobs.get(ref.id, { start: 1000, end: 1500 })), data.subarray(1000, 1500));
    assert.deepEqual(Buffer.from(await blobs.read(ref.id, 299_990, 100)), data.subarray(299_990));
    assert.deepEqual(await blobs.stat(ref.id), { size: data.length });
    assert.equal(await blobs.exists(ref.id), true);
    await blobs.delete(ref.id);
    await blobs.delete(ref.id);
    assert.equal(await blobs.exists(ref.id), false);
    await assert.rejects(collect(blobs.get(ref.id)), NotFoundError);
    await assert.rejects(blobs.read(ref.id, 0, 1), NotFoundError);
  });

  it('refuses oversized input, leaving nothing behind, and malformed ids', async () => {
    await assert.rejects(blobs.put(pieces(Buffer.alloc(5000), 1000), { maxBytes: 4096 }), TooLargeError);
    assert.deepEqual(readdirSync(path.join(dir, 'store', 'tmp')), []);
    for (const id of ['', '../x', 'A'.repeat(64), 'a'.repeat(63)]) {
      await assert.rejects(blobs.read(id, 0, 1), InvalidInputError);
    }
  });
});

describe('ArtifactVault random access', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'warden-vault-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('any range read through the envelope equals the plaintext range', async () => {
    const keyring = (await LocalKeyring.open(path.join(dir, 'keyring.json'), { create: true })).keyring;
    const blobs = await FsBlobStore.open(path.join(dir, 'blobs'));
    const vault = new ArtifactVault(blobs, keyring, { chunkExponent: 14 });
    const data = Buffer.from(Array.from({ length: 100_003 }, (_, i) => (i * 31) % 256));
    const file = path.join(dir, 'plain.bin');
    await writeFile(file, data);
    const binding = {
      kind: 'model' as const,
      name: 'm',
      version: '1',
      root: 'a'.repeat(64),
      path: 'plain.bin',
    };
    const { blobId } = await vault.store(file, binding, {
      sha256: createHash('sha256').update(data).digest('hex'),
      size: data.length,
    });
    const source = await vault.source(blobId, binding);
    assert.equal(source.size, data.length);
    await fc.assert(
      fc.asyncProperty(fc.nat(data.length + 10), fc.nat(40_000), async (offset, length) => {
        const got = Buffer.from(await source.read(offset, length));
        const start = Math.min(offset, data.length);
        assert.deepEqual(got, data.subarray(start, Math.min(data.length, start + length)));
      }),
      { numRuns: 200 },
    );
    assert.deepEqual(await collect(vault.decrypt(blobId, binding)), data);
    // Same bytes, other registry identity: the authenticated context refuses it.
    await assert.rejects(collect(vault.decrypt(blobId, { ...binding, path: 'other.bin' })), {
      code: 'integrity_failure',
    });
    await assert.rejects(vault.store(file, binding, { sha256: 'b'.repeat(64), size: data.length }), {
      code: 'integrity_failure',
    });
  });

  it('stores and decrypts files spanning several 4 MiB read pieces intact, at several chunk sizes', async () => {
    // Storing reuses its read buffers: every byte must still arrive, in order, whatever the chunk size.
    const keyring = (await LocalKeyring.open(path.join(dir, 'keyring-large.json'), { create: true })).keyring;
    const blobs = await FsBlobStore.open(path.join(dir, 'blobs-large'));
    const data = randomBytes(9 * 1024 * 1024 + 12_345);
    const file = path.join(dir, 'large.bin');
    await writeFile(file, data);
    const sha256 = createHash('sha256').update(data).digest('hex');
    for (const chunkExponent of [14, 20, 22, 24]) {
      const vault = new ArtifactVault(blobs, keyring, { chunkExponent });
      const binding = {
        kind: 'model' as const,
        name: 'big',
        version: '1',
        root: 'c'.repeat(64),
        path: `x${chunkExponent}`,
      };
      const { blobId } = await vault.store(file, binding, { sha256, size: data.length });
      const back = await collect(vault.decrypt(blobId, binding));
      assert.equal(createHash('sha256').update(back).digest('hex'), sha256, `chunk 2^${chunkExponent}`);
      const source = await vault.source(blobId, binding);
      const offset = 8 * 1024 * 1024 - 7;
      assert.deepEqual(
        Buffer.from(await source.read(offset, 100_000)),
        data.subarray(offset, offset + 100_000),
      );
    }
  });
});
