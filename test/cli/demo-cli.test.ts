// `warden demo`, the quickstart's main job, as a process: it runs end to end, replaces only a directory an earlier
// demo made, and refuses any other non-empty one.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ExitCode } from '../../src/cli/exit-codes.ts';
import { tempDir } from '../envelope/support.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

describe('warden demo', () => {
  const work = tempDir('warden-demo-cli-');
  const demo = (args: string[]) =>
    spawnSync(process.execPath, [MAIN, 'demo', '--size', '1', ...args], {
      cwd: work,
      env: { ...process.env, WARDEN_KEYRING: path.join(work, 'keyring', 'keyring.json') },
      encoding: 'utf8',
      timeout: 120_000,
    });

  it('runs end to end, and a second run replaces the directory the first one made', () => {
    for (let run = 0; run < 2; run++) {
      const r = demo([]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /decrypted and verified SHA-256: ok/);
      assert.match(r.stdout, /one flipped bit in tampered\.wenc: rejected, no output written/);
    }
    assert.ok(readdirSync(path.join(work, 'warden-demo')).includes('credit-model.safetensors.wenc'));
  });

  it('refuses a non-empty directory it did not make, leaving it as it was', () => {
    const mine = path.join(work, 'my-models');
    mkdirSync(mine);
    writeFileSync(path.join(mine, 'weights.bin'), 'precious');
    const r = demo(['--dir', mine]);
    assert.equal(r.status, ExitCode.io, r.stderr);
    assert.match(r.stderr, /was not made by warden demo/);
    assert.deepEqual(readdirSync(mine), ['weights.bin']);
    assert.equal(readFileSync(path.join(mine, 'weights.bin'), 'utf8'), 'precious');
    // An empty directory is fine.
    const empty = path.join(work, 'empty');
    mkdirSync(empty);
    assert.equal(demo(['--dir', empty]).status, 0);
    assert.ok(existsSync(path.join(empty, 'tampered.wenc')));
  });

  it('refuses a size out of range as a usage error', () => {
    const r = demo(['--size', '0']);
    assert.equal(r.status, ExitCode.usage, r.stderr);
  });
});
