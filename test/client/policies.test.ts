// The SDK's PoliciesClient against a running server: the set in force, custom policies, validation, simulation,
// and the server's refusals as typed errors.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { KmsClientError, PoliciesClient, WardenHttp } from '../../src/client/index.ts';
import { tempDir } from '../envelope/support.ts';

describe('PoliciesClient', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-policies-sdk-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  const http = new WardenHttp({
    address: warden.url,
    token: readFileSync(warden.tokenPath, 'utf8').trim(),
    ca: readFileSync(warden.caPath),
  });
  const policies = new PoliciesClient(http);
  after(async () => {
    await http.close();
    await warden.close();
  });
  const night =
    'forbid (principal, action == Warden::Action::"kms.crypto.decrypt", resource)\nwhen { context has now && context.now.minuteOfDay < 360 };';
  const asker = {
    principal: { type: 'User', id: 'alice', roles: ['key-user'] },
    action: 'kms.crypto.decrypt',
    resource: { type: 'Key', id: 'payments' },
    context: { time: '2026-11-23T03:00:00Z' },
  } as const;

  it('lists, puts, gets, simulates and removes custom policies', async () => {
    const before = await policies.list();
    assert.ok(before.policies.some((p) => p.id === 'role.key-user' && p.source === 'built-in'));
    assert.deepEqual(await policies.simulate(asker), {
      decision: 'allow',
      reasons: ['role.key-user'],
      errors: [],
      version: before.version,
      changed: false,
    });
    const tried = await policies.simulate({ ...asker, change: { put: { id: 'night-freeze', text: night } } });
    assert.equal(tried.decision, 'deny');
    assert.deepEqual(tried.reasons, ['night-freeze']);
    assert.equal(tried.changed, true);
    assert.equal((await policies.list()).version, before.version, 'a simulation changes nothing');

    const put = await policies.put('night-freeze', night);
    assert.equal(put.policy.id, 'night-freeze');
    assert.equal((await policies.get('night-freeze')).text, night);
    assert.equal((await policies.simulate(asker)).decision, 'deny');
    assert.equal(
      (await policies.simulate({ ...asker, change: { remove: 'night-freeze' } })).decision,
      'allow',
    );
    assert.equal(await policies.remove('night-freeze'), true);
    assert.equal(await policies.remove('night-freeze'), false);
  });

  it('validates without installing, and refuses what the server refuses with typed errors', async () => {
    const checked = await policies.validate(
      'permit (principal, action == Warden::Action::"dataset.raed", resource);',
    );
    assert.equal(checked.ok, false);
    assert.ok(checked.diagnostics.some((d) => d.severity === 'error'));
    await assert.rejects(
      policies.put('typo', 'permit (principal, action == Warden::Action::"nope", resource);'),
      (err) => {
        assert.ok(err instanceof KmsClientError);
        assert.equal(err.code, 'invalid_policy');
        assert.equal(err.status, 400);
        return true;
      },
    );
    await assert.rejects(policies.put('lockout', 'forbid (principal, action, resource);'), (err) => {
      assert.ok(err instanceof KmsClientError);
      assert.equal(err.code, 'policy_lockout');
      assert.equal(err.status, 409);
      return true;
    });
    await assert.rejects(
      policies.get('no-such-policy'),
      (err) => err instanceof KmsClientError && err.status === 404,
    );
    await assert.rejects(
      policies.simulate({ ...asker, change: { remove: 'no-such-policy' } }),
      (err) => err instanceof KmsClientError && err.code === 'not_found',
    );
  });
});
