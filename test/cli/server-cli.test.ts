// `warden server` as a process: what its start-up message tells an operator whose root of trust starts sealed.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { tempDir } from '../envelope/support.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

/** Starts `warden server`, returns its start-up message (stdout up to "Ctrl-C stops it."), and stops it. */
async function startUpMessage(
  dataDir: string,
  whileRunning?: (url: string) => Promise<void>,
): Promise<string> {
  const child = spawn(process.execPath, [MAIN, 'server', '--root', 'shamir', '--listen', '127.0.0.1:0'], {
    env: { ...process.env, WARDEN_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('Ctrl-C stops it.')) resolve();
      });
      exited.then(() => {
        reject(new Error(`warden server exited early:\n${err}`));
      }, reject);
    });
    const url = /Warden is listening on (\S+)/.exec(out)?.[1];
    assert.ok(url !== undefined, out);
    await whileRunning?.(url);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  return out;
}

describe('warden server with a Shamir root', () => {
  it(
    'says how to initialise and unseal it, then how many shares unseal it',
    { timeout: 120_000 },
    async () => {
      const dataDir = tempDir('warden-server-cli-');
      const first = await startUpMessage(dataDir, async (url) => {
        const r = await request(`${url}/v1/operator/init`, {
          method: 'POST',
          dispatcher: new Agent({ connect: { ca: readFileSync(path.join(dataDir, 'tls', 'ca.pem')) } }),
          headers: {
            authorization: `Bearer ${readFileSync(path.join(dataDir, 'bootstrap-token'), 'utf8').trim()}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ shares: 3, threshold: 2 }),
        });
        assert.equal(r.statusCode, 200, await r.body.text());
        await r.body.dump();
      });
      assert.match(first, /root: software, SEALED/);
      assert.match(first, /not initialised, so key operations are refused: run `npx warden operator init`/);

      const second = await startUpMessage(dataDir);
      assert.doesNotMatch(second, /not initialised/);
      assert.match(
        second,
        /key operations are refused until 2 unseal shares are given: `npx warden operator unseal`/,
      );
    },
  );
});

describe('warden server on an address already in use', () => {
  it('exits 3 naming the address, not a bare EADDRINUSE', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as net.AddressInfo;
    try {
      const run = spawnSync(process.execPath, [MAIN, 'server', '--listen', `127.0.0.1:${port}`], {
        env: { ...process.env, WARDEN_DATA_DIR: tempDir('warden-server-busy-') },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(run.status, 3, run.stderr);
      assert.match(run.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`));
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
