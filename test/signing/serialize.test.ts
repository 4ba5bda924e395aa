import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { rootDigest, SerializationError, serializeModel, UnsupportedError } from '../../src/signing/index.ts';
import { hashTask, allocReadBuffers, HashTaskError } from '../../src/signing/hash-core.ts';
import { hashFiles } from '../../src/signing/serialize.ts';
import {
  canonicalIgnorePath,
  compareCodePoints,
  nameProblem,
  parseShardName,
} from '../../src/signing/paths.ts';
import { rejectsWith, tempDir, writeTree } from './helpers.ts';

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function model(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = path.join(await tempDir(), 'my-model');
  await writeTree(dir, files);
  return dir;
}

const names = async (dir: string, options = {}): Promise<string[]> =>
  (await serializeModel(dir, options)).resources.map((r) => r.name);

describe('paths', () => {
  it('orders by Unicode code point (UTF-8 byte order), not UTF-16 code unit', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        assert.equal(
          Math.sign(compareCodePoints(a, b)),
          Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
        );
      }),
    );
    // U+FF5E (BMP, above the surrogates) sorts before U+1F600 (astral); UTF-16 comparison says the opposite.
    assert.deepEqual(['\uff5e', '\u{1f600}'].sort(compareCodePoints), ['\uff5e', '\u{1f600}']);
    assert.deepEqual(['\uff5e', '\u{1f600}'].sort(), ['\u{1f600}', '\uff5e']);
  });

  it('accepts only canonical relative names', () => {
    for (const ok of ['a', 'a/b', 'a b/c:d', '.hidden/x', '...', 'ü/日本'])
      assert.equal(nameProblem(ok), undefined, ok);
    for (const bad of [
      '',
      '/a',
      'a/',
      'a//b',
      './a',
      'a/./b',
      '../a',
      'a/..',
      '.',
      'a\\b',
      'a\0b',
      '\ud800',
    ]) {
      assert.notEqual(nameProblem(bad), undefined, JSON.stringify(bad));
    }
  });

  it('canonicalises ignore paths and refuses globs, absolute paths and traversal', () => {
    assert.deepEqual(canonicalIgnorePath('./cache//tmp/'), { path: 'cache/tmp' });
    for (const bad of ['*.bin', 'a?', '[ab]', '/abs', '../up', 'a/../b', 'a\\b', '.', './']) {
      assert.ok('problem' in canonicalIgnorePath(bad), bad);
    }
  });

  it('parses shard names on the last two colons', () => {
    assert.deepEqual(parseShardName('a:b.bin:10:20'), { path: 'a:b.bin', start: 10, end: 20 });
    for (const bad of [
      'a.bin',
      'a:1',
      'a:01:2',
      'a:2:2',
      'a:3:2',
      ':0:1',
      'a:-1:2',
      'a:0:1.5',
      '../a:0:1',
      'a:0:99999999999999999',
    ]) {
      assert.equal(parseShardName(bad), undefined, bad);
    }
  });
});

