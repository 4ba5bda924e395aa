// `warden --version` prints the version; `--version` after a subcommand is a usage error (a mistyped
// `--key-version`), never the version printed with exit 0 and the command not run.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ExitCode } from '../../src/cli/exit-codes.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const warden = (args: string[]) =>
  spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WARDEN_ADDR: 'https://127.0.0.1:1', WARDEN_TOKEN: 'x' },
  });

describe('warden --version', () => {
  it('prints the version alone', () => {
    for (const flag of ['--version', '-V']) {
      const r = warden([flag]);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
    }
  });

  it('is a usage error after a subcommand', () => {
    const r = warden(['keys', 'disable', 'k', '--version', '1']);
    assert.equal(r.status, ExitCode.usage);
    assert.match(r.stderr, /unknown option '--version'/);
    assert.equal(r.stdout, '');
  });
});
