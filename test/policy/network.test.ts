// Step-up on a new network: the network a session logged in from (IPv4 /24, IPv6 /48) travels in its tokens
// (also across refreshes); a request from another network carries `networkChanged`, and the
// `reauthenticateOnNewNetwork` guardrail refuses the user until they log in again there.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { PolicyEngine, PolicyStore, networkOf, principalContext } from '../../src/policy/index.ts';
import type { AuthzRequest } from '../../src/policy/index.ts';
import { ADMIN, fixture } from '../identity/support.ts';
import type { Fixture } from '../identity/support.ts';

describe('networkOf', () => {
  it('maps addresses to their /24 or /48, and refuses what is not an address', () => {
    assert.equal(networkOf('10.1.2.3'), '10.1.2.0/24');
    assert.equal(networkOf('::ffff:10.1.2.3'), '10.1.2.0/24');
    assert.equal(networkOf('2001:db8:abcd:12::1'), '2001:db8:abcd::/48');
    assert.equal(networkOf('2001:0db8::1'), '2001:db8:0::/48');
    assert.equal(networkOf('::1'), '0:0:0::/48');
    for (const bad of ['', 'x', '10.1.2', '300.1.2.3', '1::2::3', '1.2.3.4/24']) {
      assert.equal(networkOf(bad), undefined, bad);
    }
  });

  it('property: never throws; addresses of one /24 share it', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        networkOf(s);
      }),
    );
    fc.assert(
      fc.property(fc.ipV4(), fc.nat(255), (ip, last) => {
        const sibling = ip.replace(/\.\d+$/, `.${last}`);
        assert.equal(networkOf(ip), networkOf(sibling));
      }),
    );
  });
});

describe('reauthenticateOnNewNetwork', () => {
  const engine = new PolicyEngine({
    store: new PolicyStore({ guardrails: { reauthenticateOnNewNetwork: true } }),
  });
  const ask = (sourceIp: string, loginNetwork?: string): AuthzRequest => ({
    principal: { type: 'User', id: 'user:dana', roles: ['auditor'] },
    action: 'audit.read',
    resource: { type: 'AuditLog', id: 'main' },
    context: principalContext({
      id: 'user:dana',
      roles: ['auditor'],
      authMethod: 'jwt',
      ...(loginNetwork === undefined ? {} : { loginNetwork }),
      request: { sourceIp },
    }),
  });

  it('allows the login network, refuses another one, and does not apply without a known login network', () => {
    assert.equal(engine.authorize(ask('10.0.0.7', '10.0.0.0/24')).decision, 'allow');
    const moved = engine.authorize(ask('192.0.2.9', '10.0.0.0/24'));
    assert.equal(moved.decision, 'deny');
    assert.deepEqual(moved.reasons, ['guardrail.reauthenticate-on-new-network']);
    assert.equal(engine.authorize(ask('192.0.2.9')).decision, 'allow');
  });
});

describe('the login network in tokens', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture();
    await f.identity.createUser(ADMIN, {
      username: 'erin',
      password: 'a long enough password',
      roles: ['auditor'],
    });
  });
  after(() => f.close());

  it('is recorded at login, carried by access tokens and their refreshes, and reaches the principal', async () => {
    const user = await f.identity.getUser('erin');
    const session = await f.identity.issueSession(user, {
      amr: ['pwd'],
      authMethod: 'password',
      sourceIp: '198.51.100.23',
    });
    const verified = await f.identity.oauth.verifyAccessToken(session.access_token);
    assert.ok(verified.ok);
    assert.equal(verified.principal.loginNetwork, '198.51.100.0/24');
    const refreshed = await f.identity.oauth.token({
      form: { grant_type: 'refresh_token', client_id: 'warden', refresh_token: session.refresh_token },
      authorization: undefined,
      sourceIp: '203.0.113.5',
    });
    const again = await f.identity.oauth.verifyAccessToken(refreshed.access_token);
    assert.ok(again.ok);
    assert.equal(
      again.principal.loginNetwork,
      '198.51.100.0/24',
      'a refresh elsewhere keeps the login network',
    );
  });
});
