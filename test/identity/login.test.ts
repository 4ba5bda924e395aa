import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import {
  BootstrapUnavailableError,
  generateTotp,
  IdentityForbiddenError,
  InvalidCredentialsError,
  MfaRequiredError,
  ThrottledError,
  totpSecretFromBase32,
} from '../../src/identity/index.ts';
import type { Principal } from '../../src/kms/index.ts';
import { ADMIN, bearer, fixture } from './support.ts';
import type { Fixture } from './support.ts';

const IP = '203.0.113.7';
const PASSWORD = 'a long enough passphrase';

async function principalOf(f: Fixture, accessToken: string): Promise<Principal> {
  const p = await f.identity.authenticate({ authorization: bearer(accessToken), sourceIp: IP });
  assert.ok(p);
  return p;
}

describe('local login', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture({ sealer: 'local' });
    await f.identity.createUser(ADMIN, {
      username: 'erin',
      password: PASSWORD,
      roles: ['key-user'],
      groups: ['ml'],
    });
    await f.identity.createUser(ADMIN, { username: 'sam', password: PASSWORD, roles: ['security-admin'] });
  });
  after(() => f.close());

  it('logs in with a password and audits it without the password', async () => {
    const tokens = await f.identity.login({ username: 'Erin', password: PASSWORD, sourceIp: IP });
    assert.equal(tokens.mfa_enrolment_required, false);
    const p = await principalOf(f, tokens.access_token);
    assert.equal(p.id, 'user:erin');
    assert.deepEqual(p.roles, ['key-user']);
    assert.deepEqual(p.groups, ['ml']);
    assert.equal(p.mfaAt, undefined);
    assert.deepEqual(decodeJwt(tokens.access_token)['amr'], ['pwd']);
    const events = f.audit.of('identity.login');
    assert.equal(events.at(-1)?.outcome, 'success');
    assert.ok(!JSON.stringify(f.audit.events).includes(PASSWORD));
  });

  it('refuses wrong passwords and unknown users alike, and throttles the account', async () => {
    const attempt = (username: string, password: string) =>
      f.identity.login({ username, password, sourceIp: '198.51.100.20' });
    await assert.rejects(attempt('erin', 'wrong password here'), InvalidCredentialsError);
    await assert.rejects(attempt('nobody', PASSWORD), InvalidCredentialsError);
    await assert.rejects(attempt('', ''), InvalidCredentialsError);
    for (let i = 0; i < 4; i++) await assert.rejects(attempt('erin', `wrong ${i}`), InvalidCredentialsError);
    // Five failures: locked, even with the right password.
    await assert.rejects(attempt('erin', PASSWORD), (err: unknown) => {
      assert.ok(err instanceof ThrottledError);
      assert.match(err.message, /try again in \d+ s$/);
      return true;
    });
    const reasons = f.audit.of('identity.login').map((e) => e.reason);
    assert.ok(
      reasons.includes('bad_password') && reasons.includes('unknown_user') && reasons.includes('throttled'),
    );
    f.clock.now += 16 * 60_000;
    assert.ok(await attempt('erin', PASSWORD));
  });

  it('a privileged user without MFA may only enrol MFA, then must use it', async () => {
    const restricted = await f.identity.login({ username: 'sam', password: PASSWORD, sourceIp: IP });
    assert.equal(restricted.mfa_enrolment_required, true);
    const detailed = await f.identity.authenticateDetailed({
      authorization: bearer(restricted.access_token),
      sourceIp: IP,
    });
    assert.equal(detailed?.mfaEnrolmentOnly, true);
    assert.deepEqual(detailed.principal.roles, []);
    const sam = detailed.principal;
    assert.ok(sam);
    // It cannot mint itself an API key.
    await assert.rejects(
      f.identity.createApiKey(sam, { scopes: ['security-admin'] }),
      IdentityForbiddenError,
    );

    const { secret, uri } = await f.identity.beginTotpEnrolment(sam);
    assert.match(uri, /^otpauth:\/\/totp\//);
    const seed = totpSecretFromBase32(secret);
    const code = (offset = 0) => generateTotp(seed, { unixSeconds: f.clock.now / 1000 + offset });
    await assert.rejects(f.identity.confirmTotpEnrolment(sam, '000000'), { code: 'invalid_totp_code' });
    const { recoveryCodes } = await f.identity.confirmTotpEnrolment(sam, code());
    assert.equal(recoveryCodes.length, 10);

    await assert.rejects(
      f.identity.login({ username: 'sam', password: PASSWORD, sourceIp: IP }),
      MfaRequiredError,
    );
    // The enrolment code's step is spent: the same code does not log in (replay).
    await assert.rejects(
      f.identity.login({ username: 'sam', password: PASSWORD, totpCode: code(), sourceIp: IP }),
      InvalidCredentialsError,
    );
    f.clock.now += 30_000;
    const full = await f.identity.login({
      username: 'sam',
      password: PASSWORD,
      totpCode: code(),
      sourceIp: IP,
    });
    assert.equal(full.mfa_enrolment_required, false);
    const p = await principalOf(f, full.access_token);
    assert.deepEqual(p.roles, ['security-admin']);
    assert.equal(p.mfaAt, Math.floor(f.clock.now / 1000) * 1000);
    assert.deepEqual(decodeJwt(full.access_token)['amr'], ['pwd', 'otp', 'mfa']);
    // Same code again within its step: replay refused.
    await assert.rejects(
      f.identity.login({ username: 'sam', password: PASSWORD, totpCode: code(), sourceIp: IP }),
      InvalidCredentialsError,
    );

    // A recovery code works once.
    const rc = recoveryCodes[0] ?? '';
    assert.ok(
      await f.identity.login({
        username: 'sam',
        password: PASSWORD,
        recoveryCode: rc.toLowerCase(),
        sourceIp: IP,
      }),
    );
    await assert.rejects(
      f.identity.login({ username: 'sam', password: PASSWORD, recoveryCode: rc, sourceIp: IP }),
      InvalidCredentialsError,
    );

    // The seed is not stored in clear.
    const row = await f.store.db
      .selectFrom('identity_users')
      .selectAll()
      .where('username', '=', 'sam')
      .executeTakeFirstOrThrow();
    assert.ok(row.totp_secret?.startsWith('local1:'));
    assert.ok(!JSON.stringify(row).includes(secret));
    assert.ok(!JSON.stringify(row).includes(seed.toString('base64')));
  });

  it('an administrator setting a password ends the sessions', async () => {
    const s = await f.identity.login({ username: 'erin', password: PASSWORD, sourceIp: IP });
    await f.identity.setPassword(ADMIN, 'erin', 'another long passphrase');
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP }),
      undefined,
    );
    await assert.rejects(
      f.identity.login({ username: 'erin', password: PASSWORD, sourceIp: IP }),
      InvalidCredentialsError,
    );
  });

  it('a failing audit withholds the login', async () => {
    f.audit.failing = true;
    try {
      // The identity service's own event, or the KMS's signing event: either way no token comes out.
      await assert.rejects(
        f.identity.login({ username: 'erin', password: 'another long passphrase', sourceIp: IP }),
        (err: unknown) => (err as { code?: string }).code === 'audit_unavailable',
      );
    } finally {
      f.audit.failing = false;
    }
  });
});

