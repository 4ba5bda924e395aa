// Built-in roles as Cedar policies: every role against every action (allow/deny table), default deny,
// forbid-overrides-permit, and the built-in policy texts validating cleanly against the schema.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACTIONS,
  ACTION_IDS,
  BUILT_IN_POLICIES,
  BUILT_IN_ROLE_NAMES,
  PolicyEngine,
  PolicyStore,
  validatePolicies,
} from '../../src/policy/index.ts';
import type { ActionId, AuthzResource, BuiltInRole, ResourceType } from '../../src/policy/index.ts';

const KMS_ADMIN: ActionId[] = [
  'kms.keys.create',
  'kms.keys.read',
  'kms.keys.list',
  'kms.keys.rotate',
  'kms.keys.update',
  'kms.keys.disable',
  'kms.keys.enable',
  'kms.keys.destroy',
  'kms.keys.import',
  'kms.keys.import-wrapping-key',
];
const KMS_USE: ActionId[] = ACTION_IDS.filter((a) => a.startsWith('kms.crypto.'));

/** The role table: what each role may do (on the sample resources below; `endpoint.invoke` is split by env). */
const EXPECTED: Record<BuiltInRole, readonly string[]> = {
  admin: [...ACTION_IDS, 'endpoint.invoke@prod'],
  'security-admin': [
    ...KMS_ADMIN,
    'policy.read',
    'policy.write',
    'identity.read',
    'identity.manage',
    'audit.read',
    'audit.verify',
    'model.quarantine',
    'model.release',
    'model.waive',
    'model.verify',
    'ca.issue',
    'ca.revoke',
    'ca.read',
  ],
  'key-custodian': [...KMS_ADMIN, 'kms.keys.export'],
  'key-user': ['kms.keys.read', ...KMS_USE],
  auditor: [
    'kms.keys.read',
    'kms.keys.list',
    'audit.read',
    'audit.verify',
    'audit.export',
    'policy.read',
    'identity.read',
    'model.read',
    'model.verify',
    'dataset.verify',
    'ca.read',
  ],
  'data-scientist': [
    'dataset.read',
    'dataset.register',
    'dataset.sign',
    'dataset.verify',
    'model.register',
    'model.read',
    'model.scan',
    'model.verify',
  ],
  'ml-engineer': [
    'dataset.read',
    'model.read',
    'model.register',
    'model.sign',
    'model.promote',
    'model.approve',
    'model.deploy',
    'model.quarantine',
    'model.scan',
    'model.verify',
    'dataset.verify',
    'endpoint.invoke',
  ],
  'business-user': ['endpoint.invoke@prod'],
  system: ['kms.keys.rotate', 'kms.keys.update', 'kms.keys.destroy', 'kms.keys.read'],
};

const SAMPLE: Record<ResourceType, AuthzResource> = {
  Key: { type: 'Key', id: 'payments', attrs: { purpose: 'encrypt' } },
  Dataset: { type: 'Dataset', id: 'claims-2025', attrs: { sensitivity: 'confidential' } },
  Model: { type: 'Model', id: 'fraud' },
  ModelVersion: { type: 'ModelVersion', id: 'fraud@7', model: 'fraud', attrs: { stage: 'staging' } },
  Endpoint: { type: 'Endpoint', id: 'fraud-staging', attrs: { environment: 'staging' } },
  AuditLog: { type: 'AuditLog', id: 'main' },
  Policy: { type: 'Policy', id: 'custom-1' },
  Identity: { type: 'Identity', id: 'bob' },
  System: { type: 'System', id: 'warden' },
};
const PROD_ENDPOINT: AuthzResource = { type: 'Endpoint', id: 'fraud-prod', attrs: { environment: 'prod' } };

const engine = new PolicyEngine({ cache: { maxEntries: 0 } });

function allowed(
  role: string,
  action: ActionId,
  resource: AuthzResource,
  type: 'User' | 'ServiceAccount' = 'User',
) {
  return engine.authorize({ principal: { type, id: `${role}-person`, roles: [role] }, action, resource });
}

