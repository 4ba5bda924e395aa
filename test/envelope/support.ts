import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { LocalKeyring } from '../../src/keyring/index.ts';

/** A temp dir removed after the test file, and a fresh dev keyring outside it. */
export function tempDir(prefix = 'warden-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export async function freshKeyring(): Promise<LocalKeyring> {
  const dir = tempDir('warden-keyring-');
  return (await LocalKeyring.open(path.join(dir, 'keyring.json'), { create: true })).keyring;
}

export async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of gen) parts.push(p);
  return Buffer.concat(parts);
}

export async function* fromBuffer(buf: Uint8Array, pieceSize = 65536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += pieceSize) {
    yield buf.subarray(i, Math.min(i + pieceSize, buf.length));
    await Promise.resolve();
  }
}
