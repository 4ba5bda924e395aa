/**
 * The file-system steps that make a change to a plain file durable, shared by every domain that keeps state or
 * writes results in files (envelope outputs, the development keyring, the software root's seal state, registry
 * blobs and staged files, audit sinks, CLI sessions).
 *
 * A rename that returned is atomic but not yet durable: until the directory itself is fsynced, a power loss can
 * bring back the old entry (for `warden rewrap`, a header still wrapped under a key version that may since have
 * been destroyed).
 */
import { open, rename } from 'node:fs/promises';
import path from 'node:path';

/** Makes the entries of `dir` (files created, renamed or removed in it) durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Renames `from` to `to` and makes the new entry durable (the caller has already synced the file's content). */
export async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  await syncDirectory(path.dirname(to));
}