describe('serializeModel: files', () => {
  it('lists every regular file with its SHA-256, sorted, and the root digest over them (§6.5.1)', async () => {
    const dir = await model({ 'b.txt': 'bee', 'a/z.bin': 'zed', 'a.txt': 'ay', empty: '' });
    const manifest = await serializeModel(dir);
    assert.equal(manifest.modelName, 'my-model');
    // '.' (0x2E) sorts before '/' (0x2F): plain code point order of the full names.
    assert.deepEqual(manifest.resources, [
      { name: 'a.txt', digest: sha256('ay'), algorithm: 'sha256' },
      { name: 'a/z.bin', digest: sha256('zed'), algorithm: 'sha256' },
      { name: 'b.txt', digest: sha256('bee'), algorithm: 'sha256' },
      { name: 'empty', digest: sha256(''), algorithm: 'sha256' },
    ]);
    const concatenated = Buffer.concat(manifest.resources.map((r) => Buffer.from(r.digest, 'hex')));
    assert.equal(rootDigest(manifest.resources), sha256(concatenated));
    assert.deepEqual(manifest.serialization, {
      method: 'files',
      hash_type: 'sha256',
      allow_symlinks: false,
      ignore_paths: ['.git', '.gitattributes', '.github', '.gitignore'],
    });
  });

  it('hashes with BLAKE2b-512 when asked, and refuses BLAKE3', async () => {
    const dir = await model({ f: 'data' });
    const manifest = await serializeModel(dir, { hashAlgorithm: 'blake2b' });
    assert.deepEqual(manifest.resources, [
      { name: 'f', digest: createHash('blake2b512').update('data').digest('hex'), algorithm: 'blake2b' },
    ]);
    await rejectsWith(() => serializeModel(dir, { hashAlgorithm: 'blake3' as 'sha256' }), UnsupportedError);
  });

  it('excludes .git, .gitignore, .gitattributes and .github at the top level only', async () => {
    const dir = await model({
      '.git/HEAD': 'ref',
      '.gitignore': 'x',
      '.gitattributes': 'x',
      '.github/workflows/ci.yml': 'x',
      '.gitmodules': 'x',
      'sub/.git/HEAD': 'ref',
      'w.bin': 'w',
    });
    assert.deepEqual(await names(dir), ['.gitmodules', 'sub/.git/HEAD', 'w.bin']);
  });

  it('excludes user ignore paths exactly (with their subtree), records them, and refuses invalid ones', async () => {
    const dir = await model({
      'cache/a': 'a',
      cache2: 'b',
      'sub/cache/c': 'c',
      'notes.txt': 'n',
      'w.bin': 'w',
    });
    const manifest = await serializeModel(dir, { ignorePaths: ['./cache/', 'notes.txt'] });
    assert.deepEqual(
      manifest.resources.map((r) => r.name),
      ['cache2', 'sub/cache/c', 'w.bin'],
    );
    assert.deepEqual(manifest.serialization.ignore_paths, [
      '.git',
      '.gitattributes',
      '.github',
      '.gitignore',
      'cache',
      'notes.txt',
    ]);
    for (const bad of ['*.bin', '../x', '/abs']) {
      await rejectsWith(() => serializeModel(dir, { ignorePaths: [bad] }), SerializationError);
    }
  });

  it('excludes the signature file when it lies inside the model, and records it', async () => {
    const dir = await model({ 'w.bin': 'w', 'model.sig': '{}' });
    const manifest = await serializeModel(dir, { signaturePath: path.join(dir, 'model.sig') });
    assert.deepEqual(
      manifest.resources.map((r) => r.name),
      ['w.bin'],
    );
    assert.ok(manifest.serialization.ignore_paths?.includes('model.sig'));
    const outside = await serializeModel(dir, { signaturePath: path.join(dir, '..', 'model.sig') });
    assert.deepEqual(
      outside.resources.map((r) => r.name),
      ['model.sig', 'w.bin'],
    );
  });

  it('names a single-file model by its basename', async () => {
    const dir = await model({ 'weights.safetensors': 'w' });
    const manifest = await serializeModel(path.join(dir, 'weights.safetensors'));
    assert.equal(manifest.modelName, 'weights.safetensors');
    assert.deepEqual(
      manifest.resources.map((r) => r.name),
      ['weights.safetensors'],
    );
  });

  it('refuses an empty model, after exclusions', async () => {
    const dir = await model({ '.git/HEAD': 'x', 'emptydir/.keep-out': 'x' });
    await rejectsWith(() => serializeModel(dir, { ignorePaths: ['emptydir'] }), SerializationError);
  });

  it('refuses symlinks by default, to files and to directories', async () => {
    const dir = await model({ 'w.bin': 'w', 'd/x': 'x' });
    await symlink('w.bin', path.join(dir, 'link.bin'));
    const err = await rejectsWith(() => serializeModel(dir), SerializationError);
    assert.equal(err.path, 'link.bin');
    const dir2 = await model({ 'd/x': 'x' });
    await symlink('d', path.join(dir2, 'dlink'));
    await rejectsWith(() => serializeModel(dir2), SerializationError);
    // An excluded symlink is never looked at.
    assert.deepEqual(await names(dir2, { ignorePaths: ['dlink'] }), ['d/x']);
  });

  it('follows symlinks when allowed: each link is a resource under its own name (§6.1.1)', async () => {
    const outsideDir = await tempDir();
    await writeFile(path.join(outsideDir, 'far.bin'), 'far');
    const dir = await model({ 'w.bin': 'w', 'd/x': 'x' });
    await symlink('w.bin', path.join(dir, 'again.bin'));
    await symlink('d', path.join(dir, 'dlink'));
    await symlink('..', path.join(dir, 'd', 'up')); // a cycle
    await symlink(path.join(outsideDir, 'far.bin'), path.join(dir, 'far.bin'));
    const warnings: string[] = [];
    const manifest = await serializeModel(dir, { allowSymlinks: true, onWarning: (w) => warnings.push(w) });
    assert.deepEqual(
      manifest.resources.map((r) => [r.name, r.digest]),
      [
        ['again.bin', sha256('w')],
        ['d/x', sha256('x')],
        ['dlink/x', sha256('x')],
        ['far.bin', sha256('far')],
        ['w.bin', sha256('w')],
      ],
    );
    assert.equal(manifest.serialization.allow_symlinks, true);
    assert.equal(warnings.filter((w) => w.includes('outside')).length, 1);
    assert.equal(warnings.filter((w) => w.includes('ancestors')).length, 2); // d/up and dlink/up
  });

  it('refuses a dangling symlink even when following', async () => {
    const dir = await model({ 'w.bin': 'w' });
    await symlink('nowhere', path.join(dir, 'dangling'));
    await rejectsWith(() => serializeModel(dir, { allowSymlinks: true }), SerializationError);
  });

  it('refuses file names that are not UTF-8 or contain a backslash, and special files', async () => {
    const dir = await model({ 'w.bin': 'w' });
    await writeFile(Buffer.concat([Buffer.from(path.join(dir, 'bad-')), Buffer.from([0xff, 0xfe])]), 'x');
    const err = await rejectsWith(() => serializeModel(dir), SerializationError);
    assert.match(err.message, /UTF-8/);

    const dir2 = await model({ 'w.bin': 'w', 'a\\b': 'x' });
    await rejectsWith(() => serializeModel(dir2), SerializationError);

    const dir3 = await model({ 'w.bin': 'w' });
    execFileSync('mkfifo', [path.join(dir3, 'pipe')]);
    await rejectsWith(() => serializeModel(dir3), SerializationError);
  });

  it('keeps a leading U+FEFF and other unusual but valid names byte-exact', async () => {
    const dir = await model({
      '\ufeffbom': '1',
      'Model.bin': '2',
      'model.bin': '3',
      'a:b:1:2': '4',
      'ünï/😀': '5',
    });
    assert.deepEqual(await names(dir), ['Model.bin', 'a:b:1:2', 'model.bin', 'ünï/😀', '\ufeffbom']);
  });
});

