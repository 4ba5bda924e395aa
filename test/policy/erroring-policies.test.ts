import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyEngine, PolicyStore } from '../../src/policy/index.ts';
import type { AuthzRequest } from '../../src/policy/index.ts';

// 100 s × 10^17 overflows Cedar's 64-bit integers: the condition errors at evaluation, after validation passed.
const OVERFLOWING = 'context has mfaAgeSeconds && context.mfaAgeSeconds * 100000000000000000 > 0';

const adminReads: AuthzRequest = {
  principal: { type: 'User', id: 'alice', roles: ['admin'] },
  action: 'dataset.read',
  resource: { type: 'Dataset', id: 'claims', attrs: { sensitivity: 'internal' } },
  context: { sourceIp: '10.0.0.1', authMethod: 'password', mfaAgeSeconds: 100 },
};

describe('a policy whose condition errors at evaluation', () => {
  it('denies when it is a forbid (Cedar would skip it and allow), naming it among the reasons', () => {
    const store = new PolicyStore();
    store.add('no-stale-mfa', `forbid (principal, action, resource) when { ${OVERFLOWING} };`);
    const decision = new PolicyEngine({ store, cache: { maxEntries: 0 } }).authorize(adminReads);
    assert.equal(decision.decision, 'deny');
    assert.ok(decision.reasons.includes('no-stale-mfa'), JSON.stringify(decision));
    assert.match(decision.errors.join('\n'), /no-stale-mfa: .*overflow/i);
  });

  it('grants nothing when it is a permit, and leaves the other policies to decide', () => {
    const store = new PolicyStore();
    store.add('odd-permit', `permit (principal, action, resource) when { ${OVERFLOWING} };`);
    const engine = new PolicyEngine({ store, cache: { maxEntries: 0 } });
    assert.equal(engine.authorize(adminReads).decision, 'allow', 'the admin role still allows');
    const nobody = { ...adminReads, principal: { type: 'User' as const, id: 'bob', roles: [] } };
    assert.equal(engine.authorize(nobody).decision, 'deny');
  });

  it('is judged the same way against a candidate set', () => {
    const store = new PolicyStore();
    const engine = new PolicyEngine({ store });
    const candidate = store.withChange({
      put: { id: 'no-stale-mfa', text: `forbid (principal, action, resource) when { ${OVERFLOWING} };` },
    });
    assert.equal(engine.authorizeAgainst(candidate, adminReads).decision, 'deny');
  });
});
