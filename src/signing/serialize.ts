import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { SerializationError, UnsupportedError } from './errors.ts';
import {
  HashTaskError,
  isSupportedHash,
  type HashAlgorithm,
  type HashTask,
  type SupportedHashAlgorithm,
} from './hash-core.ts';
import { runHashTasks } from './hash-pool.ts';
import { canonicalIgnorePath, compareCodePoints, DEFAULT_IGNORE_PATHS, shardName } from './paths.ts';
import type { Manifest, ResourceDescriptor, SerializationParameters } from './statement.ts';

/**
 * Model serialization (§6.1–§6.4): enumerate the regular files under the model root, hash each file (`files`) or
 * each fixed-size byte range (`shards`) in parallel, and list the resources sorted by name in code point order.
 */

/** §6.3.2: the recommended default shard size (10^9 bytes, not 2^30). */
export const DEFAULT_SHARD_SIZE = 1_000_000_000;

export interface SerializeOptions {
  /** `files` (default): one resource per file. `shards`: one per `shardSize` byte range, named `path:start:end`. */
  readonly method?: 'files' | 'shards';
  readonly hashAlgorithm?: SupportedHashAlgorithm;
  readonly shardSize?: number;
  /** Extra exclusions, relative to the model root, matched exactly (with their subtree). Recorded in the bundle. */
  readonly ignorePaths?: readonly string[];
  /** Where the bundle is (or will be) written; excluded when it lies inside the model (§6.2). */
  readonly signaturePath?: string;
  /** Follow symbolic links (§6.1.1: `allow_symlinks: true`, slated for removal). Default: refuse them. */
  readonly allowSymlinks?: boolean;
  /** Hash worker threads; 1 hashes on the calling thread. Default: one per core, at most 8. */
  readonly concurrency?: number;
  /** Receives the warnings §6.1.1 requires when following symlinks (targets outside the root, cycles). */
  readonly onWarning?: (message: string) => void;
}

/** A regular file of the model: its resource name and where to read it. */
export interface ModelFile {
  readonly name: string;
  readonly fsPath: string;
  readonly size: number;
}

export interface ModelListing {
  readonly modelName: string;
  readonly files: readonly ModelFile[];
}

interface ListOptions {
  readonly ignore: ReadonlySet<string>;
  readonly followSymlinks: boolean;
  readonly onWarning: (message: string) => void;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function ioError(what: string, rel: string, err: unknown): SerializationError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new SerializationError(`${what} (${code}): ${JSON.stringify(rel)}`, rel, { cause: err });
}

/** One path component from the file system, refused unless it can be a canonical resource name component. */
function decodeComponent(raw: Buffer, parentRel: string): string {
  let component: string;
  try {
    component = utf8.decode(raw);
  } catch (err) {
    // §6.1.2 rule 7: the name cannot be carried losslessly in JSON.
    throw new SerializationError(
      `a file name in ${JSON.stringify(parentRel || '.')} is not valid UTF-8 (${raw.toString('hex')})`,
      parentRel,
      { cause: err },
    );
  }
  if (component.includes('\\')) {
    throw new SerializationError(`file name ${JSON.stringify(component)} contains a backslash`, parentRel);
  }
  return component;
}

const inode = (st: Stats): string => `${st.dev}:${st.ino}`;

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * Lists the model's regular files. A directory root is walked depth-first; each entry is matched against the
 * exclusions before it is looked at, so an excluded symlink or subtree is never touched. Symlinks are refused
 * unless followed; anything that is not a regular file or a directory (FIFO, socket, device) is refused, since
 * reading it could block or change between signing and verification.
 */