describe('serializeModel: shards', () => {
  it('splits files into shard_size ranges named path:start:end, omitting empty files (§6.3.2)', async () => {
    const data = randomBytes(25);
    const dir = await model({ 'w.bin': data, small: 'abc', empty: '' });
    const manifest = await serializeModel(dir, { method: 'shards', shardSize: 10 });
    assert.deepEqual(manifest.resources, [
      { name: 'small:0:3', digest: sha256('abc'), algorithm: 'sha256' },
      { name: 'w.bin:0:10', digest: sha256(data.subarray(0, 10)), algorithm: 'sha256' },
      { name: 'w.bin:10:20', digest: sha256(data.subarray(10, 20)), algorithm: 'sha256' },
      { name: 'w.bin:20:25', digest: sha256(data.subarray(20, 25)), algorithm: 'sha256' },
    ]);
    assert.deepEqual(manifest.serialization, {
      method: 'shards',
      hash_type: 'sha256',
      shard_size: 10,
      allow_symlinks: false,
      ignore_paths: ['.git', '.gitattributes', '.github', '.gitignore'],
    });
  });

  it('sorts shard names as strings, as §5.2.1 requires (10 before 2 once offsets gain a digit)', async () => {
    const dir = await model({ f: randomBytes(12) });
    assert.deepEqual(await names(dir, { method: 'shards', shardSize: 1 }).then((n) => n.slice(0, 4)), [
      'f:0:1',
      'f:10:11',
      'f:11:12',
      'f:1:2',
    ]);
  });

  it('defaults to 10^9-byte shards; refuses bad shard sizes and a model of empty files', async () => {
    const dir = await model({ f: 'x', e: '' });
    const manifest = await serializeModel(dir, { method: 'shards' });
    assert.deepEqual(
      manifest.serialization.method === 'shards' && manifest.serialization.shard_size,
      1_000_000_000,
    );
    for (const shardSize of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1]) {
      await rejectsWith(() => serializeModel(dir, { method: 'shards', shardSize }), SerializationError);
    }
    await rejectsWith(() => serializeModel(dir, { shardSize: 10 }), SerializationError);
    const empty = await model({ e: '' });
    await rejectsWith(() => serializeModel(empty, { method: 'shards' }), SerializationError);
  });
});

