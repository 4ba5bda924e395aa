// `warden policies …`: offline validation for CI (exit 5 on an invalid file, with line numbers), and custom
// policies put, listed, shown and deleted through a running server.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { registerKmsCommands } from '../../src/cli/commands/kms.ts';
import { registerPolicyCommands } from '../../src/cli/commands/policies.ts';
import { ExitCode } from '../../src/cli/exit-codes.ts';
import { tempDir } from '../envelope/support.ts';
import { runCli } from '../support/cli.ts';

describe('warden policies', async () => {
  const dir = tempDir('warden-policies-cli-');
  const warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: dir, WARDEN_LISTEN: '127.0.0.1:0' }), {
    requestLog: { write: () => true } as unknown as NodeJS.WritableStream,
  });
  after(() => warden.close());
  const env = {
    WARDEN_ADDR: warden.url,
    WARDEN_TOKEN: readFileSync(warden.tokenPath, 'utf8').trim(),
    WARDEN_CACERT: warden.caPath,
  };
  const good = path.join(dir, 'analysts.cedar');
  writeFileSync(
    good,
    'permit (principal in Warden::Role::"analyst", action == Warden::Action::"dataset.read", resource)\nwhen { resource.sensitivity == "internal" };\n',
  );
  const bad = path.join(dir, 'broken.cedar');
  writeFileSync(
    bad,
    '// a typo in the action\npermit (principal, action == Warden::Action::"dataset.raed", resource);\n',
  );

  const run = (args: string[]) => runCli(registerPolicyCommands, args, env);

  it('validates files offline: ok, or exit 5 with the line of the problem', async () => {
    assert.deepEqual(await run(['policies', 'validate', good]), { code: 0, out: `${good}: ok\n`, err: '' });
    const r = await run(['policies', 'validate', good, bad]);
    assert.equal(r.code, ExitCode.malformed);
    assert.match(r.out, new RegExp(`${bad.replaceAll('/', '\\/')}:2:\\d+: error`));
  });

  it('names the file that cannot be read (a directory among the files)', async () => {
    for (const args of [
      ['policies', 'validate', good, dir],
      ['policies', 'put', 'from-a-directory', dir],
    ]) {
      const r = await run(args);
      assert.equal(r.code, ExitCode.io);
      assert.ok(r.err.includes(`${dir}: is a directory`), r.err);
    }
  });

  it('puts, lists, shows and deletes a custom policy on the server; refuses an invalid one', async () => {
    const put = await run(['policies', 'put', 'analysts-read', good]);
    assert.equal(put.code, 0, put.out);
    assert.match((await run(['policies', 'list'])).out, /^analysts-read\tcustom\t1 policy$/m);
    assert.match((await run(['policies', 'show', 'analysts-read'])).out, /dataset\.read/);
    assert.equal((await run(['policies', 'put', 'broken', bad])).code, ExitCode.malformed);
    assert.match((await run(['policies', 'delete', 'analysts-read'])).out, /^removed analysts-read$/m);
    assert.doesNotMatch((await run(['policies', 'list'])).out, /analysts-read/);
    // Deleting what is not there is an error a script can see, not a success.
    const again = await run(['policies', 'delete', 'analysts-read']);
    assert.equal(again.code, ExitCode.usage);
    assert.match(again.err, /no custom policy analysts-read/);
  });

  it('says what Cedar warns about a policy it installs (a forbid that can never apply)', async () => {
    const typo = path.join(dir, 'typo.cedar');
    // `purpse` is not a context attribute: the guard is always false, the forbid never applies.
    writeFileSync(
      typo,
      'forbid (principal, action, resource)\nwhen { context has purpse && context.purpse == "fraud" };\n',
    );
    const put = await run(['policies', 'put', 'typo', typo]);
    assert.equal(put.code, 0, put.err);
    assert.match(
      put.err,
      new RegExp(`warning: ${typo.replaceAll('/', '\\/')}:1:1: warning: .*policy is impossible`),
    );
    assert.equal((await run(['policies', 'delete', 'typo'])).code, 0);
  });

  it('refuses a change that would leave the caller unable to undo it, and allows one that does not', async () => {
    const forbidAll = path.join(dir, 'forbid-all.cedar');
    writeFileSync(forbidAll, 'forbid (principal, action, resource);\n');
    const refused = await run(['policies', 'put', 'lockout', forbidAll]);
    assert.equal(refused.code, ExitCode.forbidden, refused.err);
    assert.match(
      refused.err,
      /no longer be allowed policy\.write on lockout \(denied by lockout\), so you could not undo it/,
    );
    assert.doesNotMatch((await run(['policies', 'list'])).out, /lockout/);
    // The administrator can still do everything else.
    assert.equal((await run(['policies', 'list'])).code, 0);
    // A forbid that spares policy administration is installed, and removed again.
    const spares = path.join(dir, 'no-deletes.cedar');
    writeFileSync(spares, 'forbid (principal, action == Warden::Action::"kms.keys.destroy", resource);\n');
    assert.equal((await run(['policies', 'put', 'no-destroy', spares])).code, 0);
    assert.equal((await run(['policies', 'delete', 'no-destroy'])).code, 0);
  });

  it('declares the purpose of calls (--purpose or $WARDEN_PURPOSE) to purpose-bound policies', async () => {
    const bound = path.join(dir, 'fraud-only.cedar');
    writeFileSync(
      bound,
      'forbid (principal, action == Warden::Action::"kms.crypto.encrypt", resource == Warden::Key::"scores")\nunless { context has purpose && context.purpose == "fraud-scoring" };\n' +
        'forbid (principal, action == Warden::Action::"policy.read", resource == Warden::Policy::"fraud-only")\nunless { context has purpose && context.purpose == "fraud-scoring" };\n',
    );
    const kms = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
      runCli(registerKmsCommands, args, { ...env, ...extra }, 'applicant 4411');
    assert.equal((await kms(['keys', 'create', 'scores', '--type', 'aes256-gcm'])).code, 0);
    assert.equal((await run(['policies', 'put', 'fraud-only', bound])).code, 0);
    try {
      assert.equal((await kms(['kms', 'encrypt', 'scores'])).code, ExitCode.forbidden);
      assert.equal(
        (await kms(['kms', 'encrypt', 'scores', '--purpose', 'marketing'])).code,
        ExitCode.forbidden,
      );
      const declared = await kms(['kms', 'encrypt', 'scores', '--purpose', 'fraud-scoring']);
      assert.equal(declared.code, 0, declared.err);
      assert.match(declared.out, /^warden:v1:scores:1:/);
      const fromEnv = await kms(['kms', 'encrypt', 'scores'], { WARDEN_PURPOSE: 'fraud-scoring' });
      assert.equal(fromEnv.code, 0, fromEnv.err);
      // A purpose the server would ignore is refused before anything is sent.
      const malformed = await kms(['kms', 'encrypt', 'scores', '--purpose', 'Fraud Scoring']);
      assert.equal(malformed.code, ExitCode.usage);
      assert.match(malformed.err, /the purpose must be 1-64 characters/);
      // Route-level decisions (here policy.read) see the same declaration.
      assert.equal((await run(['policies', 'show', 'fraud-only'])).code, ExitCode.forbidden);
      const shown = await run(['policies', 'show', 'fraud-only', '--purpose', 'fraud-scoring']);
      assert.equal(shown.code, 0, shown.err);
      // The declaration is evidence: the audit records carry it.
      const page = await warden.audit.log.query({ action: 'kms.crypto.encrypt', limit: 100 });
      const purposes = page.entries.map(
        (e) => (e.entry as unknown as { outcome: string; details?: { purpose?: string } }).details?.purpose,
      );
      assert.deepEqual(purposes.sort(), [undefined, 'fraud-scoring', 'fraud-scoring', 'marketing'].sort());
    } finally {
      assert.equal((await run(['policies', 'delete', 'fraud-only'])).code, 0);
    }
  });

  it('simulates decisions: the policies in force, or with a custom policy put or removed, changing nothing', async () => {
    const simulate = (...args: string[]) => run(['policies', 'simulate', ...args]);
    const user = ['kms.crypto.decrypt', 'Key::payments', '--principal', 'User::alice'];
    const allowed = await simulate(...user, '--role', 'key-user');
    assert.equal(allowed.code, 0, allowed.err);
    assert.match(allowed.out, /^allow by \S+/);
    // A denial is exit 9, so that a CI job can assert what must never be allowed.
    const denied = await simulate(...user, '--role', 'auditor');
    assert.equal(denied.code, ExitCode.forbidden);
    assert.match(denied.out, /^deny \(no policy permits it\)/);
    const json = await simulate(...user, '--role', 'key-user', '--json');
    assert.deepEqual(Object.keys(JSON.parse(json.out) as object).sort(), [
      'changed',
      'decision',
      'errors',
      'reasons',
      'version',
    ]);

    // A night-time freeze, tried before it is installed.
    const freeze = path.join(dir, 'night-freeze.cedar');
    writeFileSync(
      freeze,
      'forbid (principal, action == Warden::Action::"kms.crypto.decrypt", resource)\nwhen { context has now && context.now.minuteOfDay < 360 };\n',
    );
    const at = (time: string) =>
      simulate(
        ...user,
        '--role',
        'key-user',
        '--with',
        `night-freeze=${freeze}`,
        '--context',
        `time=${time}`,
      );
    const night = await at('2026-11-23T03:00:00Z');
    assert.equal(night.code, ExitCode.forbidden);
    assert.match(night.out, /^deny by night-freeze \(with the change\)/);
    const noon = await at('2026-11-23T12:00:00Z');
    assert.equal(noon.code, 0, noon.out);
    assert.doesNotMatch((await run(['policies', 'list'])).out, /night-freeze/);

    // Context attributes reach the policies: a purpose-bound key, MFA age, the source address.
    const bound = path.join(dir, 'training-only.cedar');
    writeFileSync(
      bound,
      'forbid (principal, action, resource == Warden::Key::"payments")\nunless { context has purpose && context.purpose == "model-training" && context has mfaAgeSeconds && context.mfaAgeSeconds < 600 && context has sourceIp && context.sourceIp.isInRange(ip("10.0.0.0/8")) };\n',
    );
    const withBound = [...user, '--role', 'key-user', '--with', `training-only=${bound}`];
    assert.equal((await simulate(...withBound)).code, ExitCode.forbidden);
    const context = ['--context', 'purpose=model-training', '--context', 'mfaAgeSeconds=120'];
    assert.equal((await simulate(...withBound, ...context, '--context', 'sourceIp=10.1.2.3')).code, 0);
    assert.equal(
      (await simulate(...withBound, ...context, '--context', 'sourceIp=192.0.2.1')).code,
      ExitCode.forbidden,
    );

    // Removal of a custom policy, simulated: the purpose-bound policy installed earlier would no longer deny.
    assert.equal((await run(['policies', 'put', 'training-only', bound])).code, 0);
    try {
      assert.equal((await simulate(...user, '--role', 'key-user')).code, ExitCode.forbidden);
      assert.equal((await simulate(...user, '--role', 'key-user', '--without', 'training-only')).code, 0);
    } finally {
      assert.equal((await run(['policies', 'delete', 'training-only'])).code, 0);
    }

    // Bad input is a usage error, never a decision.
    for (const args of [
      ['kms.crypto.decrypt', 'Key::payments', '--principal', 'alice'],
      ['kms.crypto.decypt', 'Key::payments', '--principal', 'User::alice'],
      ['kms.crypto.decrypt', 'Kee::payments', '--principal', 'User::alice'],
      [...user, '--context', 'sourceIp=not-an-address'],
      [...user, '--context', 'time=yesterday'],
      [...user, '--without', 'no-such-policy'],
      [...user, '--with', `broken=${bad}`],
      [...user, '--resource-attr', 'sensitivity:=[unquoted]'],
    ]) {
      const r = await simulate(...args);
      assert.ok(
        r.code === ExitCode.usage || r.code === ExitCode.malformed,
        `${args.join(' ')}: ${r.code} ${r.err}`,
      );
    }
  });

  it('takes policy files as long as the offline validator does (256 Ki characters), not only 64 Ki', async () => {
    const long = path.join(dir, 'long.cedar');
    writeFileSync(long, `// ${'documented at length '.repeat(5000)}\n${readFileSync(good, 'utf8')}`);
    const put = await run(['policies', 'put', 'long', long]);
    assert.equal(put.code, 0, put.err);
    assert.equal((await run(['policies', 'delete', 'long'])).code, 0);
  });

  it('records every policy change, and every refused one, in the audit log', async () => {
    const page = await warden.audit.log.query({ action: 'policy.write', limit: 1000 });
    const seen = page.entries.map((e) => {
      const event = e.entry as unknown as {
        resource: string;
        outcome: string;
        reason?: string;
        details?: Record<string, string>;
      };
      return [event.resource, event.outcome, event.reason ?? '', event.details?.operation ?? ''].join(' ');
    });
    assert.deepEqual(seen, [
      'policy:analysts-read success  put',
      'policy:analysts-read success  delete',
      'policy:typo success  put',
      'policy:typo success  delete',
      'policy:lockout denied policy_lockout put',
      'policy:no-destroy success  put',
      'policy:no-destroy success  delete',
      'policy:fraud-only success  put',
      'policy:fraud-only success  delete',
      'policy:training-only success  put',
      'policy:training-only success  delete',
      'policy:long success  put',
      'policy:long success  delete',
    ]);
    const put = page.entries[0]?.entry as unknown as {
      details: Record<string, string>;
      principal: { id: string };
    };
    assert.match(put.details.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(put.principal.id, 'bootstrap-admin');
  });
});
