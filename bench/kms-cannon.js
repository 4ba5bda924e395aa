// Load generator of the KMS HTTP benchmark: autocannon (its API) in a process of its own, spawned by
// bench/kms.ts, so that it competes with the server only for the machine's cores, not for its event loop.
// Configuration comes from the environment (the token is never an argument): BENCH_URL, BENCH_TOKEN (optional),
// BENCH_CA (PEM file), BENCH_BODY_FILE, BENCH_CONNECTIONS, BENCH_SECONDS, BENCH_WARMUP_SECONDS.
// Prints one JSON line: requests/s, p50/p99 latency (autocannon's 1 ms resolution), errors.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const env = process.env;
const connections = Number(env.BENCH_CONNECTIONS ?? 1);
const options = {
  url: env.BENCH_URL,
  method: 'POST',
  connections,
  pipelining: 1,
  headers: {
    'content-type': 'application/json',
    ...(env.BENCH_TOKEN === undefined ? {} : { authorization: `Bearer ${env.BENCH_TOKEN}` }),
  },
  body: readFileSync(env.BENCH_BODY_FILE ?? '', 'utf8'),
  tlsOptions: { ca: readFileSync(env.BENCH_CA ?? ''), minVersion: 'TLSv1.3' },
  timeout: 10,
  // Sampling every 100 ms (default 1 s) so that a run stops within 0.1 s of its duration.
  sampleInt: 100,
};

const warmup = Number(env.BENCH_WARMUP_SECONDS ?? 0);
if (warmup > 0) await autocannon({ ...options, duration: warmup });
const result = await autocannon({ ...options, duration: Number(env.BENCH_SECONDS ?? 2) });
process.stdout.write(
  `${JSON.stringify({
    perSecond: result['2xx'] / result.duration,
    ops: result['2xx'],
    seconds: result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    wholeMs: true,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodeStats: result.statusCodeStats,
  })}\n`,
);
