/*
 * A rename is durable only once its directory is fsynced. That cannot be observed from inside the process (a
 * power loss would be needed), so these tests watch the system calls with strace (Debian package; CI installs it)
 * and check that every rename into place is followed by an fsync of the target's directory.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
      'trace=rename,renameat,renameat2,fsync,fdatasync',
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

/** Asserts that a rename onto `target` completed and that `target`'s directory was fsynced after it. */
function assertRenamedDurably(lines: readonly string[], target: string): void {
  const renamed = lines.findIndex((l) => /rename/.test(l) && l.includes(`"${target}"`));
  assert.ok(renamed >= 0, `no rename onto ${target}`);
  // A rename the tracer saw start on one thread finishes on the same one: its result is on this line or a later
  // `<... rename resumed>` line of the same pid.
  const pid = lines[renamed]!.split(' ')[0];
  let done = renamed;
  while (!/= 0$/.test(lines[done]!)) {
    done = lines.findIndex((l, i) => i > done && l.startsWith(`${pid} <... rename`));
    assert.ok(done > 0, `the rename onto ${target} did not succeed`);
  }
  const dir = path.dirname(target);
  const synced = lines.findIndex((l, i) => i > done && l.includes(`sync(`) && l.includes(`<${dir}>`));
  assert.ok(synced > done, `${dir} was not fsynced after the rename onto ${target}`);
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

  it('warden encrypt makes its output and a new development keyring durable', () => {
    const dir = tempDir();
    const input = path.join(dir, 'model.bin');
    writeFileSync(input, randomBytes(100_000));
    const keyring = path.join(tempDir(), 'keyring.json');
    const lines = traced([CLI, 'encrypt', input], { WARDEN_KEYRING: keyring });
    assertRenamedDurably(lines, keyring);
    assertRenamedDurably(lines, `${input}.wenc`);
  });
});
