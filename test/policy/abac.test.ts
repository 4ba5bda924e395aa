// The documented ABAC guardrails: restricted data only in business hours, production endpoints only from corporate
// ranges, step-up MFA for key destruction. Each is a forbid, so it overrides even admin, and fails closed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GuardrailConfigError,
  PolicyEngine,
  PolicyStore,
  clockAt,
  guardrailPolicies,
} from '../../src/policy/index.ts';
import type { AuthzContext, GuardrailOptions } from '../../src/policy/index.ts';

const store = new PolicyStore({
  guardrails: {
    restrictedDataBusinessHours: true,
    corporateCidrs: ['10.0.0.0/8', '192.0.2.0/24', '2001:db8::/32'],
    stepUpMfaMaxAgeSeconds: 900,
  },
});
const engine = new PolicyEngine({ store });

const at = (day: number, hh: number, mm = 0) => ({ minuteOfDay: hh * 60 + mm, dayOfWeek: day });

describe('ABAC: restricted datasets only Mon–Fri 08:00–18:00', () => {
  const read = (sensitivity: string, context: AuthzContext) =>
    engine.authorize({
      principal: { type: 'User', id: 'dana', roles: ['data-scientist'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'ds', attrs: { sensitivity } },
      context,
    });

  it('inside business hours: allowed', () => {
    for (const now of [at(1, 8, 0), at(3, 12, 30), at(5, 17, 59)]) {
      assert.equal(read('restricted', { now }).decision, 'allow', JSON.stringify(now));
    }
  });

  it('outside business hours or at the weekend: denied by the guardrail', () => {
    for (const now of [at(1, 7, 59), at(2, 18, 0), at(4, 23, 0), at(6, 12, 0), at(7, 10, 0)]) {
      const d = read('restricted', { now });
      assert.equal(d.decision, 'deny', JSON.stringify(now));
      assert.deepEqual(d.reasons, ['guardrail.restricted-data-business-hours']);
    }
  });

  it('non-restricted data is unaffected at night', () => {
    assert.equal(read('confidential', { now: at(6, 3) }).decision, 'allow');
  });

  it('overrides admin too', () => {
    const d = engine.authorize({
      principal: { type: 'User', id: 'root', roles: ['admin'] },
      action: 'dataset.export',
      resource: { type: 'Dataset', id: 'ds', attrs: { sensitivity: 'restricted' } },
      context: { now: at(7, 2) },
    });
    assert.equal(d.decision, 'deny');
  });

  it('derives the clock from a Date in the engine time zone', () => {
    // 2026-03-02 is a Monday. 07:30 UTC is 08:30 in Paris (CET, UTC+1).
    const date = new Date('2026-03-02T07:30:00Z');
    assert.deepEqual(clockAt(date, 'UTC'), at(1, 7, 30));
    assert.deepEqual(clockAt(date, 'Europe/Paris'), at(1, 8, 30));
    assert.equal(read('restricted', { now: date }).decision, 'deny');
    const paris = new PolicyEngine({ store, timeZone: 'Europe/Paris', clock: () => date });
    const d = paris.authorize({
      principal: { type: 'User', id: 'dana', roles: ['data-scientist'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'ds', attrs: { sensitivity: 'restricted' } },
    });
    assert.equal(d.decision, 'allow', JSON.stringify(d));
  });
});

describe('ABAC: production endpoints only from corporate ranges', () => {
  const invoke = (environment: string, context: AuthzContext) =>
    engine.authorize({
      principal: { type: 'User', id: 'bea', roles: ['business-user', 'ml-engineer'] },
      action: 'endpoint.invoke',
      resource: { type: 'Endpoint', id: `ep-${environment}`, attrs: { environment } },
      context,
    });

  it('inside a corporate range: allowed (IPv4 and IPv6)', () => {
    for (const sourceIp of ['10.1.2.3', '192.0.2.200', '2001:db8::42']) {
      assert.equal(invoke('prod', { sourceIp }).decision, 'allow', sourceIp);
    }
  });

  it('outside the ranges, or without a source address: denied', () => {
    for (const context of [
      { sourceIp: '203.0.113.9' },
      { sourceIp: '11.0.0.1' },
      { sourceIp: '2001:db9::1' },
      {},
    ]) {
      const d = invoke('prod', context);
      assert.equal(d.decision, 'deny', JSON.stringify(context));
      assert.deepEqual(d.reasons, ['guardrail.prod-endpoints-corporate-network']);
    }
  });

  it('non-production endpoints are not fenced', () => {
    assert.equal(invoke('staging', { sourceIp: '203.0.113.9' }).decision, 'allow');
  });

  it('rejects malformed CIDRs at configuration time', () => {
    for (const cidr of ['10.0.0.0', '10.0.0.0/33', 'evil")) || true || ip("1/8', '::/129']) {
      assert.throws(() => guardrailPolicies({ corporateCidrs: [cidr] }), GuardrailConfigError, cidr);
    }
  });
});

describe('ABAC: guardrail settings of the wrong type (a JSON configuration file)', () => {
  it('refuses them instead of leaving the guardrail off or failing on a TypeError', () => {
    const wrong: unknown[] = [
      { reauthenticateOnNewNetwork: 'true' },
      { reauthenticateOnNewNetwork: 1 },
      { restrictedDataBusinessHours: 'true' },
      { restrictedDataBusinessHours: null },
      { corporateCidrs: '10.0.0.0/8' },
      { corporateCidrs: [10] },
      { stepUpMfaMaxAgeSeconds: '900' },
    ];
    for (const options of wrong) {
      assert.throws(
        () => guardrailPolicies(options as GuardrailOptions),
        GuardrailConfigError,
        JSON.stringify(options),
      );
    }
    assert.deepEqual(guardrailPolicies({ reauthenticateOnNewNetwork: false }), {});
  });
});

describe('ABAC: step-up MFA for key destruction', () => {
  const destroy = (
    context: AuthzContext,
    type: 'User' | 'ServiceAccount' = 'User',
    roles = ['key-custodian'],
  ) =>
    engine.authorize({
      principal: { type, id: 'kc', roles },
      action: 'kms.keys.destroy',
      resource: { type: 'Key', id: 'old-key' },
      context,
    });

  it('fresh MFA (< 900 s): allowed', () => {
    assert.equal(destroy({ mfaAgeSeconds: 0 }).decision, 'allow');
    assert.equal(destroy({ mfaAgeSeconds: 899 }).decision, 'allow');
  });

  it('stale or missing MFA: denied', () => {
    for (const context of [{ mfaAgeSeconds: 900 }, { mfaAgeSeconds: 86_400 }, {}]) {
      const d = destroy(context);
      assert.equal(d.decision, 'deny', JSON.stringify(context));
      assert.deepEqual(d.reasons, ['guardrail.key-destroy-step-up-mfa']);
    }
  });

  it('applies to users only: the scheduler (a service account) destroys without MFA', () => {
    assert.equal(destroy({}, 'ServiceAccount', ['system']).decision, 'allow');
  });

  it('other key administration needs no step-up', () => {
    const d = engine.authorize({
      principal: { type: 'User', id: 'kc', roles: ['key-custodian'] },
      action: 'kms.keys.rotate',
      resource: { type: 'Key', id: 'old-key' },
    });
    assert.equal(d.decision, 'allow');
  });
});
