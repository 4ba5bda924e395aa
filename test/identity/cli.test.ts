import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import * as OTPAuth from 'otpauth';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import type { RunningWarden } from '../../src/app/index.ts';
import { registerIdentityCommands, sessionPath } from '../../src/cli/commands/identity.ts';
import type { SavedSession } from '../../src/cli/commands/identity.ts';
import { registerKmsCommands } from '../../src/cli/commands/kms.ts';
import { ExitCode } from '../../src/cli/exit-codes.ts';
import { IdentityClient, KmsClient, KmsClientError, WardenHttp } from '../../src/client/index.ts';
import { tempDir } from '../envelope/support.ts';
import { Capture, runCliDetailed } from '../support/cli.ts';

/**
 * `warden login | logout | whoami | bootstrap | mfa | users | service-accounts | api-keys | roles` driven
 * in-process through commander (as src/cli/main.ts runs them) against a real `warden server`, with the session
 * file in a temporary XDG_CONFIG_HOME. Every secret typed or shown is collected and searched for wherever it
 * must not appear.
 */

const PASSWORD = 'a long admin passphrase';

interface Run {
  code: number;
  text: string;
  stderr: string;
  errorCode?: string;
}

const dataDir = tempDir('warden-identity-cli-');
const configHome = tempDir('warden-identity-cli-config-');
let warden: RunningWarden;
let caFile: string;
let totp: OTPAuth.TOTP;
const secrets: string[] = [PASSWORD];

/** Runs `warden <args>` in-process; `stdin` a string or a stream the test writes to while the command runs. */
async function cli(
  args: string[],
  options: { stdin?: string | Readable; env?: Record<string, string | undefined>; stdout?: Capture } = {},
): Promise<Run> {
  const env = {
    WARDEN_ADDR: warden.url,
    WARDEN_CACERT: caFile,
    XDG_CONFIG_HOME: configHome,
    HOME: configHome,
    ...options.env,
  };
  const r = await runCliDetailed(
    [registerKmsCommands, registerIdentityCommands],
    args,
    env,
    options.stdin,
    options.stdout === undefined ? {} : { stdout: options.stdout },
  );
  return {
    code: r.code,
    text: r.out,
    stderr: r.err,
    ...(r.errorCode === undefined ? {} : { errorCode: r.errorCode }),
  };
}

async function ok(args: string[], options?: Parameters<typeof cli>[1]): Promise<Run> {
  const r = await cli(args, options);
  assert.equal(r.code, 0, `warden ${args.join(' ')}: ${r.stderr}`);
  return r;
}

async function json<T>(args: string[], options?: Parameters<typeof cli>[1]): Promise<T> {
  return JSON.parse((await ok([...args, '--json'], options)).text) as T;
}

async function fails(args: string[], exitCode: number, options?: Parameters<typeof cli>[1]): Promise<Run> {
  const r = await cli(args, options);
  assert.equal(r.code, exitCode, `warden ${args.join(' ')}: ${r.stderr}`);
  return r;
}

function saved(): SavedSession {
  return JSON.parse(readFileSync(sessionPath({ XDG_CONFIG_HOME: configHome }), 'utf8')) as SavedSession;
}

async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setTimeout(resolve, 10));
}

const outputs: string[] = [];
const record = (r: Run): Run => {
  outputs.push(r.text, r.stderr);
  return r;
};

before(async () => {
  warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: dataDir, WARDEN_LISTEN: '127.0.0.1:0' }), {
    log: () => undefined,
    requestLog: new PassThrough().resume(),
  });
  caFile = warden.caPath;
});

after(async () => {
  await warden.close();
});

