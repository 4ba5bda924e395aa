import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { kmsCliError, registerKmsCommands } from '../../src/cli/commands/kms.ts';
import { KmsClientError } from '../../src/client/index.ts';
import { ExitCode } from '../../src/cli/exit-codes.ts';
import { startHarness } from '../server/fixture.ts';
import type { Harness } from '../server/fixture.ts';
import { runCliDetailed } from '../support/cli.ts';

let h: Harness;
let dir: string;
let caFile: string;

interface Run {
  code: number;
  stdout: Buffer;
  text: string;
  stderr: string;
  errorCode?: string;
}

/** Runs `warden <args>` in-process the way src/cli/main.ts does, with the KMS connection in the environment. */
async function warden(
  args: string[],
  options: { stdin?: string | Buffer | Readable; env?: Record<string, string | undefined> } = {},
): Promise<Run> {
  const env = { WARDEN_ADDR: h.address, WARDEN_TOKEN: h.token, WARDEN_CACERT: caFile, ...options.env };
  const r = await runCliDetailed(registerKmsCommands, args, env, options.stdin);
  return {
    code: r.code,
    stdout: r.stdout,
    text: r.out,
    stderr: r.err,
    ...(r.errorCode === undefined ? {} : { errorCode: r.errorCode }),
  };
}

async function ok(args: string[], options?: Parameters<typeof warden>[1]): Promise<Run> {
  const r = await warden(args, options);
  assert.equal(r.code, 0, `warden ${args.join(' ')}: ${r.stderr}`);
  return r;
}

async function json<T>(args: string[], options?: Parameters<typeof warden>[1]): Promise<T> {
  return JSON.parse((await ok([...args, '--json'], options)).text) as T;
}

const outputs: string[] = [];

before(async () => {
  h = await startHarness();
  dir = mkdtempSync(path.join(os.tmpdir(), 'warden-kms-cli-'));
  caFile = path.join(dir, 'ca.pem');
  writeFileSync(caFile, h.ca);
});

