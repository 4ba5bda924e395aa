import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  PolicyEngine,
  PolicyStore,
  PolicyStoreError,
  PolicyValidationError,
} from '../../src/policy/index.ts';
import type { AuthzRequest } from '../../src/policy/index.ts';

const adminWritesPolicy: AuthzRequest = {
  principal: { type: 'User', id: 'alice', roles: ['admin'] },
  action: 'policy.write',
  resource: { type: 'Policy', id: 'p' },
  context: { sourceIp: '10.0.0.1', authMethod: 'password' },
};

describe('deciding against a policy set with a change applied, without installing it', () => {
  it('sees the change, leaves the installed set and its decisions alone', () => {
    const store = new PolicyStore();
    const engine = new PolicyEngine({ store });
    const version = store.version;
    const candidate = store.withChange({ put: { id: 'p', text: 'forbid (principal, action, resource);' } });
    const denied = engine.authorizeAgainst(candidate, adminWritesPolicy);
    assert.equal(denied.decision, 'deny');
    assert.deepEqual(denied.reasons, ['p']);
    assert.equal(store.version, version);
    assert.equal(store.get('p'), undefined);
    assert.equal(engine.authorize(adminWritesPolicy).decision, 'allow');
    // Removing it again, from a store that holds it, is a candidate that allows.
    store.add('p', 'forbid (principal, action, resource);');
    assert.equal(engine.authorize(adminWritesPolicy).decision, 'deny');
    assert.equal(
      engine.authorizeAgainst(store.withChange({ remove: 'p' }), adminWritesPolicy).decision,
      'allow',
    );
    assert.ok(store.get('p'));
  });

  it('validates the change as an installation does', () => {
    const store = new PolicyStore();
    assert.throws(
      () =>
        store.withChange({
          put: { id: 'x', text: 'permit (principal, action == Warden::Action::"nope", resource);' },
        }),
      PolicyValidationError,
    );
    assert.throws(() => store.withChange({ remove: 'role.admin' }), PolicyStoreError);
  });
});
