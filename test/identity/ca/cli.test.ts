import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { bootstrapTokenAuthenticator, createKmsServer } from '../../../src/server/index.ts';
import { caRoutes } from '../../../src/server/routes/ca.ts';
import { TestOperator, TestRoot } from '../../server/fixture.ts';
import { caFixture, ecKeyPair, opensslCsr, run } from './support.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', '..', 'src', 'cli', 'main.ts');
const token = randomBytes(24).toString('base64url');

/** The KMS server with the CA routes of `f`, authenticating the bootstrap `token`. */
function caServer(f: Awaited<ReturnType<typeof caFixture>>): ReturnType<typeof createKmsServer> {
  return createKmsServer({
    kms: f.kms.service,
    operator: new TestOperator(new TestRoot()),
    authenticate: bootstrapTokenAuthenticator(token),
    routes: [
      (server) => {
        caRoutes(server, { ca: f.ca });
      },
    ],
  });
}

describe('warden ca', async () => {
  const f = await caFixture();
  const app = await caServer(f);
  let env: NodeJS.ProcessEnv = {};
  before(async () => {
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
  });

  /** Runs the CLI asynchronously: the server answering it lives in this process. */
  async function warden(
    args: string[],
    extraEnv: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, [MAIN, 'ca', ...args], {
        env: { ...env, ...extraEnv },
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  it('issues a server certificate with a locally generated key written 0600', async () => {
    const out = path.join(f.dir, 'server-out');
    const res = await warden(['issue', '--server', 'localhost', '--ip', '127.0.0.1', '--out', out, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const issued = JSON.parse(res.stdout) as { serial: string; files: string[]; identity: string };
    assert.equal(issued.identity, 'dns:localhost,ip:127.0.0.1');
    assert.equal((await stat(path.join(out, 'key.pem'))).mode & 0o777, 0o600);
    const keyPem = await readFile(path.join(out, 'key.pem'), 'utf8');
    const chain = await readFile(path.join(out, 'cert.pem'), 'utf8');
    const cert = new X509Certificate(chain);
    // The certificate holds the public half of the key that never left this machine.
    assert.equal(
      cert.publicKey.export({ format: 'pem', type: 'spki' }),
      createPublicKey(createPrivateKey(keyPem)).export({ format: 'pem', type: 'spki' }),
    );
    const { stdout } = await run('openssl', [
      'verify',
      '-purpose',
      'sslserver',
      '-CAfile',
      path.join(out, 'ca.pem'),
      path.join(out, 'cert.pem'),
    ]);
    assert.match(stdout, /OK/);
  });

  it('issues a client certificate from a CSR, lists and revokes it, and the CRL shows it', async () => {
    const csrFile = path.join(f.dir, 'client.csr');
    await writeFile(csrFile, await opensslCsr(f.dir, ecKeyPair(), '/CN=admin'));
    const res = await warden([
      'issue',
      '--client',
      'service:cli',
      '--csr',
      csrFile,
      '--lifetime',
      '30m',
      '--json',
    ]);
    assert.equal(res.code, 0, res.stderr);
    const issued = JSON.parse(res.stdout) as {
      serial: string;
      chain: string;
      notBefore: string;
      notAfter: string;
    };
    assert.equal(new X509Certificate(issued.chain).subjectAltName, 'URI:spiffe://warden/service/cli');
    assert.equal(Date.parse(issued.notAfter) - Date.parse(issued.notBefore), 31 * 60 * 1000);
    const listed = await warden(['list', '--profile', 'client', '--json']);
    assert.ok((JSON.parse(listed.stdout) as { serial: string }[]).some((c) => c.serial === issued.serial));
    const revoked = await warden(['revoke', issued.serial, '--reason', 'superseded']);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /revoked .* superseded/);
    const crlFile = path.join(f.dir, 'crl.pem');
    const crl = await warden(['crl', '--out', crlFile, '--json']);
    assert.equal(crl.code, 0, crl.stderr);
    assert.equal((JSON.parse(crl.stdout) as { entries: number }).entries, 1);
    const bundleFile = path.join(f.dir, 'bundle.pem');
    const show = await warden(['show', '--out', bundleFile], { WARDEN_TOKEN: '' });
    assert.equal(show.code, 0, show.stderr);
    // OpenSSL checks the CRL's signature against the bundle `warden ca show` wrote (it exits non-zero if not).
    const verified = await run('openssl', ['crl', '-in', crlFile, '-CAfile', bundleFile, '-noout']);
    assert.match(verified.stdout + verified.stderr, /verify OK/);
  });

  it('refuses an existing output file before it issues anything', async () => {
    const out = path.join(f.dir, 'existing-out');
    await mkdir(out);
    await writeFile(path.join(out, 'cert.pem'), 'old chain');
    const issued = async (): Promise<number> =>
      (JSON.parse((await warden(['list', '--json'])).stdout) as unknown[]).length;
    const before = await issued();
    const res = await warden(['issue', '--server', 'localhost', '--out', out]);
    assert.equal(res.code, 3, res.stderr);
    assert.match(res.stderr, /cert\.pem already exists/);
    // No certificate whose key was thrown away, and no new key.pem beside the old cert.pem.
    assert.equal(await issued(), before);
    await assert.rejects(stat(path.join(out, 'key.pem')), { code: 'ENOENT' });
    assert.equal(await readFile(path.join(out, 'cert.pem'), 'utf8'), 'old chain');

    const forced = await warden(['issue', '--server', 'localhost', '--out', out, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await issued(), before + 1);
  });

  it('refuses to print a generated key, and to run without credentials', async () => {
    assert.equal((await warden(['issue', '--client', 'service:x'])).code, 2);
    const anonymous = await warden(['issue', '--client', 'service:x', '--out', path.join(f.dir, 'anon')], {
      WARDEN_TOKEN: '',
    });
    assert.equal(anonymous.code, 8, anonymous.stderr);
  });
});

describe('warden ca show before warden ca init', async () => {
  const f = await caFixture({ init: false });
  const app = await caServer(f);
  before(() => app.listen({ host: '127.0.0.1', port: 0 }));
  after(async () => {
    await app.close();
    await f.close();
  });

  /** Runs `warden ca show` against this uninitialised CA, anonymously; returns how it failed. */
  async function showFails(args: string[]): Promise<{ code?: number; stderr?: string }> {
    try {
      await run(process.execPath, [MAIN, 'ca', 'show', ...args], {
        env: {
          PATH: process.env.PATH,
          WARDEN_ADDR: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
          WARDEN_TOKEN: '',
        },
      });
    } catch (err) {
      return err as { code?: number; stderr?: string };
    }
    return {};
  }

  it('says the CA is not initialised and how to do it, exits 10, and writes no empty bundle', async () => {
    const bundleFile = path.join(f.dir, 'bundle.pem');
    const failure = await showFails(['--out', bundleFile]);
    assert.equal(failure.code, 10);
    assert.match(failure.stderr ?? '', /warden ca init/);
    await assert.rejects(stat(bundleFile), { code: 'ENOENT' });
  });

  it('reports the condition under the code the server gives it (ca_not_initialized) with --json', async () => {
    const failure = await showFails(['--json']);
    assert.equal(failure.code, 10);
    const { error } = JSON.parse(failure.stderr ?? '') as { error: { code: string } };
    assert.equal(error.code, 'ca_not_initialized');
  });
});