describe('built-in roles', () => {
  it('every built-in policy validates against the schema without warnings', () => {
    for (const [id, text] of Object.entries(BUILT_IN_POLICIES)) {
      const result = validatePolicies(text);
      assert.equal(result.ok, true, `${id}: ${JSON.stringify(result.diagnostics)}`);
      assert.deepEqual(result.diagnostics, [], id);
    }
  });

  for (const role of BUILT_IN_ROLE_NAMES) {
    it(`${role}: allow/deny table over every action`, () => {
      const expected = new Set(EXPECTED[role]);
      for (const action of ACTION_IDS) {
        for (const type of ACTIONS[action]) {
          const d = allowed(role, action, SAMPLE[type]);
          // Self-service is every principal's, whatever its roles (tested below).
          const allow = expected.has(action) || action === 'identity.self';
          assert.equal(d.decision, allow ? 'allow' : 'deny', `${role} ${action} on ${type}`);
          assert.deepEqual(d.errors, [], `${role} ${action}`);
          if (d.decision === 'allow')
            assert.ok(
              d.reasons.some((r) => r.startsWith(`role.${role}`) || r === 'self-service'),
              String(d.reasons),
            );
        }
      }
      const prod = allowed(role, 'endpoint.invoke', PROD_ENDPOINT);
      assert.equal(
        prod.decision,
        expected.has('endpoint.invoke@prod') ? 'allow' : 'deny',
        `${role} invoke prod`,
      );
    });
  }

  it('data-scientist cannot export raw data or deploy; ml-engineer cannot modify training data', () => {
    assert.equal(allowed('data-scientist', 'dataset.export', SAMPLE.Dataset).decision, 'deny');
    assert.equal(allowed('data-scientist', 'model.deploy', SAMPLE.ModelVersion).decision, 'deny');
    assert.equal(allowed('ml-engineer', 'dataset.modify', SAMPLE.Dataset).decision, 'deny');
    assert.equal(allowed('ml-engineer', 'endpoint.invoke', PROD_ENDPOINT).decision, 'deny');
    assert.equal(allowed('key-custodian', 'kms.crypto.decrypt', SAMPLE.Key).decision, 'deny');
  });

  it('roles apply to service accounts too, and roles combine as a union', () => {
    assert.equal(allowed('system', 'kms.keys.rotate', SAMPLE.Key, 'ServiceAccount').decision, 'allow');
    const both = engine.authorize({
      principal: { type: 'User', id: 'dual', roles: ['data-scientist', 'business-user'] },
      action: 'endpoint.invoke',
      resource: PROD_ENDPOINT,
    });
    assert.equal(both.decision, 'allow');
    assert.deepEqual(both.reasons, ['role.business-user']);
  });

  it('self-service: any principal, with or without roles, manages its own credentials', () => {
    for (const roles of [[], ['intern'], ['business-user']]) {
      for (const type of ['User', 'ServiceAccount'] as const) {
        const d = engine.authorize({
          principal: { type, id: 'someone', roles },
          action: 'identity.self',
          resource: { type: 'Identity', id: 'someone' },
        });
        assert.equal(d.decision, 'allow', `${type} ${JSON.stringify(roles)}`);
        assert.deepEqual(d.reasons, ['self-service']);
      }
    }
  });

  it('default deny: no role, an unknown role, or a group without policies grants nothing', () => {
    for (const roles of [[], ['intern'], ['ADMIN']]) {
      for (const action of ACTION_IDS.filter((a) => a !== 'identity.self')) {
        const type = ACTIONS[action][0];
        const d = engine.authorize({
          principal: { type: 'User', id: 'nobody', roles, groups: ['staff'] },
          action,
          resource: SAMPLE[type],
        });
        assert.equal(d.decision, 'deny', `${JSON.stringify(roles)} ${action}`);
        assert.deepEqual(d.reasons, []);
      }
    }
  });

  it('a store without built-in roles denies even admin', () => {
    const bare = new PolicyEngine({ store: new PolicyStore({ builtInRoles: false }) });
    const d = bare.authorize({
      principal: { type: 'User', id: 'root', roles: ['admin'] },
      action: 'audit.read',
      resource: SAMPLE.AuditLog,
    });
    assert.equal(d.decision, 'deny');
  });

  it('forbid overrides permit, even for admin', () => {
    const store = new PolicyStore();
    const e = new PolicyEngine({ store });
    const request = {
      principal: { type: 'User' as const, id: 'root', roles: ['admin'] },
      action: 'dataset.export' as const,
      resource: { type: 'Dataset' as const, id: 'pii', attrs: { sensitivity: 'restricted' } },
    };
    assert.equal(e.authorize(request).decision, 'allow');
    store.add(
      'no-restricted-export',
      `forbid (principal, action == Warden::Action::"dataset.export", resource is Warden::Dataset)
       when { resource.sensitivity == "restricted" };`,
    );
    const d = e.authorize(request);
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.reasons, ['no-restricted-export']);
    // Still allowed on a non-restricted dataset.
    assert.equal(
      e.authorize({ ...request, resource: { type: 'Dataset', id: 'ok', attrs: { sensitivity: 'internal' } } })
        .decision,
      'allow',
    );
  });

  it('groups are principal parents that custom policies can name', () => {
    const store = new PolicyStore();
    const e = new PolicyEngine({ store });
    store.add(
      'fraud-team-reads',
      `permit (principal in Warden::Group::"fraud-team", action == Warden::Action::"dataset.read", resource);`,
    );
    const req = (groups: string[]) =>
      e.authorize({
        principal: { type: 'User', id: 'carol', groups },
        action: 'dataset.read',
        resource: SAMPLE.Dataset,
      });
    assert.equal(req(['fraud-team']).decision, 'allow');
    assert.equal(req(['other']).decision, 'deny');
  });

  it('a request that does not conform to the schema is denied with an error', () => {
    const missingLabel = engine.authorize({
      principal: { type: 'User', id: 'ds', roles: ['admin'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'unlabelled' },
    });
    assert.equal(missingLabel.decision, 'deny');
    assert.ok(missingLabel.errors.length > 0);
    const wrongType = engine.authorize({
      principal: { type: 'User', id: 'ds', roles: ['admin'] },
      action: 'dataset.read',
      resource: SAMPLE.Key,
    });
    assert.equal(wrongType.decision, 'deny');
    assert.ok(wrongType.errors.length > 0);
    const badIp = engine.authorize({
      principal: { type: 'User', id: 'ds', roles: ['admin'] },
      action: 'audit.read',
      resource: SAMPLE.AuditLog,
      context: { sourceIp: 'not-an-ip' },
    });
    assert.equal(badIp.decision, 'deny');
    assert.match(badIp.errors.join(), /sourceIp/);
  });
});
