// The decision cache: hits return the same decisions, every input is in the key, a policy change (version bump)
// invalidates, TTL and LRU bounds hold, time is bucketed by minute, and MFA-carrying requests bypass it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ACTIONS, ACTION_IDS, DecisionCache, PolicyEngine, PolicyStore } from '../../src/policy/index.ts';
import type { AuthzRequest, ResourceType } from '../../src/policy/index.ts';

const RESOURCES: Record<ResourceType, AuthzRequest['resource']> = {
  Key: { type: 'Key', id: 'k' },
  Dataset: { type: 'Dataset', id: 'd', attrs: { sensitivity: 'restricted' } },
  Model: { type: 'Model', id: 'm' },
  ModelVersion: { type: 'ModelVersion', id: 'm@1', attrs: { stage: 'prod' } },
  Endpoint: { type: 'Endpoint', id: 'e', attrs: { environment: 'prod' } },
  AuditLog: { type: 'AuditLog', id: 'a' },
  Policy: { type: 'Policy', id: 'p' },
  Identity: { type: 'Identity', id: 'i' },
  System: { type: 'System', id: 'warden' },
};

function requests(): AuthzRequest[] {
  const out: AuthzRequest[] = [];
  for (const role of ['admin', 'data-scientist', 'business-user', 'auditor', 'nobody']) {
    for (const action of ACTION_IDS) {
      const type = ACTIONS[action][0];
      out.push({
        principal: { type: 'User', id: `u-${role}`, roles: [role] },
        action,
        resource: RESOURCES[type],
        context: { now: { minuteOfDay: 600, dayOfWeek: 6 }, sourceIp: '10.0.0.1' },
      });
    }
  }
  return out;
}

