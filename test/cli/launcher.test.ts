import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../envelope/support.ts';

// bin/warden.js runs the build (dist/), which `npm ci` / `npm install` produce through the prepare script.
const LAUNCHER = path.resolve(import.meta.dirname, '..', '..', 'bin', 'warden.js');
const keyring = path.join(tempDir('warden-launcher-keys-'), 'keyring.json');

function launch(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--expose-gc', LAUNCHER, ...args], {
    env: { ...process.env, WARDEN_KEYRING: keyring, WARDEN_KEY: '', WARDEN_TOKEN: '', WARDEN_TOKEN_FILE: '' },
  });
}

/** Collects a child's stdout and exit code. */
async function finished(
  child: ChildProcessWithoutNullStreams,
): Promise<{ code: number | null; out: Buffer }> {
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, err);
  return { code, out: Buffer.concat(chunks) };
}

/** The command line of a running process, as the kernel reports it (NUL-separated). */
function commandLine(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    .split('\0')
    .filter((a) => a !== '');
}

describe('bin/warden.js', () => {
  it('runs encrypt and decrypt in the same process re-executed with the streaming V8 settings', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const enc = launch(['encrypt', '-', '-o', '-']);
    assert.ok(enc.pid !== undefined);
    // stdin stays open until the process shows its new command line: the same pid, replaced by execve.
    let argv = commandLine(enc.pid);
    for (let i = 0; i < 200 && !argv.includes('--max-opt=2'); i++) {
      await sleep(25);
      argv = commandLine(enc.pid);
    }
    assert.deepEqual(argv.slice(1), [
      '--expose-gc',
      '--max-opt=2',
      '--single-threaded',
      LAUNCHER,
      'encrypt',
      '-',
      '-o',
      '-',
    ]);
    enc.stdin.end(data);
    const sealed = await finished(enc);
    assert.ok(sealed.out.length > data.length);

    const dec = launch(['decrypt', '-', '-o', '-']);
    dec.stdin.end(sealed.out);
    const opened = await finished(dec);
    assert.deepEqual(opened.out, data);
  });
});
