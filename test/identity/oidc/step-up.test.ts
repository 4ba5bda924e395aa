import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { mfaAgeSeconds, oidcMfaAt, stepUpRequired } from '../../../src/identity/step-up.ts';
import { PolicyEngine, PolicyStore } from '../../../src/policy/index.ts';

const NOW = 1_800_000_000_000;

describe('step-up', () => {
  it('requires MFA, fresh enough, and not from the future', () => {
    const opts = { maxMfaAgeSeconds: 900, now: NOW };
    assert.deepEqual(stepUpRequired({}, opts), {
      required: true,
      reason: 'no_mfa',
      outsideKnownNetworks: false,
    });
    assert.deepEqual(stepUpRequired({ mfaAt: NOW - 899_999 }, opts), { required: false, mfaAgeSeconds: 899 });
    assert.equal(stepUpRequired({ mfaAt: NOW - 900_000 }, opts).required, true);
    assert.equal(stepUpRequired({ mfaAt: NOW + 30_000 }, opts).required, false);
    assert.deepEqual(stepUpRequired({ mfaAt: NOW + 61_000 }, opts), {
      required: true,
      reason: 'mfa_time_invalid',
      outsideKnownNetworks: false,
    });
    assert.throws(() => stepUpRequired({}, { maxMfaAgeSeconds: 0 }));
  });

  it('is stricter outside known networks, never looser', () => {
    const opts = { maxMfaAgeSeconds: 900, knownNetworks: ['10.0.0.0/8', '2001:db8::/32'], now: NOW };
    const at = NOW - 600_000;
    assert.equal(stepUpRequired({ mfaAt: at, request: { sourceIp: '10.1.2.3' } }, opts).required, false);
    assert.equal(stepUpRequired({ mfaAt: at, request: { sourceIp: '2001:db8::1' } }, opts).required, false);
    assert.deepEqual(stepUpRequired({ mfaAt: at, request: { sourceIp: '192.0.2.1' } }, opts), {
      required: true,
      reason: 'mfa_stale',
      outsideKnownNetworks: true,
    });
    assert.equal(stepUpRequired({ mfaAt: at }, opts).required, true);
    assert.equal(
      stepUpRequired({ mfaAt: NOW - 200_000, request: { sourceIp: '192.0.2.1' } }, opts).required,
      false,
    );
    assert.throws(() => stepUpRequired({}, { ...opts, knownNetworks: ['10.0.0.0/33'] }));
    assert.throws(() => stepUpRequired({}, { ...opts, outsideMaxMfaAgeSeconds: 901 }));
  });

  it('agrees with the Cedar step-up guardrail: never "not required" where Cedar would deny', () => {
    const engine = new PolicyEngine({
      store: new PolicyStore({ guardrails: { stepUpMfaMaxAgeSeconds: 900 } }),
    });
    fc.assert(
      fc.property(fc.option(fc.integer({ min: -120_000, max: 2_000_000 }), { nil: undefined }), (ago) => {
        const principal = ago === undefined ? {} : { mfaAt: NOW - ago };
        const decision = stepUpRequired(principal, { maxMfaAgeSeconds: 900, now: NOW });
        const age = mfaAgeSeconds(principal, NOW);
        const cedar = engine.authorize({
          principal: { type: 'User', id: 'u', roles: ['key-custodian'] },
          action: 'kms.keys.destroy',
          resource: { type: 'Key', id: 'k' },
          context: age === undefined ? {} : { mfaAgeSeconds: age },
        });
        assert.equal(decision.required, cedar.decision === 'deny');
      }),
      { numRuns: 200 },
    );
  });

  it('derives mfaAt from an OIDC login only with MFA in amr and a known auth_time', () => {
    assert.equal(oidcMfaAt({ amr: ['pwd', 'mfa'], authTime: 5 }), 5);
    assert.equal(oidcMfaAt({ amr: ['hwk'], authTime: 5 }), 5);
    assert.equal(oidcMfaAt({ amr: ['pwd'], authTime: 5 }), undefined);
    assert.equal(oidcMfaAt({ amr: ['mfa'] }), undefined);
    assert.equal(oidcMfaAt({ amr: ['custom-2fa'], authTime: 5 }, ['custom-2fa']), 5);
  });
});