export async function listModel(modelPath: string, options: ListOptions): Promise<ModelListing> {
  const root = path.resolve(modelPath);
  const modelName = path.basename(root) || 'model';
  let rootStat: Stats;
  try {
    rootStat = await stat(root);
  } catch (err) {
    throw ioError('model path cannot be read', modelPath, err);
  }
  if (rootStat.isFile()) {
    // §6.1.2 rule 5: a single-file model's resource is named by the file's basename.
    return { modelName, files: [{ name: modelName, fsPath: root, size: rootStat.size }] };
  }
  if (!rootStat.isDirectory())
    throw new SerializationError('model path is neither a file nor a directory', modelPath);

  const realRoot = await realpath(root);
  const files: ModelFile[] = [];
  const stack: { fsPath: string; rel: string; ancestors: ReadonlySet<string> }[] = [
    { fsPath: root, rel: '', ancestors: new Set([inode(rootStat)]) },
  ];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const { fsPath: dir, rel: dirRel, ancestors } = frame;
    let raw: Buffer[];
    try {
      raw = await readdir(dir, { encoding: 'buffer' });
    } catch (err) {
      throw ioError('directory cannot be read', dirRel || '.', err);
    }
    const entries = await Promise.all(
      raw.map(async (bytes) => {
        const component = decodeComponent(bytes, dirRel);
        const rel = dirRel === '' ? component : `${dirRel}/${component}`;
        if (options.ignore.has(rel)) return undefined;
        const fsPath = path.join(dir, component);
        try {
          return { rel, fsPath, st: await lstat(fsPath) };
        } catch (err) {
          throw ioError('file cannot be inspected', rel, err);
        }
      }),
    );
    for (const entry of entries) {
      if (entry === undefined) continue;
      const { rel, fsPath } = entry;
      let st = entry.st;
      if (st.isSymbolicLink()) {
        if (!options.followSymlinks) {
          throw new SerializationError(
            `${JSON.stringify(rel)} is a symbolic link; symlinks are refused`,
            rel,
          );
        }
        try {
          st = await stat(fsPath);
          const target = await realpath(fsPath);
          if (!isInside(realRoot, target))
            options.onWarning(`symlink ${JSON.stringify(rel)} points outside the model (${target})`);
        } catch (err) {
          throw ioError('symlink cannot be resolved', rel, err);
        }
        if (st.isDirectory() && ancestors.has(inode(st))) {
          options.onWarning(
            `symlink ${JSON.stringify(rel)} leads back to one of its ancestors; not followed`,
          );
          continue;
        }
      }
      if (st.isDirectory()) {
        stack.push({ fsPath, rel, ancestors: new Set([...ancestors, inode(st)]) });
      } else if (st.isFile()) {
        files.push({ name: rel, fsPath, size: st.size });
      } else {
        throw new SerializationError(`${JSON.stringify(rel)} is not a regular file or directory`, rel);
      }
    }
  }
  return { modelName, files };
}

/**
 * The exclusions in force for a model directory: the defaults, the given entries (canonicalised) and the
 * signature file when it lies inside the model. Throws SerializationError on an entry §6.2.1 forbids.
 */
export async function exclusions(
  modelPath: string,
  ignorePaths: readonly string[],
  signaturePath: string | undefined,
): Promise<Set<string>> {
  const set = new Set(DEFAULT_IGNORE_PATHS);
  for (const entry of ignorePaths) {
    const canonical = canonicalIgnorePath(entry);
    if ('problem' in canonical)
      throw new SerializationError(`ignore path ${JSON.stringify(entry)} ${canonical.problem}`, entry);
    set.add(canonical.path);
  }
  if (signaturePath !== undefined) {
    const rel = await relativeInside(modelPath, signaturePath);
    if (rel !== undefined) set.add(rel);
  }
  return set;
}

/** `file` relative to `root` as a POSIX path, if it lies inside; compared both as given and with symlinks resolved. */
async function relativeInside(root: string, file: string): Promise<string | undefined> {
  const candidates: [string, string][] = [[path.resolve(root), path.resolve(file)]];
  try {
    // The signature may not exist yet: resolve its directory instead.
    const realFile = path.join(await realpath(path.dirname(path.resolve(file))), path.basename(file));
    candidates.push([await realpath(root), realFile]);
  } catch {
    // An unresolvable directory cannot be inside the (existing) model; the as-given comparison stands alone.
  }
  for (const [r, f] of candidates) {
    const rel = path.relative(r, f);
    if (rel !== '' && isInside(r, f)) return rel.split(path.sep).join('/');
  }
  return undefined;
}

/** How many resources a file yields under `params`. */
export function resourceCount(file: ModelFile, params: SerializationParameters): number {
  return params.method === 'files' ? 1 : Math.ceil(file.size / params.shard_size);
}