describe('bootstrap', () => {
  it('redeems the bootstrap token once, forever', async () => {
    const f = await fixture();
    try {
      assert.equal(await f.identity.isBootstrapRedeemed(), false);
      await assert.rejects(
        f.identity.redeemBootstrap({
          token: 'wrong-token-xxxxxxxxxxxxxxxx',
          username: 'root',
          password: PASSWORD,
        }),
        BootstrapUnavailableError,
      );
      const admin = await f.identity.redeemBootstrap({
        token: f.bootstrapToken,
        username: 'root',
        password: PASSWORD,
      });
      assert.deepEqual(admin.roles, ['admin']);
      assert.equal(await f.identity.isBootstrapRedeemed(), true);
      await assert.rejects(
        f.identity.redeemBootstrap({ token: f.bootstrapToken, username: 'root2', password: PASSWORD }),
        BootstrapUnavailableError,
      );
      assert.equal(await f.identity.directory.getUser('root2'), undefined);
      // The admin must enrol MFA before doing anything.
      const s = await f.identity.login({ username: 'root', password: PASSWORD, sourceIp: IP });
      assert.equal(s.mfa_enrolment_required, true);
      assert.deepEqual(
        f.audit.of('identity.bootstrap').map((e) => e.outcome),
        ['failure', 'success', 'failure'],
      );
    } finally {
      await f.close();
    }
  });
});

