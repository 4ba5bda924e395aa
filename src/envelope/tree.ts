import { lstat, readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { collectBytes, decryptStream, encryptStream } from './envelope.ts';
import type { DecryptOptions, EncryptOptions } from './envelope.ts';
import { MalformedEnvelopeError } from './errors.ts';
import { decryptFile, encryptFile, writeAtomically } from './files.ts';
import type { ProgressCallback } from './files.ts';
import { makeDirectoryDurably } from '../durable/index.ts';

/**
 * Whole directories: every regular file is encrypted to `<relative path>.wenc` under the output directory, with
 * its relative path bound into its encryption context (`warden:path`), so files cannot be swapped or renamed
 * inside the tree undetected. An encrypted manifest lists every file, so deletions and additions are detected
 * too. Symlinks and special files are refused rather than followed.
 */
export const MANIFEST_NAME = 'warden-manifest.wenc';
export const FILE_SUFFIX = '.wenc';
const PATH_CONTEXT_KEY = 'warden:path';
const MANIFEST_CONTEXT_KEY = 'warden:manifest';

export interface TreeEntry {
  readonly path: string;
  readonly size: number;
}

interface Manifest {
  readonly format: 'warden-tree-manifest/v1';
  readonly files: TreeEntry[];
}

export interface TreeProgress {
  readonly onFile?: (entry: TreeEntry, index: number, total: number) => void;
  readonly onProgress?: ProgressCallback;
}

/** Regular files under `root`, relative POSIX paths, sorted; anything else (symlinks, devices) is an error. */
export async function listTree(root: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = await readdir(path.join(root, rel), { withFileTypes: true });
    for (const entry of entries) {
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(childRel);
      else if (entry.isFile())
        out.push({ path: childRel, size: (await lstat(path.join(root, childRel))).size });
      else
        throw new MalformedEnvelopeError(
          `refusing ${childRel}: only regular files and directories are encrypted`,
        );
    }
  }
  await walk('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export async function encryptTree(
  input: string,
  output: string,
  options: Omit<EncryptOptions, 'plaintextLength'> & TreeProgress,
): Promise<TreeEntry[]> {
  const [inReal, outReal] = [await realpath(input), path.resolve(output)];
  if (outReal === inReal || outReal.startsWith(inReal + path.sep)) {
    throw new MalformedEnvelopeError('the output directory may not lie inside the input directory');
  }
  const files = await listTree(input);
  await makeDirectoryDurably(output);
  let done = 0;
  for (const [i, entry] of files.entries()) {
    options.onFile?.(entry, i, files.length);
    const target = path.join(output, ...entry.path.split('/')) + FILE_SUFFIX;
    await makeDirectoryDurably(path.dirname(target));
    const base = done;
    await encryptFile(path.join(input, ...entry.path.split('/')), target, {
      ...options,
      context: { ...options.context, [PATH_CONTEXT_KEY]: entry.path },
      onProgress: (n) => options.onProgress?.(base + n),
    });
    done += entry.size;
  }
  const manifest: Manifest = { format: 'warden-tree-manifest/v1', files };
  const body = Buffer.from(JSON.stringify(manifest));
  const sealed = await collectBytes(
    encryptStream([body], {
      ...options,
      context: { ...options.context, [MANIFEST_CONTEXT_KEY]: 'v1' },
      plaintextLength: body.length,
    }),
  );
  await writeAtomically(path.join(output, MANIFEST_NAME), (h) => h.writeFile(sealed));
  return files;
}

/**
 * The envelope files of an encrypted tree, its manifest first: what re-wrapping the tree touches. Each keeps its
 * own data key and context, and the manifest lists paths and plaintext sizes only, so re-wrapping the headers of
 * all of them leaves the tree consistent. Refused when `dir` has no manifest (not an encrypted tree).
 */
export async function treeEnvelopes(dir: string): Promise<string[]> {
  try {
    await lstat(path.join(dir, MANIFEST_NAME));
  } catch {
    throw new MalformedEnvelopeError(`${dir} is not an encrypted tree: it has no ${MANIFEST_NAME}`);
  }
  const envelopes = (await listTree(dir))
    .map((f) => f.path)
    .filter((p) => p !== MANIFEST_NAME && p.endsWith(FILE_SUFFIX));
  return [MANIFEST_NAME, ...envelopes].map((p) => path.join(dir, ...p.split('/')));
}

export async function decryptTree(
  input: string,
  output: string,
  options: DecryptOptions & TreeProgress,
): Promise<TreeEntry[]> {
  const sealed = await readFile(path.join(input, MANIFEST_NAME));
  const manifestBytes = await collectBytes(
    decryptStream([sealed], {
      ...options,
      expectedContext: { ...options.expectedContext, [MANIFEST_CONTEXT_KEY]: 'v1' },
    }),
  );
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
  const expected = new Set(manifest.files.map((f) => f.path + FILE_SUFFIX));
  const present = (await listTree(input)).map((f) => f.path).filter((p) => p !== MANIFEST_NAME);
  const extra = present.filter((p) => !expected.has(p));
  const missing = [...expected].filter((p) => !present.includes(p));
  if (extra.length > 0 || missing.length > 0) {
    throw new MalformedEnvelopeError(
      `the encrypted tree does not match its manifest (missing: ${missing.join(', ') || 'none'}; unexpected: ${extra.join(', ') || 'none'})`,
    );
  }
  await makeDirectoryDurably(output);
  let done = 0;
  for (const [i, entry] of manifest.files.entries()) {
    if (entry.path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new MalformedEnvelopeError(
        `manifest path ${JSON.stringify(entry.path)} is not a plain relative path`,
      );
    }
    options.onFile?.(entry, i, manifest.files.length);
    const target = path.join(output, ...entry.path.split('/'));
    await makeDirectoryDurably(path.dirname(target));
    const base = done;
    await decryptFile(path.join(input, ...entry.path.split('/')) + FILE_SUFFIX, target, {
      ...options,
      expectedContext: { ...options.expectedContext, [PATH_CONTEXT_KEY]: entry.path },
      onProgress: (n) => options.onProgress?.(base + n),
    });
    done += entry.size;
  }
  return manifest.files;
}