describe('parallel hashing', () => {
  it('gives the serial result on a multi-file directory, for files and shards', async () => {
    // Above the in-process threshold (16 MiB), with files that span several 4 MiB reads and one odd tail.
    const files: Record<string, Uint8Array> = {};
    for (let i = 0; i < 5; i++) files[`shard-${i}.bin`] = randomBytes(4 * 1024 * 1024 + 4096 * i + 7);
    for (let i = 0; i < 40; i++) files[`tok/${i}.json`] = randomBytes(i * 13);
    const dir = await model(files);
    for (const options of [{}, { method: 'shards' as const, shardSize: 3 * 1024 * 1024 + 1 }]) {
      const serial = await serializeModel(dir, { ...options, concurrency: 1 });
      const parallel = await serializeModel(dir, { ...options, concurrency: 3 });
      assert.deepEqual(parallel, serial);
    }
    const first = (await serializeModel(dir, { concurrency: 2 })).resources.find(
      (r) => r.name === 'shard-3.bin',
    );
    assert.equal(first?.digest, sha256(files['shard-3.bin']!));
  });

  it('reports a file that vanished before a worker hashed it, naming the file', async () => {
    const dir = await tempDir();
    const size = 12 * 1024 * 1024;
    const files = ['a', 'b'].map((name) => ({ name, fsPath: path.join(dir, name), size }));
    await writeFile(files[0]!.fsPath, Buffer.alloc(size));
    const params = { method: 'files', hash_type: 'sha256', allow_symlinks: false } as const;
    const err = await rejectsWith(
      () => hashFiles(files, params, { concurrency: 2, followSymlinks: false }),
      SerializationError,
    );
    assert.equal(err.path, 'b');
  });

  it('treats a concurrency that is not a positive integer as the calling thread', async () => {
    const dir = await model({ f: 'x' });
    for (const concurrency of [0, -3, 1.5, Number.NaN, Infinity]) {
      assert.equal((await serializeModel(dir, { concurrency })).resources.length, 1);
    }
  });

  it('a task refuses a file whose size changed since it was listed', async () => {
    const dir = await model({ f: 'abcdef' });
    const task = {
      path: path.join(dir, 'f'),
      start: 0,
      end: 5,
      fileSize: 5,
      algorithm: 'sha256' as const,
      noFollow: true,
    };
    await rejectsWith(() => hashTask(task, allocReadBuffers()), HashTaskError);
    await symlink('f', path.join(dir, 'l'));
    await rejectsWith(
      () => hashTask({ ...task, path: path.join(dir, 'l'), end: 6, fileSize: 6 }, allocReadBuffers()),
      HashTaskError,
    );
    assert.equal(await hashTask({ ...task, end: 6, fileSize: 6 }, allocReadBuffers()), sha256('abcdef'));
  });
});
