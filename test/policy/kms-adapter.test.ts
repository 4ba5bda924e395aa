// The KMS adapter reproduces BUILT_IN_ROLES decisions for every role and every KMS action, maps resources and
// principals, and carries the request's source address into the context.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUILT_IN_ROLES, BuiltInRoleAuthorizer } from '../../src/kms/authz.ts';
import type { KmsAction } from '../../src/kms/authz.ts';
import type { Principal } from '../../src/kms/types.ts';
import {
  KMS_ACTIONS,
  PolicyEngine,
  PolicyStore,
  cedarKmsAuthorizer,
  declaredPurpose,
  kmsKeyId,
  kmsPrincipal,
} from '../../src/policy/index.ts';

const RESOURCES = ['key:payments', 'key:*', 'key:?', 'random'];

function principal(roles: string[], id = 'user:alice', authMethod = 'bearer'): Principal {
  return { id, roles, authMethod, request: { id: 'req-1', sourceIp: '127.0.0.1' } };
}

describe('cedarKmsAuthorizer', () => {
  const cedar = cedarKmsAuthorizer(new PolicyEngine());
  const builtIn = new BuiltInRoleAuthorizer();

  it('the schema names every KMS action', () => {
    const actions: KmsAction[] = Object.values(BUILT_IN_ROLES).flat();
    for (const a of actions) assert.ok(KMS_ACTIONS.includes(a), a);
  });

  for (const role of [...Object.keys(BUILT_IN_ROLES), 'nobody']) {
    it(`reproduces BUILT_IN_ROLES for ${role} on every action`, () => {
      for (const action of KMS_ACTIONS) {
        for (const resource of RESOURCES) {
          for (const p of [principal([role]), principal([role], 'system:scheduler', 'internal')]) {
            assert.equal(
              cedar.authorize(p, action, resource),
              builtIn.authorize(p, action),
              `${role} ${action} ${resource} ${p.id}`,
            );
          }
        }
      }
    });
  }

  it('reproduces the union semantics of several roles', () => {
    const roleNames = Object.keys(BUILT_IN_ROLES);
    for (let i = 0; i < roleNames.length; i++) {
      for (let j = i + 1; j < roleNames.length; j++) {
        const p = principal([roleNames[i]!, roleNames[j]!]);
        for (const action of KMS_ACTIONS) {
          assert.equal(
            cedar.authorize(p, action, 'key:k'),
            builtIn.authorize(p, action),
            `${p.roles.join('+')} ${action}`,
          );
        }
      }
    }
  });

  it('maps principals and resources', () => {
    assert.equal(kmsPrincipal(principal(['admin'])).type, 'User');
    assert.equal(kmsPrincipal(principal(['system'], 'system:scheduler', 'internal')).type, 'ServiceAccount');
    assert.equal(kmsPrincipal(principal([], 'service:ingest')).type, 'ServiceAccount');
    assert.equal(kmsKeyId('key:payments'), 'payments');
    assert.equal(kmsKeyId('key:*'), '*');
    assert.equal(kmsKeyId('key:'), '*');
    assert.equal(kmsKeyId('random'), '*');
  });

  it('feeds the source address and MFA age into guardrails, and reports denials', () => {
    const denials: string[][] = [];
    let mfaAgeSeconds = 60;
    const engine = new PolicyEngine({
      store: new PolicyStore({ guardrails: { stepUpMfaMaxAgeSeconds: 900 } }),
    });
    const authz = cedarKmsAuthorizer(engine, {
      context: () => ({ mfaAgeSeconds }),
      onDeny: (_p, _a, _r, errors) => denials.push([...errors]),
    });
    const custodian = principal(['key-custodian']);
    assert.equal(authz.authorize(custodian, 'keys.destroy', 'key:old'), true);
    mfaAgeSeconds = 3600;
    assert.equal(authz.authorize(custodian, 'keys.destroy', 'key:old'), false);
    assert.equal(denials.length, 1);
    // The scheduler is a service account: no step-up.
    assert.equal(
      authz.authorize(principal(['system'], 'system:scheduler', 'internal'), 'keys.destroy', 'key:old'),
      true,
    );

    const store = new PolicyStore();
    store.add(
      'kms-from-loopback-only',
      `forbid (principal, action, resource is Warden::Key)
       unless { context has sourceIp && context.sourceIp.isLoopback() };`,
    );
    const fenced = cedarKmsAuthorizer(new PolicyEngine({ store }));
    assert.equal(fenced.authorize(principal(['admin']), 'crypto.encrypt', 'key:k'), true);
    const remote: Principal = { ...principal(['admin']), request: { sourceIp: '203.0.113.7' } };
    assert.equal(fenced.authorize(remote, 'crypto.encrypt', 'key:k'), false);
  });

  it("feeds the purpose the principal's request declared into purpose-bound policies", () => {
    const store = new PolicyStore();
    store.add(
      'training-data-for-training',
      `forbid (principal, action == Warden::Action::"kms.crypto.decrypt", resource == Warden::Key::"training")
       unless { context has purpose && context.purpose == "model-training" };`,
    );
    const authz = cedarKmsAuthorizer(new PolicyEngine({ store }));
    const declaring = (purpose?: string): Principal => ({
      ...principal(['key-user']),
      request: { sourceIp: '127.0.0.1', ...(purpose === undefined ? {} : { purpose }) },
    });
    assert.equal(authz.authorize(declaring('model-training'), 'crypto.decrypt', 'key:training'), true);
    assert.equal(authz.authorize(declaring('marketing'), 'crypto.decrypt', 'key:training'), false);
    assert.equal(authz.authorize(declaring(), 'crypto.decrypt', 'key:training'), false);
    // Other keys are not bound to a purpose.
    assert.equal(authz.authorize(declaring(), 'crypto.decrypt', 'key:other'), true);
  });

  it('takes only well-formed purpose declarations', () => {
    assert.equal(declaredPurpose('model-training'), 'model-training');
    assert.equal(declaredPurpose('fraud.scoring_v2'), 'fraud.scoring_v2');
    for (const bad of [undefined, '', 'Model-Training', '1st', 'a b', 'x'.repeat(65), ['a', 'b']]) {
      assert.equal(declaredPurpose(bad), undefined, String(bad));
    }
    assert.equal(declaredPurpose('x'.repeat(64)), 'x'.repeat(64));
  });
});