after(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('warden keys / kms / operator', () => {
  it('administers keys', async () => {
    const created = await json<{ key: { name: string; rotationPeriodDays: number } }>([
      'keys',
      'create',
      'docs',
      '--type',
      'aes256-gcm',
      '--rotation-period-days',
      '30',
      '--description',
      'documents',
    ]);
    assert.equal(created.key.rotationPeriodDays, 30);
    assert.match(
      (await ok(['keys', 'show', 'docs'])).text,
      /docs \(aes256-gcm\)[\s\S]*every 30 days[\s\S]*v1 {2}enabled/,
    );
    assert.match((await ok(['keys', 'list'])).text, /^docs\s+aes256-gcm\s+v1/m);
    assert.match((await ok(['keys', 'rotate', 'docs'])).text, /latest version is now 2/);
    const updated = await json<{ key: { minDecryptionVersion: number; autoFloorGraceDays: number | null } }>([
      'keys',
      'update',
      'docs',
      '--min-decryption-version',
      '2',
      '--auto-floor-grace-days',
      '5',
    ]);
    assert.deepEqual([updated.key.minDecryptionVersion, updated.key.autoFloorGraceDays], [2, 5]);
    assert.equal(
      (
        await json<{ key: { autoFloorGraceDays: null } }>([
          'keys',
          'update',
          'docs',
          '--auto-floor-grace-days',
          'none',
        ])
      ).key.autoFloorGraceDays,
      null,
    );
    assert.match((await ok(['keys', 'disable', 'docs', '--key-version', '1'])).text, /disabled docs v1/);
    assert.match((await ok(['keys', 'enable', 'docs'])).text, /enabled docs v1/);
    assert.match((await ok(['keys', 'destroy', 'docs', '1'])).text, /will be destroyed at/);
    assert.match((await ok(['keys', 'cancel-destroy', 'docs', '1'])).text, /now disabled/);
    const refused = await warden(['keys', 'destroy', 'docs', '1', '--delay-days', '0']);
    assert.equal(refused.code, ExitCode.usage);
    assert.match(refused.stderr, /--yes/);
    assert.match(
      (await ok(['keys', 'destroy', 'docs', '1', '--delay-days', '0', '--yes'])).text,
      /destroyed docs v1/,
    );
    const usage = await warden(['keys', 'create', 'x', '--type', 'rsa']);
    assert.equal(usage.code, ExitCode.usage);
    const missing = await warden(['keys', 'show', 'nope']);
    assert.equal(missing.code, ExitCode.keyUnavailable);
    assert.equal(missing.errorCode, 'key_not_found');
  });

  it('encrypts from stdin and files, decrypts, rewraps and makes data keys', async () => {
    const plaintext = Buffer.from(`attack at dawn ${randomBytes(4).toString('hex')}`);
    const ciphertext = (
      await ok(['kms', 'encrypt', 'docs', '--context', 'dept=legal'], { stdin: plaintext })
    ).text.trim();
    assert.match(ciphertext, /^warden:v1:docs:2:/);
    const decrypted = await ok(['kms', 'decrypt', ciphertext, '--context', 'dept=legal']);
    assert.deepEqual(decrypted.stdout, plaintext);
    const fromStdin = await ok(['kms', 'decrypt', '--context', 'dept=legal'], { stdin: `${ciphertext}\n` });
    assert.deepEqual(fromStdin.stdout, plaintext);
    const wrongContext = await warden(['kms', 'decrypt', ciphertext, '--context', 'dept=sales']);
    assert.equal(wrongContext.code, ExitCode.authentication);
    assert.equal(wrongContext.errorCode, 'decryption_failed');

    const file = path.join(dir, 'secret.bin');
    const binary = randomBytes(1000);
    writeFileSync(file, binary);
    const { ciphertext: ct2 } = await json<{ ciphertext: string }>(['kms', 'encrypt', 'docs', '--in', file]);
    const out = path.join(dir, 'secret.out');
    await ok(['kms', 'decrypt', ct2, '-o', out]);
    assert.deepEqual(readFileSync(out), binary);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    assert.equal((await warden(['kms', 'decrypt', ct2, '-o', out])).code, ExitCode.io);
    // --force over a file others can read: the plaintext does not inherit its mode.
    const shared = path.join(dir, 'shared.out');
    writeFileSync(shared, 'old contents, longer than the plaintext will be', { mode: 0o644 });
    chmodSync(shared, 0o644);
    await ok(['kms', 'decrypt', ct2, '-o', shared, '--force']);
    assert.deepEqual(readFileSync(shared), binary);
    assert.equal(statSync(shared).mode & 0o777, 0o600);
    const { plaintext: b64 } = await json<{ plaintext: string }>(['kms', 'decrypt', ct2]);
    assert.deepEqual(Buffer.from(b64, 'base64'), binary);

    await ok(['keys', 'rotate', 'docs']);
    const rewrapped = (await ok(['kms', 'rewrap', ct2])).text.trim();
    assert.match(rewrapped, /^warden:v1:docs:3:/);

    const key = await json<{ ciphertext: string; plaintext: string; keyVersion: number }>([
      'kms',
      'datakey',
      'docs',
      '--context-base64',
      Buffer.from('ctx').toString('base64'),
    ]);
    assert.equal(Buffer.from(key.plaintext, 'base64').length, 32);
    const wrappedOnly = await json<{ plaintext?: string }>(['kms', 'datakey', 'docs', '--no-plaintext']);
    assert.equal(wrappedOnly.plaintext, undefined);
    // The human output of --no-plaintext is the wrapped key alone: what `kms decrypt` reads back, from stdin too.
    const wrapped = (await ok(['kms', 'datakey', 'docs', '--no-plaintext', '--context', 'job=7'])).text;
    assert.match(wrapped, /^warden:v1:docs:\d+:[A-Za-z0-9_-]+\n$/);
    const unwrapped = path.join(dir, 'datakey.bin');
    await ok(['kms', 'decrypt', '--context', 'job=7', '-o', unwrapped], { stdin: wrapped });
    assert.equal(readFileSync(unwrapped).length, 32);
    outputs.push(plaintext.toString('utf8'), key.plaintext);
  });

  it('signs, verifies, computes HMACs and random bytes', async () => {
    await ok(['keys', 'create', 'signer', '--type', 'ecdsa-p256']);
    const signature = (await ok(['kms', 'sign', 'signer'], { stdin: 'release v1' })).text.trim();
    assert.match(
      (await ok(['kms', 'verify', 'signer', '--signature', signature], { stdin: 'release v1' })).text,
      /valid/,
    );
    const bad = await warden(['kms', 'verify', 'signer', '--signature', signature], { stdin: 'release v2' });
    assert.equal(bad.code, ExitCode.authentication);
    assert.equal(bad.errorCode, 'invalid_signature');
    assert.match((await ok(['keys', 'public-key', 'signer'])).text, /BEGIN PUBLIC KEY/);

    await ok(['keys', 'create', 'mac', '--type', 'hmac-sha256']);
    const mac = (await ok(['kms', 'hmac', 'mac'], { stdin: 'data' })).text.trim();
    await ok(['kms', 'verify-hmac', 'mac', '--mac', mac, '--key-version', '1'], { stdin: 'data' });
    assert.equal((await warden(['kms', 'verify-hmac', 'mac', '--mac', mac], { stdin: 'other' })).code, 4);

    assert.equal(Buffer.from((await ok(['kms', 'random', '24'])).text.trim(), 'base64').length, 24);
    assert.match((await ok(['kms', 'random', '8', '--hex'])).text.trim(), /^[0-9a-f]{16}$/);
    assert.equal((await warden(['kms', 'random', '2000'])).code, ExitCode.usage);
  });

  it('imports key files (BYOK) and exports them', async () => {
    const material = randomBytes(32);
    const keyFile = path.join(dir, 'aes.key');
    writeFileSync(keyFile, material.toString('hex'));
    const imported = await json<{ key: { name: string }; versions: { origin: string }[] }>([
      'keys',
      'import',
      'byok',
      keyFile,
      '--type',
      'aes256-gcm',
      '--encoding',
      'hex',
      '--exportable',
    ]);
    assert.equal(imported.versions[0]?.origin, 'imported');
    // Key options cannot apply to a key that exists: refused (usage), not silently dropped.
    const again = path.join(dir, 'aes2.key');
    writeFileSync(again, randomBytes(32));
    for (const [field, ...option] of [
      ['exportable', '--exportable'],
      ['rotationPeriodDays', '--rotation-period-days', '7'],
      ['description', '--description', 'x'],
    ] as const) {
      const refused = await warden(['keys', 'import', 'byok', again, '--type', 'aes256-gcm', ...option]);
      assert.equal(refused.code, ExitCode.usage, field);
      assert.equal(refused.errorCode, 'invalid_request');
      assert.match(refused.stderr, new RegExp(`key byok exists.*${field}`));
    }
    assert.equal((await json<{ versions: unknown[] }>(['keys', 'show', 'byok'])).versions.length, 1);
    const exported = await json<{ material: string; version: number }>(['keys', 'export', 'byok']);
    assert.deepEqual(Buffer.from(exported.material, 'base64'), material);
    const out = path.join(dir, 'exported.key');
    await ok(['keys', 'export', 'byok', '--key-version', '1', '-o', out]);
    assert.deepEqual(readFileSync(out), material);
    assert.equal(statSync(out).mode & 0o777, 0o600);
    chmodSync(out, 0o644);
    await ok(['keys', 'export', 'byok', '--key-version', '1', '-o', out, '-f']);
    assert.deepEqual(readFileSync(out), material);
    assert.equal(statSync(out).mode & 0o777, 0o600, 'exported key material is never left readable by others');

    const pemFile = path.join(dir, 'ed.pem');
    writeFileSync(
      pemFile,
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    assert.match(
      (await ok(['keys', 'import', 'byok-ed', pemFile, '--type', 'ed25519'])).text,
      /imported .* v1 \(ed25519\)/,
    );
    const notExportable = await warden(['keys', 'export', 'byok-ed']);
    assert.equal(notExportable.code, ExitCode.keyUnavailable);
    assert.equal(notExportable.errorCode, 'not_exportable');
    outputs.push(material.toString('hex'), material.toString('base64'));
  });

  it('takes the token from a file, and fails cleanly without one or with a wrong one', async () => {
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, `${h.token}\n`, { mode: 0o600 });
    await ok(['keys', 'list'], { env: { WARDEN_TOKEN: undefined, WARDEN_TOKEN_FILE: tokenFile } });

    const none = await warden(['keys', 'list'], { env: { WARDEN_TOKEN: undefined } });
    assert.equal(none.code, ExitCode.unauthenticated);
    assert.match(none.stderr, /WARDEN_TOKEN/);
    const wrong = await warden(['keys', 'list'], { env: { WARDEN_TOKEN: 'not-the-token-0123456789' } });
    assert.equal(wrong.code, ExitCode.unauthenticated);
    assert.equal(wrong.errorCode, 'unauthenticated');
    const forbidden = await warden(['keys', 'create', 'x', '--type', 'aes256-gcm'], {
      env: { WARDEN_TOKEN: h.userToken },
    });
    assert.equal(forbidden.code, ExitCode.forbidden);
    const untrusted = await warden(['keys', 'list'], { env: { WARDEN_CACERT: undefined } });
    assert.equal(untrusted.code, ExitCode.io);
    assert.equal(untrusted.errorCode, 'tls_error');
    const unreachable = await warden(['keys', 'list'], { env: { WARDEN_ADDR: 'https://127.0.0.1:1' } });
    assert.equal(unreachable.code, ExitCode.io);
    assert.equal(unreachable.errorCode, 'connection_failed');
    const plainHttp = await warden(['keys', 'list'], { env: { WARDEN_ADDR: 'http://192.0.2.1:8080' } });
    assert.equal(plainHttp.code, ExitCode.usage);
    for (const r of [none, wrong, forbidden, untrusted, unreachable]) {
      assert.equal(r.stderr.includes(h.token), false);
      assert.equal(r.text.includes(h.token), false);
    }
  });

  it('initialises, unseals from a pipe or a hidden prompt, and seals', async () => {
    const status = await json<{ sealed: boolean }>(['operator', 'status'], {
      env: { WARDEN_TOKEN: undefined },
    });
    assert.equal(status.sealed, false);
    const init = await json<{ shares: string[] }>(['operator', 'init', '--shares', '3', '--threshold', '2']);
    assert.equal(init.shares.length, 3);
    assert.match((await ok(['operator', 'status'])).text, /sealed \(unseal progress 0\/2\)/);
    const sealed = await warden(['kms', 'encrypt', 'docs'], { stdin: 'x' });
    assert.equal(sealed.code, ExitCode.unavailable);
    assert.equal(sealed.errorCode, 'sealed');

    // Two shares, one per line, from a pipe; no token needed.
    const unsealed = await ok(['operator', 'unseal'], {
      stdin: `${init.shares[0] ?? ''}\n${init.shares[2] ?? ''}\n`,
      env: { WARDEN_TOKEN: undefined },
    });
    assert.match(unsealed.text, /unsealed/);
    assert.match((await ok(['operator', 'seal'])).text, /sealed/);

    // A terminal: the share is read in raw mode, never echoed.
    for (const share of [init.shares[1] ?? '', init.shares[0] ?? '']) {
      const tty = Object.assign(new PassThrough(), { isTTY: true, rawModes: [] as boolean[] });
      const ttyStdin = Object.assign(tty, {
        setRawMode(mode: boolean) {
          tty.rawModes.push(mode);
          return tty;
        },
      });
      setTimeout(() => tty.write(`${share}\r`), 20);
      const r = await ok(['operator', 'unseal'], { stdin: ttyStdin });
      assert.deepEqual(tty.rawModes, [true, false]);
      assert.equal(r.stderr.includes(share), false);
      assert.match(r.stderr, /unseal share:/);
    }
    assert.equal((await json<{ sealed: boolean }>(['operator', 'status'])).sealed, false);
    outputs.push(...init.shares);
  });

  it('gives warden encrypt/decrypt/rewrap --key the exit codes of the KMS commands, and rewraps past a bad file', async () => {
    // The envelope commands run as their own process (they stream the process's own stdio).
    const main = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
    const envelope = async (args: string[], env: Record<string, string> = {}) => {
      const child = spawn(process.execPath, ['--expose-gc', main, ...args], {
        cwd: dir,
        env: { ...process.env, WARDEN_ADDR: h.address, WARDEN_TOKEN: h.token, WARDEN_CACERT: caFile, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      return { code, stdout, stderr };
    };
    await ok(['keys', 'create', 'envelope-cli', '--type', 'aes256-gcm']);
    const file = path.join(dir, 'rows.csv');
    writeFileSync(file, 'a,b\n1,2\n');
    const sealed = await envelope(['encrypt', file, '--key', 'envelope-cli', '-o', `${file}.wenc`]);
    assert.equal(sealed.code, 0, sealed.stderr);
    const unknown = await envelope(['encrypt', file, '--key', 'no-such-key', '-o', path.join(dir, 'x.wenc')]);
    assert.equal(unknown.code, ExitCode.keyUnavailable, unknown.stderr);
    const badToken = { WARDEN_TOKEN: 'not-the-token-0123456789' };
    const refused = await envelope(['decrypt', `${file}.wenc`, '-o', path.join(dir, 'rows.out')], badToken);
    assert.equal(refused.code, ExitCode.unauthenticated, refused.stderr);
    assert.equal(refused.stderr.includes(h.token), false);

    // Several files, one missing: the others are rewrapped and reported; the exit code is the failure's.
    const second = path.join(dir, 'rows2.csv.wenc');
    assert.equal((await envelope(['encrypt', file, '--key', 'envelope-cli', '-o', second])).code, 0);
    await ok(['keys', 'rotate', 'envelope-cli']);
    const missing = path.join(dir, 'missing.wenc');
    const rewrap = await envelope(['rewrap', `${file}.wenc`, missing, second, '--json']);
    assert.equal(rewrap.code, ExitCode.io, rewrap.stderr);
    const report = JSON.parse(rewrap.stdout) as {
      files: { file: string; after?: string[]; error?: { code: string } }[];
    };
    assert.deepEqual(
      report.files.map((f) => [f.file, f.after ?? f.error?.code]),
      [
        [`${file}.wenc`, ['envelope-cli#2']],
        [missing, 'io_error'],
        [second, ['envelope-cli#2']],
      ],
    );
    assert.match(rewrap.stderr, /1 of 3 files were not rewrapped/);
    const opened = await envelope(['decrypt', second, '-o', path.join(dir, 'rows2.out')]);
    assert.equal(opened.code, 0, opened.stderr);
    assert.equal(readFileSync(path.join(dir, 'rows2.out'), 'utf8'), 'a,b\n1,2\n');

    // An encrypted tree: every envelope in it, the manifest included, and it still decrypts whole.
    const tree = path.join(dir, 'tree');
    mkdirSync(path.join(tree, 'part'), { recursive: true });
    writeFileSync(path.join(tree, 'a.csv'), 'x\n');
    writeFileSync(path.join(tree, 'part', 'b.csv'), 'y\n');
    const sealedTree = path.join(dir, 'tree.wenc');
    assert.equal((await envelope(['encrypt', tree, '--key', 'envelope-cli', '-o', sealedTree])).code, 0);
    await ok(['keys', 'rotate', 'envelope-cli']);
    const treeRewrap = await envelope(['rewrap', sealedTree, '--json']);
    assert.equal(treeRewrap.code, 0, treeRewrap.stderr);
    const treeReport = JSON.parse(treeRewrap.stdout) as { files: { file: string; after: string[] }[] };
    assert.deepEqual(
      treeReport.files.map((f) => [path.relative(sealedTree, f.file), f.after]),
      [
        ['warden-manifest.wenc', ['envelope-cli#3']],
        ['a.csv.wenc', ['envelope-cli#3']],
        [path.join('part', 'b.csv.wenc'), ['envelope-cli#3']],
      ],
    );
    const restored = path.join(dir, 'tree.out');
    const openedTree = await envelope(['decrypt', sealedTree, '-o', restored]);
    assert.equal(openedTree.code, 0, openedTree.stderr);
    assert.equal(readFileSync(path.join(restored, 'part', 'b.csv'), 'utf8'), 'y\n');
    // A directory that is not an encrypted tree is refused, naming what is missing.
    const plainDir = await envelope(['rewrap', tree]);
    assert.equal(plainDir.code, ExitCode.malformed, plainDir.stderr);
    assert.match(plainDir.stderr, /is not an encrypted tree: it has no warden-manifest\.wenc/);
  });

  it('never lets the token or a secret into the server logs', () => {
    const logs = h.logs.text();
    for (const value of [h.token, h.userToken, ...outputs]) {
      assert.equal(logs.includes(value), false, `leaked ${value.slice(0, 8)}...`);
    }
  });
});

describe('kmsCliError', () => {
  it('maps a refusal for now (sealed, too many attempts, no CA yet) to exit 10 and other 4xx to usage', () => {
    const exit = (code: string, status: number) =>
      kmsCliError(new KmsClientError(code, status, 'm')).exitCode;
    assert.equal(exit('sealed', 503), ExitCode.unavailable);
    assert.equal(exit('too_many_attempts', 429), ExitCode.unavailable);
    assert.equal(exit('ca_not_initialized', 409), ExitCode.unavailable);
    assert.equal(exit('invalid_request', 400), ExitCode.usage);
    assert.equal(exit('gate_signature', 409), ExitCode.forbidden);
    assert.equal(exit('unauthenticated', 401), ExitCode.unauthenticated);
  });
});
