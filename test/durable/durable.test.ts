/*
 * A rename is durable only once its directory is fsynced. That cannot be observed from inside the process (a
 * power loss would be needed), so these tests watch the system calls with strace (Debian package; CI installs it)
 * and check that every rename into place is followed by an fsync of the target's directory.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  existsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CreatedEntries, writeFileDurably } from '../../src/durable/index.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const CLI = path.join(ROOT, 'src', 'cli', 'main.ts');

function tempDir(): string {
  return realpathSync(mkdtempSync(path.join(tmpdir(), 'warden-durable-')));
}

/** Runs node with `args` under strace; returns the trace lines (`-y` prints each descriptor's path). */
function traced(args: string[], env: NodeJS.ProcessEnv = {}): string[] {
  const log = path.join(tempDir(), 'trace');
  const run = spawnSync(
    'strace',
    [
      '-f',
      '-qq',
      '-y',
      '-e',
      'trace=rename,renameat,renameat2,link,linkat,mkdir,mkdirat,fsync,fdatasync',
      '-o',
      log,
      process.execPath,
      ...args,
    ],
    { env: { ...process.env, ...env }, encoding: 'utf8' },
  );
  assert.equal(run.error, undefined, 'strace must be installed (Debian package strace)');
  assert.equal(run.status, 0, run.stderr);
  return readFileSync(log, 'utf8').split('\n');
}

/**
 * Asserts that a rename (or, for an exclusive create, a hard link) onto `target` completed and that `target`'s
 * directory was fsynced after it.
 */
function assertRenamedDurably(lines: readonly string[], target: string): void {
  const renamed = lines.findIndex(
    (l) => /\b(rename|renameat2?|link|linkat)\(/.test(l) && l.includes(`"${target}"`),
  );
  assert.ok(renamed >= 0, `no rename onto ${target}`);
  // A call the tracer saw start on one thread finishes on the same one: its result is on this line or a later
  // `<... rename resumed>` (or `link`) line of the same pid.
  const pid = lines[renamed]!.split(' ')[0];
  const call = /\b(rename|link)/.exec(lines[renamed]!)![1]!;
  let done = renamed;
  while (!/= 0$/.test(lines[done]!)) {
    done = lines.findIndex((l, i) => i > done && l.startsWith(`${pid} <... ${call}`));
    assert.ok(done > 0, `the ${call} onto ${target} did not succeed`);
  }
  const dir = path.dirname(target);
  const synced = lines.findIndex((l, i) => i > done && l.includes(`sync(`) && l.includes(`<${dir}>`));
  assert.ok(synced > done, `${dir} was not fsynced after the ${call} onto ${target}`);
}

/** Asserts that `dir` was created and that its parent was fsynced after that. */
function assertCreatedDurably(lines: readonly string[], dir: string): void {
  const created = lines.findIndex((l) => /mkdir/.test(l) && l.includes(`"${dir}"`));
  assert.ok(created >= 0, `${dir} was not created`);
  const parent = path.dirname(dir);
  const synced = lines.findIndex((l, i) => i > created && l.includes(`sync(`) && l.includes(`<${parent}>`));
  assert.ok(synced > created, `${parent} was not fsynced after ${dir} was created in it`);
}

describe('durable renames', () => {
  it('renameDurably fsyncs the directory after the rename', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'a'), 'x');
    const target = path.join(dir, 'b');
    const script = `import { renameDurably } from ${JSON.stringify(path.join(ROOT, 'src', 'durable', 'index.ts'))};
      await renameDurably(${JSON.stringify(path.join(dir, 'a'))}, ${JSON.stringify(target)});`;
    const lines = traced(['--input-type=module', '-e', script]);
    assertRenamedDurably(lines, target);
    assert.equal(readFileSync(target, 'utf8'), 'x');
  });

  it('writeFileDurably fsyncs the content before publishing it, and the directory after', () => {
    const dir = tempDir();
    const module = JSON.stringify(path.join(ROOT, 'src', 'durable', 'index.ts'));
    const [replaced, created] = [path.join(dir, 'replaced'), path.join(dir, 'created')];
    writeFileSync(replaced, 'old');
    const script = `import { writeFileDurably } from ${module};
      await writeFileDurably(${JSON.stringify(replaced)}, 'new', { mode: 0o600 });
      await writeFileDurably(${JSON.stringify(created)}, 'only', { mode: 0o600, exclusive: true });`;
    const lines = traced(['--input-type=module', '-e', script]);
    for (const target of [replaced, created]) {
      assertRenamedDurably(lines, target);
      const published = lines.findIndex((l) => /\b(rename|link)/.test(l) && l.includes(`"${target}"`));
      const contentSynced = lines.findIndex(
        (l) => l.includes('sync(') && l.includes(`<${dir}/.${path.basename(target)}.`),
      );
      assert.ok(contentSynced >= 0 && contentSynced < published, `${target}: content not fsynced first`);
    }
    assert.equal(readFileSync(replaced, 'utf8'), 'new');
    assert.equal(readFileSync(created, 'utf8'), 'only');
  });

  it('warden server makes its first-start files durable: bootstrap token and development TLS identity', () => {
    const dataDir = path.join(tempDir(), 'data');
    const app = JSON.stringify(path.join(ROOT, 'src', 'app', 'index.ts'));
    const script = `import { loadConfig, startWarden } from ${app};
      const warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: ${JSON.stringify(dataDir)}, WARDEN_LISTEN: '127.0.0.1:0' }), { requestLog: { write: () => true } });
      await warden.close();`;
    const lines = traced(['--input-type=module', '-e', script]);
    assertRenamedDurably(lines, path.join(dataDir, 'bootstrap-token'));
    for (const name of ['ca.pem', 'server.key', 'server.pem']) {
      assertRenamedDurably(lines, path.join(dataDir, 'tls', name));
    }
    assertCreatedDurably(lines, path.join(dataDir, 'tls'));
  });

  it('makeDirectoryDurably fsyncs every directory that gained an entry, and nothing when all exist', () => {
    const dir = tempDir();
    const deep = path.join(dir, 'a', 'b', 'c');
    const module = JSON.stringify(path.join(ROOT, 'src', 'durable', 'index.ts'));
    const script = `import { makeDirectoryDurably } from ${module};
      await makeDirectoryDurably(${JSON.stringify(deep)});`;
    const lines = traced(['--input-type=module', '-e', script]);
    for (const created of [path.join(dir, 'a'), path.join(dir, 'a', 'b'), deep]) {
      assertCreatedDurably(lines, created);
    }
    const again = traced(['--input-type=module', '-e', script]);
    assert.equal(
      again.filter((l) => l.includes(`<${dir}`) && l.includes('sync(')).length,
      0,
      'no fsync when the directories exist',
    );
  });

  it('warden encrypt makes its output and a new development keyring durable', () => {
    const dir = tempDir();
    const input = path.join(dir, 'model.bin');
    writeFileSync(input, randomBytes(100_000));
    const keyring = path.join(tempDir(), 'keyring.json');
    const lines = traced([CLI, 'encrypt', input], { WARDEN_KEYRING: keyring });
    assertRenamedDurably(lines, keyring);
    assertRenamedDurably(lines, `${input}.wenc`);
  });

  it('warden encrypt of a tree makes its new subdirectories durable', () => {
    const tree = path.join(tempDir(), 'data');
    mkdirSync(path.join(tree, 'shard', 'part'), { recursive: true });
    writeFileSync(path.join(tree, 'shard', 'part', 'rows.csv'), 'a,b\n1,2\n');
    const output = path.join(path.dirname(tree), 'data.wenc');
    const lines = traced([CLI, 'encrypt', tree, '-o', output], {
      WARDEN_KEYRING: path.join(tempDir(), 'k.json'),
    });
    assertCreatedDurably(lines, output);
    assertCreatedDurably(lines, path.join(output, 'shard'));
    assertCreatedDurably(lines, path.join(output, 'shard', 'part'));
    assertRenamedDurably(lines, path.join(output, 'shard', 'part', 'rows.csv.wenc'));
  });
});

