import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  IdentityExistsError,
  IdentityNotFoundError,
  InvalidIdentityRequestError,
  OAuthError,
} from '../../src/identity/index.ts';
import { ADMIN, bearer, fixture } from './support.ts';
import type { Dialect, Fixture } from './support.ts';

const IP = '192.0.2.1';
const PASSWORD = 'a long enough passphrase';

for (const dialect of ['sqlite', 'postgres'] as const satisfies readonly Dialect[]) {
  describe(`directory on ${dialect}`, () => {
    let f: Fixture;
    before(async () => {
      f = await fixture({ dialect });
    });
    after(() => f.close());

    it('users: create, read, update, list, delete; names validated; no secret read back', async () => {
      const u = await f.identity.createUser(ADMIN, {
        username: 'alice',
        password: PASSWORD,
        displayName: 'Alice',
        roles: ['key-user', 'key-user', 'auditor'],
        groups: ['Data Science'],
      });
      assert.equal(u.principalId, 'user:alice');
      assert.deepEqual(u.roles, ['auditor', 'key-user']);
      assert.equal(u.hasPassword, true);
      assert.equal(u.mfaEnrolled, false);
      assert.equal(u.source, 'local');
      await assert.rejects(
        f.identity.createUser(ADMIN, { username: 'alice', password: PASSWORD }),
        IdentityExistsError,
      );
      await assert.rejects(
        f.identity.createUser(ADMIN, { username: 'Bad Name', password: PASSWORD }),
        InvalidIdentityRequestError,
      );
      await assert.rejects(
        f.identity.createUser(ADMIN, { username: 'bob', password: 'short' }),
        InvalidIdentityRequestError,
      );
      await assert.rejects(
        f.identity.createUser(ADMIN, { username: 'bob', roles: ['Not A Role'] }),
        InvalidIdentityRequestError,
      );
      const updated = await f.identity.updateUser(ADMIN, 'alice', { roles: ['auditor'], displayName: 'A.' });
      assert.deepEqual(updated.roles, ['auditor']);
      assert.equal(updated.epoch, u.epoch);
      const disabled = await f.identity.updateUser(ADMIN, 'alice', { disabled: true });
      assert.equal(disabled.disabled, true);
      assert.equal(disabled.epoch, u.epoch + 1);
      assert.deepEqual(
        (await f.identity.listUsers()).map((x) => x.username),
        ['alice'],
      );
      assert.ok(!('passwordHash' in (await f.identity.getUser('alice'))));
      await assert.rejects(f.identity.updateUser(ADMIN, 'nobody', { disabled: true }), IdentityNotFoundError);
    });

    it('federated users and IdP group role mappings', async () => {
      await f.identity.putRoleMapping(ADMIN, 'ml-engineers', ['ml-engineer', 'key-user']);
      const fed = await f.identity.upsertFederatedUser({
        issuer: 'https://idp.example',
        subject: 'sub-123',
        username: 'carol@example.com',
        groups: ['ml-engineers', 'everyone'],
      });
      assert.equal(fed.source, 'federated');
      assert.equal(fed.hasPassword, false);
      const again = await f.identity.upsertFederatedUser({
        issuer: 'https://idp.example',
        subject: 'sub-123',
        username: 'ignored',
        groups: ['everyone'],
      });
      assert.equal(again.username, 'carol@example.com');
      assert.deepEqual(again.groups, ['everyone']);
      await f.identity.upsertFederatedUser({
        issuer: 'https://idp.example',
        subject: 'sub-123',
        username: 'x',
        groups: ['ml-engineers'],
      });
      const s = await f.identity.issueSession(await f.identity.getUser('carol@example.com'), {
        amr: ['fed'],
        authMethod: 'oidc',
      });
      const p = await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP });
      assert.deepEqual(p?.roles, ['key-user', 'ml-engineer']);
      assert.deepEqual(p.groups, ['ml-engineers']);
      // Removing the mapping takes the roles away from live tokens.
      await f.identity.deleteRoleMapping(ADMIN, 'ml-engineers');
      assert.deepEqual(
        (await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP }))?.roles,
        [],
      );
      assert.deepEqual(await f.identity.listRoleMappings(), []);
      // Federated users cannot log in with a password.
      await assert.rejects(
        f.identity.login({ username: 'carol@example.com', password: PASSWORD, sourceIp: IP }),
      );
    });

    it('refresh rotation, reuse detection and revocation through the store', async () => {
      await f.identity.createUser(ADMIN, { username: 'dave', password: PASSWORD, roles: ['key-user'] });
      const s = await f.identity.login({ username: 'dave', password: PASSWORD, sourceIp: IP });
      const refresh = (token: string) =>
        f.identity.oauth.token({
          form: { grant_type: 'refresh_token', client_id: 'warden', refresh_token: token },
          sourceIp: IP,
        });
      const r1 = await refresh(s.refresh_token);
      // Concurrent double use of the same token: exactly one wins, and the loser's reuse kills the family.
      const both = await Promise.allSettled([
        refresh(r1.refresh_token ?? ''),
        refresh(r1.refresh_token ?? ''),
      ]);
      assert.equal(both.filter((r) => r.status === 'fulfilled').length, 1);
      const loser = both.find((r) => r.status === 'rejected');
      assert.ok(loser?.status === 'rejected' && loser.reason instanceof OAuthError);
      const winner = both.find((r) => r.status === 'fulfilled');
      assert.ok(winner?.status === 'fulfilled');
      await assert.rejects(refresh(winner.value.refresh_token ?? ''), OAuthError);
      assert.equal(
        await f.identity.authenticate({ authorization: bearer(winner.value.access_token), sourceIp: IP }),
        undefined,
      );
    });

    it('TOTP step and recovery codes are compare-and-set', async () => {
      await f.identity.createUser(ADMIN, { username: 'erin', password: PASSWORD });
      const dir = f.identity.directory;
      assert.equal(await dir.spendTotpStep('erin', null, 100), true);
      assert.equal(await dir.spendTotpStep('erin', null, 101), false);
      assert.equal(await dir.spendTotpStep('erin', 100, 101), true);
      await dir.setTotpPending('erin', 'sealed');
      assert.equal(await dir.confirmTotp('erin', 'other', 5, ['a', 'b']), false);
      assert.equal(await dir.confirmTotp('erin', 'sealed', 5, ['a', 'b']), true);
      assert.equal(await dir.replaceRecoveryHashes('erin', ['a', 'b'], ['b']), true);
      assert.equal(await dir.replaceRecoveryHashes('erin', ['a', 'b'], ['a']), false);
      const creds = await dir.getUserWithCredentials('erin');
      assert.deepEqual(creds?.credentials.recoveryHashes, ['b']);
      assert.equal(creds.user.mfaEnrolled, true);
      await f.identity.resetMfa(ADMIN, 'erin');
      assert.equal((await dir.getUser('erin'))?.mfaEnrolled, false);
    });

    it('service accounts and API keys; deleting a principal deletes its keys and sessions', async () => {
      const { account, clientSecret } = await f.identity.createServiceAccount(ADMIN, {
        clientId: 'etl',
        authMethod: 'client_secret',
        roles: ['key-user'],
        description: 'nightly ETL',
      });
      assert.ok(clientSecret?.startsWith('wcs_'));
      assert.equal(account.hasSecret, true);
      assert.ok(!JSON.stringify(await f.identity.listServiceAccounts()).includes(clientSecret ?? '-'));
      await assert.rejects(
        f.identity.createServiceAccount(ADMIN, { clientId: 'warden', authMethod: 'client_secret' }),
        InvalidIdentityRequestError,
      );
      await assert.rejects(
        f.identity.createServiceAccount(ADMIN, {
          clientId: 'bad',
          authMethod: 'private_key_jwt',
          jwks: { keys: [{ kty: 'oct', k: 'AAAA' }] },
        }),
        InvalidIdentityRequestError,
      );
      const service = { id: 'service:etl', roles: ['key-user'], authMethod: 'jwt', kind: 'service' as const };
      const { key } = await f.identity.createApiKey(service, { scopes: ['key-user'] });
      assert.equal(
        (await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP }))?.id,
        'service:etl',
      );
      const basic = `Basic ${Buffer.from(`etl:${clientSecret ?? ''}`).toString('base64')}`;
      const token = await f.identity.oauth.token({
        form: { grant_type: 'client_credentials' },
        authorization: basic,
        sourceIp: IP,
      });
      const rotated = await f.identity.rotateClientSecret(ADMIN, 'etl');
      assert.notEqual(rotated.clientSecret, clientSecret);
      // A new secret ends the tokens issued under the old one, and the old secret.
      assert.equal(
        await f.identity.authenticate({ authorization: bearer(token.access_token), sourceIp: IP }),
        undefined,
      );
      await assert.rejects(
        f.identity.oauth.token({
          form: { grant_type: 'client_credentials' },
          authorization: basic,
          sourceIp: IP,
        }),
        OAuthError,
      );
      await f.identity.deleteServiceAccount(ADMIN, 'etl');
      assert.equal(await f.identity.authenticate({ authorization: bearer(key), sourceIp: IP }), undefined);
      assert.deepEqual(await f.identity.listApiKeys('service:etl'), []);
      await assert.rejects(f.identity.getServiceAccount('etl'), IdentityNotFoundError);
    });

    it('client-assertion replay cache, denylist and purge', async () => {
      const dir = f.identity.directory;
      const now = f.clock.now;
      assert.equal(await dir.spendAssertionId('id-1', now + 60_000), true);
      assert.equal(await dir.spendAssertionId('id-1', now + 60_000), false);
      await dir.denyAccessToken('jti-1', now + 60_000);
      assert.ok((await dir.activeDenylist(now)).has('jti:jti-1'));
      f.clock.now = now + 31 * 86400_000;
      await f.identity.purgeExpired();
      assert.equal(await dir.spendAssertionId('id-1', f.clock.now + 60_000), true);
      assert.equal((await dir.activeDenylist(now)).has('jti:jti-1'), false);
      f.clock.now = now;
    });

    it('bootstrap redemption is single across concurrent attempts', async () => {
      const attempts = await Promise.allSettled(
        ['root1', 'root2', 'root3'].map((username) =>
          f.identity.redeemBootstrap({ token: f.bootstrapToken, username, password: PASSWORD }),
        ),
      );
      assert.equal(attempts.filter((a) => a.status === 'fulfilled').length, 1);
      assert.equal(await f.identity.isBootstrapRedeemed(), true);
    });
  });
}
