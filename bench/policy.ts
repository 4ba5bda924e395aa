// Authorization decision latency, cached and uncached: npm run bench:policy [-- iterations]
// Target: the cached path adds at most 1 ms at p99. Baseline measured in the same run: one bare Cedar WASM call
// (`statefulIsAuthorized`, a one-rule policy set, no entities, no schema), the floor of asking Cedar anything.

import { PolicyEngine, PolicyStore } from '../src/policy/index.ts';
import type { AuthzRequest } from '../src/policy/index.ts';
import { preparsePolicySet, statefulIsAuthorized } from '../src/policy/cedar.ts';

const N = Number(process.argv[2] ?? 5000);
const store = new PolicyStore({
  guardrails: { restrictedDataBusinessHours: true, corporateCidrs: ['10.0.0.0/8', '192.168.0.0/16'] },
});
const cached = new PolicyEngine({ store });
const uncached = new PolicyEngine({ store, cache: { maxEntries: 0 } });

function request(i: number): AuthzRequest {
  return {
    principal: {
      type: 'User',
      id: `user-${i % 50}`,
      roles: ['data-scientist', 'business-user'],
      groups: ['staff'],
    },
    action: i % 2 === 0 ? 'dataset.read' : 'endpoint.invoke',
    resource:
      i % 2 === 0
        ? {
            type: 'Dataset',
            id: `ds-${i % 20}`,
            attrs: { sensitivity: i % 3 === 0 ? 'restricted' : 'internal' },
          }
        : { type: 'Endpoint', id: `ep-${i % 20}`, attrs: { environment: 'prod' } },
    context: { sourceIp: `10.0.${i % 4}.1`, authMethod: 'oidc' },
  };
}

function measure(name: string, decide: (r: AuthzRequest) => unknown): number {
  for (let i = 0; i < 500; i++) decide(request(i)); // warm-up (and fills the cache)
  const samples = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const r = request(i);
    const t = performance.now();
    decide(r);
    samples[i] = performance.now() - t;
  }
  samples.sort();
  const at = (p: number): number => (samples[Math.min(N - 1, Math.floor(p * N))] ?? 0) * 1000;
  console.log(
    `${name.padEnd(9)} n=${N}  p50 ${at(0.5).toFixed(1)} µs  p99 ${at(0.99).toFixed(1)} µs  max ${at(1).toFixed(1)} µs`,
  );
  return at(0.5);
}

const floorSet = preparsePolicySet('bench-floor', { staticPolicies: 'permit(principal, action, resource);' });
if (floorSet.type === 'failure') throw new Error('baseline policy set did not parse');
const floor = measure('cedar', (r) =>
  statefulIsAuthorized({
    principal: { type: 'Warden::User', id: r.principal.id },
    action: { type: 'Warden::Action', id: r.action },
    resource: { type: `Warden::${r.resource.type}`, id: r.resource.id },
    context: {},
    entities: [],
    preparsedPolicySetId: 'bench-floor',
  }),
);
const slow = measure('uncached', (r) => uncached.authorize(r));
const fast = measure('cached', (r) => cached.authorize(r));
console.log('cache', cached.cacheStats());
console.log(
  `p50 / bare Cedar call: uncached ${(slow / floor).toFixed(2)}x, cached ${(fast / floor).toFixed(3)}x`,
);