describe('decision cache', () => {
  it('cached decisions equal uncached ones', () => {
    const store = new PolicyStore({
      guardrails: { restrictedDataBusinessHours: true, corporateCidrs: ['10.0.0.0/8'] },
    });
    const cached = new PolicyEngine({ store });
    const uncached = new PolicyEngine({ store, cache: { maxEntries: 0 } });
    const all = requests();
    for (const r of all) cached.authorize(r);
    const before = cached.cacheStats();
    for (const r of all) {
      const hit = cached.authorize(r);
      const fresh = uncached.authorize(r);
      assert.equal(hit.cached, true);
      assert.equal(fresh.cached, false);
      assert.deepEqual({ ...hit, cached: false }, fresh, `${r.principal.id} ${r.action}`);
    }
    assert.equal(cached.cacheStats().hits - before.hits, all.length);
  });

  it('every input that can change a decision is part of the key', () => {
    const engine = new PolicyEngine({
      store: new PolicyStore({
        guardrails: { restrictedDataBusinessHours: true, corporateCidrs: ['10.0.0.0/8'] },
      }),
    });
    const base: AuthzRequest = {
      principal: { type: 'User', id: 'u', roles: ['business-user'] },
      action: 'endpoint.invoke',
      resource: { type: 'Endpoint', id: 'e', attrs: { environment: 'prod' } },
      context: { sourceIp: '10.0.0.1' },
    };
    assert.equal(engine.authorize(base).decision, 'allow');
    assert.equal(engine.authorize(base).cached, true);
    // Roles, resource attrs and context each flip the decision despite the warm entry.
    assert.equal(engine.authorize({ ...base, principal: { ...base.principal, roles: [] } }).decision, 'deny');
    assert.equal(
      engine.authorize({ ...base, resource: { type: 'Endpoint', id: 'e', attrs: { environment: 'dev' } } })
        .decision,
      'deny',
    );
    assert.equal(engine.authorize({ ...base, context: { sourceIp: '8.8.8.8' } }).decision, 'deny');
    // Role order does not matter (canonical key).
    const two = { ...base, principal: { ...base.principal, roles: ['a', 'business-user'] } };
    engine.authorize(two);
    assert.equal(
      engine.authorize({ ...base, principal: { ...base.principal, roles: ['business-user', 'a'] } }).cached,
      true,
    );
  });

  it('a policy change bumps the version and invalidates every entry', () => {
    const store = new PolicyStore();
    const engine = new PolicyEngine({ store });
    const r: AuthzRequest = {
      principal: { type: 'User', id: 'ds', roles: ['data-scientist'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'd', attrs: { sensitivity: 'internal' } },
    };
    const first = engine.authorize(r);
    assert.equal(first.decision, 'allow');
    assert.equal(engine.authorize(r).cached, true);
    const v = store.add('freeze', 'forbid (principal, action == Warden::Action::"dataset.read", resource);');
    assert.equal(v, first.version + 1);
    const after = engine.authorize(r);
    assert.equal(after.cached, false);
    assert.equal(after.decision, 'deny');
    assert.equal(after.version, v);
    assert.equal(engine.authorize(r).cached, true);
    assert.equal(store.remove('freeze'), true);
    const restored = engine.authorize(r);
    assert.equal(restored.decision, 'allow');
    assert.equal(restored.cached, false);
    assert.equal(restored.version, v + 1);
  });

  it('time is bucketed by minute: the engine clock moving to the next minute misses', () => {
    let t = Date.parse('2026-03-02T17:59:10Z'); // Monday
    const engine = new PolicyEngine({
      store: new PolicyStore({ guardrails: { restrictedDataBusinessHours: true } }),
      clock: () => new Date(t),
    });
    const r: AuthzRequest = {
      principal: { type: 'User', id: 'ds', roles: ['data-scientist'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'd', attrs: { sensitivity: 'restricted' } },
    };
    assert.equal(engine.authorize(r).decision, 'allow');
    t += 30_000; // 17:59:40, same minute
    assert.equal(engine.authorize(r).cached, true);
    t += 30_000; // 18:00:10
    const d = engine.authorize(r);
    assert.equal(d.cached, false);
    assert.equal(d.decision, 'deny');
  });

  it('requests carrying mfaAgeSeconds bypass the cache', () => {
    const engine = new PolicyEngine({
      store: new PolicyStore({ guardrails: { stepUpMfaMaxAgeSeconds: 900 } }),
    });
    const r = (mfaAgeSeconds: number): AuthzRequest => ({
      principal: { type: 'User', id: 'kc', roles: ['key-custodian'] },
      action: 'kms.keys.destroy',
      resource: { type: 'Key', id: 'k' },
      context: { mfaAgeSeconds },
    });
    assert.equal(engine.authorize(r(10)).decision, 'allow');
    assert.equal(engine.authorize(r(10)).cached, false);
    assert.equal(engine.authorize(r(901)).decision, 'deny');
    assert.equal(engine.cacheStats().bypasses, 3);
    assert.equal(engine.cacheStats().size, 0);
  });

  it('decisions with errors are not cached', () => {
    const engine = new PolicyEngine();
    const r: AuthzRequest = {
      principal: { type: 'User', id: 'x', roles: ['admin'] },
      action: 'dataset.read',
      resource: { type: 'Dataset', id: 'unlabelled' },
    };
    assert.equal(engine.authorize(r).decision, 'deny');
    assert.equal(engine.authorize(r).cached, false);
  });

  it('TTL and LRU bounds', () => {
    let now = 0;
    const cache = new DecisionCache<number>({ maxEntries: 3, ttlMs: 1000, now: () => now });
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('c', 3);
    assert.equal(cache.get('a'), 1); // a is now most recent
    cache.set('d', 4); // evicts b
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 1);
    assert.equal(cache.stats().size, 3);
    assert.equal(cache.stats().evictions, 1);
    now = 999;
    assert.equal(cache.get('c'), 3);
    now = 1000;
    assert.equal(cache.get('c'), undefined);
    assert.equal(cache.get('d'), undefined);
    const off = new DecisionCache<number>({ maxEntries: 0 });
    off.set('x', 1);
    assert.equal(off.get('x'), undefined);
  });

  it('the engine cache respects maxEntries', () => {
    const engine = new PolicyEngine({ cache: { maxEntries: 5 } });
    for (let i = 0; i < 50; i++) {
      engine.authorize({
        principal: { type: 'User', id: `u${i}`, roles: ['auditor'] },
        action: 'audit.read',
        resource: { type: 'AuditLog', id: 'a' },
      });
    }
    assert.equal(engine.cacheStats().size, 5);
  });
});
