// Authorization decision latency, cached and uncached: node bench/policy.ts [iterations]
// Target: the cached path adds at most 1 ms at p99.

import { PolicyEngine, PolicyStore } from '../src/policy/index.ts';
import type { AuthzRequest } from '../src/policy/index.ts';

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

function measure(name: string, engine: PolicyEngine): void {
  for (let i = 0; i < 500; i++) engine.authorize(request(i)); // warm-up (and fills the cache)
  const samples = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const r = request(i);
    const t = performance.now();
    engine.authorize(r);
    samples[i] = performance.now() - t;
  }
  samples.sort();
  const q = (p: number): string => ((samples[Math.min(N - 1, Math.floor(p * N))] ?? 0) * 1000).toFixed(1);
  console.log(`${name.padEnd(9)} n=${N}  p50 ${q(0.5)} µs  p99 ${q(0.99)} µs  max ${q(1)} µs`);
}

measure('uncached', uncached);
measure('cached', cached);
console.log('cache', cached.cacheStats());