describe('writeFileDurably', () => {
  it('writes with the mode, replaces a file, and with exclusive refuses an existing one, leaving no temporary', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'token');
    await writeFileDurably(file, 'first', { mode: 0o600, exclusive: true });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    await assert.rejects(writeFileDurably(file, 'second', { mode: 0o600, exclusive: true }), {
      code: 'EEXIST',
    });
    assert.equal(readFileSync(file, 'utf8'), 'first');
    await writeFileDurably(file, 'third', { mode: 0o644 });
    assert.equal(readFileSync(file, 'utf8'), 'third');
    assert.deepEqual(readdirSync(dir), ['token']);
  });
});

describe('CreatedEntries', () => {
  it('removes exactly what the run created: its directories (new ancestors included) and files, nothing older', async () => {
    const dir = tempDir();
    const keep = path.join(dir, 'keep');
    mkdirSync(keep);
    writeFileSync(path.join(keep, 'old.txt'), 'there before');
    const created = new CreatedEntries();
    await created.makeDirectory(keep);
    await created.makeDirectory(path.join(keep, 'a', 'b'));
    writeFileSync(path.join(keep, 'a', 'b', 'new.bin'), 'x');
    created.add(path.join(keep, 'new.txt'));
    writeFileSync(path.join(keep, 'new.txt'), 'x');
    await created.makeDirectory(path.join(dir, 'fresh', 'out'));
    await created.remove();
    assert.deepEqual(readdirSync(keep), ['old.txt']);
    assert.equal(existsSync(path.join(dir, 'fresh')), false);
  });
});