describe('warden identity CLI', () => {
  it('bootstrap redeem: the token from WARDEN_TOKEN_FILE, the password from stdin; only once', async () => {
    const bootstrapEnv = { env: { WARDEN_TOKEN_FILE: warden.tokenPath } };
    assert.equal((await json<{ kind: string }>(['whoami'], bootstrapEnv)).kind, 'bootstrap');
    await fails(['bootstrap', 'redeem', '--username', 'admin'], ExitCode.usage, {
      env: { WARDEN_TOKEN_FILE: warden.tokenPath },
    });
    const user = await json<{ username: string; roles: string[] }>(
      ['bootstrap', 'redeem', '--username', 'admin'],
      { env: { WARDEN_TOKEN_FILE: warden.tokenPath }, stdin: `${PASSWORD}\n` },
    );
    assert.deepEqual(user.roles, ['admin']);
    const again = await fails(['bootstrap', 'redeem', '--username', 'other'], ExitCode.usage, {
      env: { WARDEN_TOKEN_FILE: warden.tokenPath },
      stdin: `${PASSWORD}\n`,
    });
    assert.equal(again.errorCode, 'bootstrap_unavailable');
    // Checked with the server, which no longer accepts it.
    const who = await fails(['whoami'], ExitCode.unauthenticated, bootstrapEnv);
    assert.match(who.stderr, /already redeemed/);
    secrets.push(readFileSync(warden.tokenPath, 'utf8').trim());
  });

  it('login saves a 0600 session; a privileged user without MFA may only enrol', async () => {
    const wrong = record(
      await fails(['login', '--username', 'admin'], ExitCode.unauthenticated, {
        stdin: 'not the password\n',
      }),
    );
    assert.equal(wrong.errorCode, 'invalid_credentials');
    assert.equal(existsSync(sessionPath({ XDG_CONFIG_HOME: configHome })), false);

    const r = record(await ok(['login', '--username', 'admin'], { stdin: `${PASSWORD}\n` }));
    assert.match(r.text, /logged in to .* as user:admin \(MFA enrolment only/);
    assert.match(r.stderr, /warden mfa enrol/);
    const file = sessionPath({ XDG_CONFIG_HOME: configHome });
    assert.equal(file, path.join(configHome, 'warden', 'session.json'));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const session = saved();
    assert.equal(session.address, warden.url);
    assert.equal(session.mfaEnrolmentRequired, true);
    assert.match(session.refreshToken ?? '', /^wrt_/);
    secrets.push(session.accessToken, session.refreshToken ?? '');

    const who = await json<{ principal: string; state: string }>(['whoami']);
    assert.equal(who.principal, 'user:admin');
    assert.equal(who.state, 'mfa-enrolment-only');
    // The enrolment-only session cannot administer anything.
    assert.equal((await fails(['users', 'list'], ExitCode.forbidden)).errorCode, 'forbidden');
  });

  it('mfa enrol shows the secret once and confirms with a code; login then asks for the TOTP code', async () => {
    const stdin = new PassThrough();
    const stdout = new Capture();
    const running = cli(['mfa', 'enrol'], { stdin, stdout });
    await until(() => /URI: +otpauth:\/\/\S+\n/.test(stdout.text()));
    const uri = /URI: +(otpauth:\/\/\S+)/.exec(stdout.text())?.[1] ?? '';
    const secret = /secret: +(\S+)/.exec(stdout.text())?.[1] ?? '';
    const parsed = OTPAuth.URI.parse(uri);
    assert.ok(parsed instanceof OTPAuth.TOTP);
    totp = parsed;
    assert.equal(totp.secret.base32, secret);
    secrets.push(secret);
    stdin.end(`${totp.generate()}\n`);
    const r = record(await running);
    assert.equal(r.code, 0, r.stderr);
    const codes = r.text
      .split('\n')
      .filter((l) => /^ {2}\S+$/.test(l) && !l.includes('otpauth'))
      .map((l) => l.trim())
      .filter((l) => l !== secret);
    assert.equal(codes.length, 10);
    secrets.push(...codes);

    // MFA now required: password, then the next step's code, one per line.
    const missing = await fails(['login', '--username', 'admin'], ExitCode.usage, { stdin: `${PASSWORD}\n` });
    assert.match(missing.stderr, /TOTP code/);
    const login = record(
      await ok(['login', '--username', 'admin'], {
        stdin: `${PASSWORD}\n${totp.generate({ timestamp: Date.now() + 30_000 })}\n`,
      }),
    );
    assert.match(login.text, /as user:admin \(roles: admin;/);
    assert.equal(saved().mfaEnrolmentRequired, false);
    secrets.push(saved().accessToken, saved().refreshToken ?? '');
    const who = await json<{ roles: string[]; state: string; authMethod: string }>(['whoami']);
    assert.deepEqual(who.roles, ['admin']);
    assert.equal(who.state, 'active');
    assert.equal(who.authMethod, 'password+totp');
    // A recovery code works once, through --recovery-code.
    record(
      await ok(['login', '--username', 'admin', '--recovery-code'], { stdin: `${PASSWORD}\n${codes[0]}\n` }),
    );
    secrets.push(saved().accessToken, saved().refreshToken ?? '');
    await fails(['login', '--username', 'admin', '--recovery-code'], ExitCode.unauthenticated, {
      stdin: `${PASSWORD}\n${codes[0]}\n`,
    });
  });

  it('every command group uses the saved session, renewing it when expired (the rotated refresh token saved)', async () => {
    await ok(['keys', 'create', 'app', '--type', 'aes256-gcm']);
    const before = saved();
    writeFileSync(
      sessionPath({ XDG_CONFIG_HOME: configHome }),
      JSON.stringify({ ...before, expiresAt: Date.now() - 1000 }),
      { mode: 0o600 },
    );
    assert.ok(
      (await json<{ keys: { name: string }[] }>(['keys', 'list'])).keys.some((k) => k.name === 'app'),
    );
    const after = saved();
    assert.notEqual(after.refreshToken, before.refreshToken);
    assert.notEqual(after.accessToken, before.accessToken);
    assert.ok(after.expiresAt > Date.now());
    assert.equal(statSync(sessionPath({ XDG_CONFIG_HOME: configHome })).mode & 0o777, 0o600);
    secrets.push(after.accessToken, after.refreshToken ?? '');
    // The spent refresh token is dead (presenting it again would revoke the session: not done here).
    // WARDEN_TOKEN wins over the session, and the session is never sent to another server.
    assert.equal(
      (await fails(['users', 'list'], ExitCode.unauthenticated, { env: { WARDEN_TOKEN: 'not-a-token' } }))
        .errorCode,
      'unauthenticated',
    );
    const elsewhere = await fails(['users', 'list'], ExitCode.unauthenticated, {
      env: { WARDEN_ADDR: 'https://127.0.0.2:1' },
    });
    assert.match(elsewhere.stderr, /the saved session is for/);
  });

  it('administers users', async () => {
    const created = record(
      await ok(['users', 'create', 'bob', '--password', '--roles', 'auditor', '--groups', 'analysts,ml'], {
        stdin: 'bob has a long password\n',
      }),
    );
    secrets.push('bob has a long password');
    assert.match(created.text, /roles: +auditor/);
    await ok(['users', 'create', 'carol', '--display-name', 'Carol']);
    const list = await json<{ users: { username: string }[] }>(['users', 'list']);
    assert.deepEqual(
      list.users.map((u) => u.username),
      ['admin', 'bob', 'carol'],
    );
    assert.match((await ok(['users', 'show', 'bob'])).text, /groups: +analysts, ml/);
    assert.deepEqual(
      (await json<{ roles: string[] }>(['users', 'set-roles', 'bob', 'auditor', 'key-user'])).roles,
      ['auditor', 'key-user'],
    );
    assert.deepEqual((await json<{ roles: string[] }>(['users', 'set-roles', 'carol'])).roles, []);
    assert.deepEqual((await json<{ groups: string[] }>(['users', 'set-groups', 'carol', 'eng'])).groups, [
      'eng',
    ]);
    assert.equal((await json<{ disabled: boolean }>(['users', 'disable', 'bob'])).disabled, true);
    assert.equal((await json<{ disabled: boolean }>(['users', 'enable', 'bob'])).disabled, false);
    await ok(['users', 'set-password', 'bob'], { stdin: 'bob has another password\n' });
    secrets.push('bob has another password');
    await ok(['users', 'reset-mfa', 'bob']);
    await ok(['users', 'delete', 'carol']);
    const missing = await fails(['users', 'show', 'carol'], ExitCode.usage);
    assert.equal(missing.errorCode, 'identity_not_found');
    assert.equal((await fails(['users', 'create', 'Bad Name'], ExitCode.usage)).errorCode, 'invalid_request');
    // Secrets never come from argv: there is no option that takes one.
    assert.equal(
      (await fails(['users', 'create', 'dave', '--password', 'hunter2hunter2'], ExitCode.usage)).errorCode,
      'commander.excessArguments',
    );
  });

  it('service accounts: the secret is shown once, and the SDK provider works with it', async () => {
    const created = await json<{ account: { clientId: string; roles: string[] }; clientSecret: string }>([
      'service-accounts',
      'create',
      'etl',
      '--roles',
      'key-user',
      '--description',
      'nightly ETL',
    ]);
    assert.match(created.clientSecret, /^wcs_/);
    secrets.push(created.clientSecret);
    // A private key given by mistake is refused before anything is sent (usage, not the server's invalid_request).
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyFile = path.join(configHome, 'client-key.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const jwksFile = path.join(configHome, 'client-jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [privateKey.export({ format: 'jwk' })] }));
    for (const option of [
      ['--public-key', keyFile],
      ['--jwks', jwksFile],
    ]) {
      const refused = await fails(
        ['service-accounts', 'create', 'keyed', '--auth-method', 'private_key_jwt', ...option],
        ExitCode.usage,
      );
      assert.equal(refused.errorCode, 'usage');
      assert.match(refused.stderr, /holds a private key/);
    }
    const list = record(await ok(['service-accounts', 'list']));
    assert.match(list.text, /etl +client_secret +key-user/);
    const shown = record(await ok(['service-accounts', 'show', 'etl']));
    assert.match(shown.text, /description: +nightly ETL/);
    const ids = new IdentityClient(new WardenHttp({ address: warden.url, ca: readFileSync(caFile) }));
    const token = await ids.clientCredentials({ clientId: 'etl', clientSecret: created.clientSecret });
    secrets.push(token.access_token);
    const rotated = record(await ok(['service-accounts', 'rotate-secret', 'etl']));
    const secret = /: (wcs_\S+)$/m.exec(rotated.text)?.[1] ?? '';
    assert.match(secret, /^wcs_/);
    secrets.push(secret);
    await assert.rejects(ids.clientCredentials({ clientId: 'etl', clientSecret: created.clientSecret }), {
      code: 'invalid_client',
    });
    await ids.clientCredentials({ clientId: 'etl', clientSecret: secret });
    await json(['service-accounts', 'set-roles', 'etl', 'key-user', 'auditor']);
    await ok(['service-accounts', 'disable', 'etl']);
    await assert.rejects(ids.clientCredentials({ clientId: 'etl', clientSecret: secret }), {
      code: 'invalid_client',
    });
    await ok(['service-accounts', 'enable', 'etl']);
    await ok(['service-accounts', 'delete', 'etl']);
    assert.equal(
      (await fails(['service-accounts', 'show', 'etl'], ExitCode.usage)).errorCode,
      'identity_not_found',
    );
    assert.equal(
      (await fails(['service-accounts', 'create', 'x', '--auth-method', 'magic'], ExitCode.usage)).errorCode,
      'usage',
    );
  });

  it('api-keys: created (key shown once), used, listed, revoked', async () => {
    const created = await json<{ key: string; info: { id: string; expiresAt: number } }>([
      'api-keys',
      'create',
      '--scopes',
      'admin',
      '--name',
      'ci',
      '--ttl-days',
      '2',
    ]);
    secrets.push(created.key);
    assert.ok(created.info.expiresAt <= Date.now() + 2 * 86_400_000);
    const viaKey = await json<{ keys: { name: string }[] }>(['keys', 'list'], {
      env: { WARDEN_TOKEN: created.key },
    });
    assert.ok(viaKey.keys.some((k) => k.name === 'app'));
    const who = await json<{ kind: string; apiKeyId: string }>(['whoami'], {
      env: { WARDEN_TOKEN: created.key },
    });
    assert.deepEqual(who, { address: warden.url, kind: 'api-key', apiKeyId: created.info.id });
    const listed = record(await ok(['api-keys', 'list']));
    assert.match(listed.text, new RegExp(created.info.id));
    assert.match(record(await ok(['api-keys', 'list', '--all'])).text, new RegExp(created.info.id));
    assert.match(record(await ok(['api-keys', 'show', created.info.id])).text, /scopes: +admin/);
    await ok(['api-keys', 'revoke', created.info.id]);
    const refused = await fails(['keys', 'list'], ExitCode.unauthenticated, {
      env: { WARDEN_TOKEN: created.key },
    });
    assert.equal(refused.errorCode, 'unauthenticated');

    await ok(['users', 'set-roles', 'bob', 'key-user']);
    const forBob = await json<{ key: string; info: { id: string } }>([
      'api-keys',
      'create',
      '--owner',
      'user:bob',
      '--scopes',
      'key-user',
    ]);
    secrets.push(forBob.key);
    assert.match(
      record(await ok(['api-keys', 'list', '--owner', 'user:bob'])).text,
      new RegExp(forBob.info.id),
    );
    await fails(['api-keys', 'revoke', forBob.info.id], ExitCode.usage);
    await ok(['api-keys', 'revoke', forBob.info.id, '--admin']);
    for (const days of ['0', '367', '1.5', 'x']) {
      await fails(['api-keys', 'create', '--scopes', 'admin', '--ttl-days', days], ExitCode.usage);
    }
  });

  it('roles: the built-in roles and what they may do; group mappings', async () => {
    const { roles } = await json<{ roles: { role: string; actions: string[]; conditions: string[] }[] }>([
      'roles',
      'list',
    ]);
    const byName = new Map(roles.map((r) => [r.role, r]));
    assert.deepEqual(byName.get('admin')?.actions, ['*']);
    assert.ok(byName.get('key-user')?.actions.includes('kms.crypto.encrypt'));
    assert.ok(!byName.get('key-custodian')?.actions.includes('kms.crypto.decrypt'));
    assert.match(byName.get('business-user')?.conditions[0] ?? '', /environment == "prod"/);
    assert.match((await ok(['roles', 'list'])).text, /^auditor: .*audit\.read/m);

    await ok(['roles', 'map', 'ml-team', 'ml-engineer', 'data-scientist']);
    const mapped = await json<{ mappings: { group: string; roles: string[] }[] }>(['roles', 'mappings']);
    assert.deepEqual(mapped.mappings, [{ group: 'ml-team', roles: ['data-scientist', 'ml-engineer'] }]);
    assert.match((await ok(['roles', 'mappings'])).text, /ml-team → data-scientist, ml-engineer/);
    await ok(['roles', 'unmap', 'ml-team']);
    assert.deepEqual((await json<{ mappings: unknown[] }>(['roles', 'mappings'])).mappings, []);
    await fails(['roles', 'map', 'ml-team'], ExitCode.usage);
  });

  it('logout revokes the session on the server and deletes the file', async () => {
    const session = saved();
    const http = new WardenHttp({
      address: warden.url,
      ca: readFileSync(caFile),
      token: session.accessToken,
    });
    const kms = new KmsClient(http);
    await kms.listKeys();
    record(await ok(['logout']));
    assert.equal(existsSync(sessionPath({ XDG_CONFIG_HOME: configHome })), false);
    await assert.rejects(
      kms.listKeys(),
      (err: unknown) => err instanceof KmsClientError && err.status === 401,
    );
    const ids = new IdentityClient(new WardenHttp({ address: warden.url, ca: readFileSync(caFile) }));
    await assert.rejects(ids.refresh(session.refreshToken ?? ''), { code: 'invalid_grant' });
    assert.match((await ok(['logout'])).text, /not logged in/);
    assert.equal((await fails(['whoami'], ExitCode.unauthenticated)).errorCode, 'unauthenticated');
    assert.equal((await fails(['users', 'list'], ExitCode.unauthenticated)).errorCode, 'unauthenticated');
  });

  it('a revoked session fails with a clear error; a malformed session file is refused, whatever it holds', async () => {
    await ok(['login', '--username', 'bob'], { stdin: 'bob has another password\n' });
    const session = saved();
    const ids = new IdentityClient(new WardenHttp({ address: warden.url, ca: readFileSync(caFile) }));
    await ids.revoke(session.refreshToken ?? '');
    // Revoked on the server but not yet expired here: whoami asks the server and says what to do.
    let who = await cli(['whoami']);
    for (let i = 0; i < 30 && who.code === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      who = await cli(['whoami']);
    }
    assert.equal(who.code, ExitCode.unauthenticated, who.stderr);
    assert.match(who.stderr, /not accepted .*run warden login/);
    writeFileSync(
      sessionPath({ XDG_CONFIG_HOME: configHome }),
      JSON.stringify({ ...session, expiresAt: Date.now() - 1000 }),
      { mode: 0o600 },
    );
    const ended = await fails(['keys', 'list'], ExitCode.unauthenticated);
    assert.equal(ended.errorCode, 'session_expired');
    assert.match(ended.stderr, /run warden login/);

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.json().map((j) => j),
          fc
            .record({ version: fc.constant(1), address: fc.constant(warden.url), accessToken: fc.string() })
            .map((o) => JSON.stringify(o)),
        ),
        async (content) => {
          writeFileSync(sessionPath({ XDG_CONFIG_HOME: configHome }), content, { mode: 0o600 });
          const r = await cli(['whoami']);
          assert.equal(r.code, ExitCode.unauthenticated, r.stderr);
          assert.equal(r.errorCode, 'session_invalid');
        },
      ),
      { numRuns: 30 },
    );
    await ok(['logout', '--local']);
  });

  it('no secret appears anywhere it was not meant to be shown', () => {
    const shownOnce = new Set(outputs.filter((o) => /shown once|Recovery codes|authenticator app/.test(o)));
    for (const output of outputs) {
      if (shownOnce.has(output)) continue;
      for (const secret of secrets) {
        if (secret.length >= 8) assert.ok(!output.includes(secret), 'a secret leaked into CLI output');
      }
    }
  });
});
