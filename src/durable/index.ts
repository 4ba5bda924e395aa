/**
 * The file-system steps that make a change to a plain file durable, shared by every domain that keeps state or
 * writes results in files (envelope outputs, the development keyring, the software root's seal state, registry
 * blobs and staged files, audit sinks, CLI sessions, the server's bootstrap token and development TLS identity,
 * certificates written by `warden ca issue --out`).
 *
 * A rename that returned is atomic but not yet durable: until the directory itself is fsynced, a power loss can
 * bring back the old entry (for `warden rewrap`, a header still wrapped under a key version that may since have
 * been destroyed). The same holds for a directory just created: its entry lives in its parent.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
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

/**
 * Writes a whole file so that a crash or power loss leaves either the previous state (no file, or the old one) or
 * the new content, never a part of it: a private temporary file beside it (`temporaryBeside`), fsynced, then
 * published with `publishDurably`. The directory must exist.
 */
export async function writeFileDurably(
  file: string,
  data: string | Uint8Array,
  options: { readonly mode: number; readonly exclusive?: boolean },
): Promise<void> {
  const temporary = temporaryBeside(file);
  const handle = await open(temporary, 'wx', options.mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  await handle.close();
  await publishDurably(temporary, file, options);
}

/** A hidden name beside `file` for its content while it is written (`.name.<random>.tmp`). */
export function temporaryBeside(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Publishes a complete, already fsynced `temporary` file as `file`: renamed over it, or with `exclusive` hard-linked
 * to it, which fails with EEXIST when `file` exists (as `flag: 'wx'` does); then the directory is fsynced. The
 * temporary name is gone afterwards, whether publishing succeeded or not.
 */
export async function publishDurably(
  temporary: string,
  file: string,
  options: { readonly exclusive?: boolean } = {},
): Promise<void> {
  try {
    if (options.exclusive === true) {
      await link(temporary, file);
      await unlink(temporary);
    } else {
      await rename(temporary, file);
    }
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  await syncDirectory(path.dirname(file));
}

/**
 * Creates `dir` and any missing ancestors (`mkdir -p`), and makes each new entry durable by fsyncing the
 * directories that gained one, so that a file later made durable inside `dir` cannot lose its path to a power
 * loss. Costs nothing when `dir` already exists. Returns the topmost directory it created (absolute), or
 * undefined when `dir` existed.
 */
export async function makeDirectoryDurably(dir: string, mode = 0o700): Promise<string | undefined> {
  const target = path.resolve(dir);
  const first = await mkdir(target, { recursive: true, mode });
  if (first === undefined) return undefined;
  // Every directory from the parent of `dir` up to the parent of the first one created gained an entry.
  const created = path.resolve(first);
  const top = path.dirname(created);
  for (let d = path.dirname(target); ; d = path.dirname(d)) {
    await syncDirectory(d);
    if (d === top || d === path.dirname(d)) return created;
  }
}

/**
 * The directories and files one run (a download into a directory, say) created, so that when the run fails it
 * can take back exactly those: never an entry that was there before it started, so a re-run finds the state
 * the first run found.
 */
export class CreatedEntries {
  readonly #entries: string[] = [];

  /** `makeDirectoryDurably`, remembering the topmost directory it created. */
  async makeDirectory(dir: string, mode?: number): Promise<void> {
    const created = await makeDirectoryDurably(dir, mode);
    if (created !== undefined) this.#entries.push(created);
  }

  /** Remembers a file the run is about to put in place (before it does: a failure half-way is taken back too). */
  add(entry: string): void {
    this.#entries.push(path.resolve(entry));
  }

  /**
   * Removes every remembered entry, newest first. Best effort: it runs on a failure path, where the failure
   * that got there is what the caller must see.
   */
  async remove(): Promise<void> {
    for (const entry of this.#entries.reverse()) {
      await rm(entry, { recursive: true, force: true }).catch(() => undefined);
    }
    this.#entries.length = 0;
  }
}