/** The resources a file yields under `params`, before hashing: its name and byte range, or its shards. */
export function plannedResources(
  file: ModelFile,
  params: SerializationParameters,
): { readonly name: string; readonly start: number; readonly end: number }[] {
  if (params.method === 'files') return [{ name: file.name, start: 0, end: file.size }];
  const out = [];
  // §6.3.2: consecutive shards of exactly shard_size bytes, the last one shorter; an empty file yields none.
  for (let start = 0; start < file.size; start += params.shard_size) {
    const end = Math.min(start + params.shard_size, file.size);
    out.push({ name: shardName(file.name, start, end), start, end });
  }
  return out;
}

/** Hashes the files' planned resources in parallel; returns each file's descriptors in plan order. */
export async function hashFiles(
  files: readonly ModelFile[],
  params: SerializationParameters,
  options: { readonly concurrency?: number; readonly followSymlinks: boolean },
): Promise<ResourceDescriptor[][]> {
  const algorithm = supportedHash(params.hash_type);
  const plans = files.map((f) => plannedResources(f, params));
  const tasks: HashTask[] = [];
  files.forEach((file, i) => {
    for (const unit of plans[i] ?? []) {
      tasks.push({
        path: file.fsPath,
        start: unit.start,
        end: unit.end,
        fileSize: file.size,
        algorithm,
        noFollow: !options.followSymlinks,
      });
    }
  });
  let digests: string[];
  try {
    digests = await runHashTasks(tasks, options.concurrency);
  } catch (err) {
    // A worker that dies (out of memory, failed start) is not about any one file, but still ends this model's
    // serialization; callers see only the domain's errors.
    if (!(err instanceof HashTaskError))
      throw new SerializationError('hashing failed', undefined, { cause: err });
    const file = files.find((f) => f.fsPath === err.path);
    const rel = file?.name ?? err.path;
    throw new SerializationError(`${JSON.stringify(rel)} ${err.message}`, rel, { cause: err });
  }
  let next = 0;
  return plans.map((plan) =>
    plan.map((unit) => ({ name: unit.name, digest: digests[next++] ?? '', algorithm: params.hash_type })),
  );
}

export function supportedHash(algorithm: HashAlgorithm): SupportedHashAlgorithm {
  if (!isSupportedHash(algorithm)) throw new UnsupportedError(`hash algorithm ${algorithm} is not supported`);
  return algorithm;
}

function serializationParameters(
  options: SerializeOptions,
  ignorePaths: readonly string[],
): SerializationParameters {
  const hash_type = options.hashAlgorithm ?? 'sha256';
  const allow_symlinks = options.allowSymlinks ?? false;
  const ignore_paths = [...ignorePaths].sort(compareCodePoints);
  if ((options.method ?? 'files') === 'files') {
    if (options.shardSize !== undefined)
      throw new SerializationError('shardSize only applies to the shards method');
    return { method: 'files', hash_type, allow_symlinks, ignore_paths };
  }
  const shard_size = options.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!Number.isSafeInteger(shard_size) || shard_size <= 0) {
    throw new SerializationError('shardSize must be a positive integer');
  }
  return { method: 'shards', hash_type, shard_size, allow_symlinks, ignore_paths };
}

/** Serializes a model (directory or single file) into its signed manifest. */
export async function serializeModel(modelPath: string, options: SerializeOptions = {}): Promise<Manifest> {
  const followSymlinks = options.allowSymlinks ?? false;
  const ignore = await exclusions(modelPath, options.ignorePaths ?? [], options.signaturePath);
  const serialization = serializationParameters(options, [...ignore]);
  supportedHash(serialization.hash_type);
  const listing = await listModel(modelPath, {
    ignore,
    followSymlinks,
    onWarning: options.onWarning ?? (() => undefined),
  });
  const perFile = await hashFiles(listing.files, serialization, {
    concurrency: options.concurrency,
    followSymlinks,
  });
  const resources = perFile.flat().sort((a, b) => compareCodePoints(a.name, b.name));
  if (resources.length === 0) {
    // §6.1 / §5.2.1: an empty model (after exclusions; for shards, after dropping empty files) is refused.
    throw new SerializationError('the model has no files to sign', modelPath);
  }
  return { modelName: listing.modelName, resources, serialization };
}
