import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { registryRoutes } from '../../src/server/routes/registry.ts';
import { bootstrapTokenAuthenticator, createKmsServer, firstOf } from '../../src/server/index.ts';
import { TestOperator, TestRoot } from '../server/fixture.ts';
import { alice, fixture, makeModel, workDir, type Fixture } from '../registry/support.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const run = promisify(execFile);

/** Flips one bit of the byte at `offset` of `file` (counted from its end when negative). */
async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const at = offset >= 0 ? offset : (await handle.stat()).size + offset;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x01;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
}

/** `warden model ...` / `warden dataset ...` as a user runs them, against a registry served in this process. */
describe('warden model / dataset', () => {
  let f: Fixture;
  let app: FastifyInstance;
  let work: { dir: string; cleanup: () => void };
  const token = randomBytes(24).toString('base64url');
  let env: NodeJS.ProcessEnv = {};

  before(async () => {
    f = await fixture('sqlite');
    work = workDir();
    app = await createKmsServer({
      kms: f.kms,
      operator: new TestOperator(new TestRoot()),
      authenticate: firstOf(
        bootstrapTokenAuthenticator(token, { id: 'user:alice', roles: ['admin'], authMethod: 'token' }),
      ),
      routes: [
        (a) => {
          registryRoutes(a, { registry: f.registry });
        },
      ],
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    env = {
      PATH: process.env.PATH,
      WARDEN_ADDR: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
      WARDEN_TOKEN: token,
    };
  });
  after(async () => {
    await app.close();
    await f.close();
    work.cleanup();
  });

  async function warden(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], { env });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('promote --waive records no waiver for a clean scan, and says a recorded waiver stays when the gates refuse', async () => {
    await f.registry.registerModelVersion(alice, {
      model: 'cli-clean',
      version: '1',
      dir: makeModel(work.dir),
    });
    await f.registry.sign(alice, 'cli-clean', '1');
    const clean = await warden(['model', 'promote', 'cli-clean@1', 'dev', '--waive', 'not needed']);
    assert.equal(clean.code, 0, clean.stderr);
    assert.deepEqual((await f.registry.getModelVersion(alice, 'cli-clean', '1')).waivers, []);

    await f.registry.registerModelVersion(alice, {
      model: 'cli-evil',
      version: '1',
      dir: makeModel(work.dir, { malicious: true }),
    });
    const refused = await warden(['model', 'promote', 'cli-evil@1', 'staging', '--waive', 'reviewed']);
    assert.equal(refused.code, 9, refused.stderr);
    assert.match(refused.stderr, /signature.*the waiver [0-9a-f-]{36} was recorded and stays/);
    assert.equal((await f.registry.getModelVersion(alice, 'cli-evil', '1')).waivers.length, 1);
  });

  it('exits 4 when a signature or a stored file does not verify (not 1 or 2)', async () => {
    await f.registry.registerModelVersion(alice, {
      model: 'cli-victim',
      version: '1',
      dir: makeModel(work.dir, { seed: 71 }),
    });
    const unsigned = await warden(['model', 'verify', 'cli-victim@1', '--json']);
    assert.equal(unsigned.code, 4, unsigned.stderr);
    assert.equal(
      (JSON.parse(unsigned.stderr) as { error: { code: string } }).error.code,
      'verification_failed',
    );

    await f.registry.sign(alice, 'cli-victim', '1');
    const { files } = await f.registry.getModelVersion(alice, 'cli-victim', '1');
    const weights = files.find((x) => x.path === 'weights.pkl')!;
    await flipByte(f.blobs.pathOf(weights.blobId), 200_000);

    const deep = await warden(['model', 'verify', 'cli-victim@1', '--deep']);
    assert.equal(deep.code, 4, deep.stderr);
    assert.match(deep.stderr, /weights\.pkl/);
    // Found before the response starts (single-chunk file): the server's error reaches the client.
    const config = files.find((x) => x.path === 'config.json')!;
    await flipByte(f.blobs.pathOf(config.blobId), -20);
    const download = await warden(['model', 'download', 'cli-victim@1', path.join(work.dir, 'out')]);
    assert.equal(download.code, 4, download.stderr);
    assert.match(download.stderr, /config\.json/);
  });

  it('says which file a download lost when the server cuts the body off mid-stream (exit 3, not "other side closed")', async () => {
    await f.registry.registerModelVersion(alice, {
      model: 'cli-cut',
      version: '1',
      dir: makeModel(work.dir, { seed: 72 }),
    });
    const { files } = await f.registry.getModelVersion(alice, 'cli-cut', '1');
    const weights = files.find((x) => x.path === 'weights.pkl')!;
    // Past the first 64 KiB chunk: the response has started when the server finds the damage.
    await flipByte(f.blobs.pathOf(weights.blobId), 200_000);
    const out = path.join(work.dir, 'out-cut');
    const download = await warden(['model', 'download', 'cli-cut@1', out, '--json']);
    assert.equal(download.code, 3, download.stderr);
    const { error } = JSON.parse(download.stderr) as { error: { code: string; message: string } };
    assert.equal(error.code, 'connection_failed');
    assert.match(error.message, /download of weights\.pkl .* was cut off/);
    // config.json and tokenizer/ may have arrived before the cut: the failed run took them back with the directory.
    assert.equal(existsSync(out), false);
  });

  it('leaves no directory behind when a download fails, and never removes one that was there before', async () => {
    await f.registry.registerModelVersion(alice, {
      model: 'cli-quarantined',
      version: '1',
      dir: makeModel(work.dir, { seed: 73 }),
    });
    await f.registry.quarantine(alice, 'cli-quarantined', '1', 'incident 7');
    // Parents created by the run go too.
    const fresh = path.join(work.dir, 'new-parent', 'dl');
    for (const attempt of [1, 2]) {
      const refused = await warden(['model', 'download', 'cli-quarantined@1', fresh]);
      assert.equal(refused.code, 9, `attempt ${attempt}: ${refused.stderr}`);
      assert.match(refused.stderr, /quarantined/);
      assert.equal(existsSync(path.join(work.dir, 'new-parent')), false);
    }
    const existing = path.join(work.dir, 'existing-dl');
    mkdirSync(existing);
    const refused = await warden(['model', 'download', 'cli-quarantined@1', existing]);
    assert.equal(refused.code, 9, refused.stderr);
    assert.deepEqual(readdirSync(existing), []);
    // Released, the same command succeeds into the directory the failed runs left as they found it.
    await f.registry.release(alice, 'cli-quarantined', '1');
    const ok = await warden(['model', 'download', 'cli-quarantined@1', fresh]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(fresh).sort(), ['config.json', 'tokenizer', 'weights.pkl']);
  });
});