describe('API keys', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture();
    await f.identity.createUser(ADMIN, {
      username: 'kim',
      password: PASSWORD,
      roles: ['key-user', 'auditor'],
    });
  });
  after(() => f.close());

  it('lifecycle: create (shown once), authenticate with scoped roles, lastUsedAt, revoke, expire', async () => {
    const kim: Principal = {
      id: 'user:kim',
      roles: ['key-user', 'auditor'],
      authMethod: 'jwt',
      kind: 'user',
    };
    const { key, info } = await f.identity.createApiKey(kim, {
      name: 'ci',
      scopes: ['key-user'],
      ttlSeconds: 3600,
    });
    assert.match(key, /^wdn_live_/);
    assert.equal(info.expiresAt - info.createdAt, 3600_000);
    assert.equal(info.lastUsedAt, null);
    assert.ok(!JSON.stringify(await f.identity.listApiKeys('user:kim')).includes(key.slice(26)));
    const p = await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP });
    assert.equal(p?.id, 'user:kim');
    assert.equal(p.authMethod, 'api-key');
    assert.deepEqual(p.roles, ['key-user']);
    assert.equal((await f.identity.getApiKey(info.id)).lastUsedAt, f.clock.now);

    // Default lifetime: 90 days.
    const longer = await f.identity.createApiKey(kim, { scopes: ['auditor'] });
    assert.equal(longer.info.expiresAt - longer.info.createdAt, 90 * 86400_000);
    // Not more than the owner holds.
    await assert.rejects(f.identity.createApiKey(kim, { scopes: ['admin'] }), IdentityForbiddenError);

    // Removing the role from the owner removes it from the key.
    await f.identity.updateUser(ADMIN, 'kim', { roles: ['auditor'] });
    assert.deepEqual(
      (await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP }))?.roles,
      [],
    );
    await f.identity.updateUser(ADMIN, 'kim', { roles: ['key-user', 'auditor'] });

    // Disabled owner: refused.
    await f.identity.updateUser(ADMIN, 'kim', { disabled: true });
    assert.equal(await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP }), undefined);
    await f.identity.updateUser(ADMIN, 'kim', { disabled: false });

    await f.identity.revokeApiKey(ADMIN, info.id);
    assert.equal(await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP }), undefined);
    assert.ok((await f.identity.getApiKey(info.id)).revokedAt);

    f.clock.now += 90 * 86400_000;
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(longer.key), sourceIp: IP }),
      undefined,
    );
    const reasons = f.audit.of('identity.authenticate').map((e) => e.reason);
    assert.ok(reasons.includes('api_key_revoked') && reasons.includes('api_key_expired'));
    assert.ok(!JSON.stringify(f.audit.events).includes(key));
  });

  it('throttles an address that keeps presenting bad bearers', async () => {
    const ip = '192.0.2.99';
    for (let i = 0; i < 50; i++) {
      assert.equal(
        await f.identity.authenticate({ authorization: bearer(`garbage${i}`), sourceIp: ip }),
        undefined,
      );
    }
    await assert.rejects(
      f.identity.authenticate({ authorization: bearer('garbage'), sourceIp: ip }),
      ThrottledError,
    );
  });
});
