/**
 * Gateway overhead against a local upstream, in one run, each figure next to its baselines:
 *   (1) direct to the upstream (a tiny Node http server answering an OpenAI chat completion),
 *   (2) through nginx as a plain reverse proxy (/usr/sbin/nginx, temporary non-root configuration),
 *   (3) through the Warden gateway with authentication, an async authorisation callback, two request windows,
 *       a token budget, the JSON-lines audit recorder (fsync'd group commit) and PII output filtering on.
 * Each server runs in its own process; plain HTTP everywhere so the comparison is like for like.
 * Throughput and loaded latency: autocannon (programmatic). Unloaded latency: sequential requests timed with
 * hrtime (autocannon's histogram has 1 ms resolution, too coarse for sub-millisecond overheads). CPU per request
 * of the proxy process (nginx worker, gateway) from /proc during the loaded phase: on a shared machine it moves
 * far less than req/s. The three targets are measured in interleaved rounds and medians reported, so a change
 * in the machine's load hits all three alike.
 *
 *   ./node_modules/.bin/node bench/gateway.ts [seconds=5] [connections=32] [rounds=3]
 *   BENCH_AUDIT=off ./node_modules/.bin/node bench/gateway.ts   # same, audit recorder replaced by a no-op
 *   BENCH_PROFILE=<dir> ./node_modules/.bin/node bench/gateway.ts [seconds=10] [connections=32]
 *       # only the gateway, under load, with `--cpu-prof` writing its profile into <dir>
 *   BENCH_FLOOR=1 ./node_modules/.bin/node bench/gateway.ts   # adds the Node proxy floor as a fourth target:
 *       # Fastify + undici dispatch, no pipeline (bench/gateway-floor.ts), in the same interleaved rounds
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsonLinesAuditRecorder } from '../src/audit/index.ts';
// Not the domain face: the bench needs only the core, not the standalone process's modules.
import { ALWAYS_SERVABLE, createGateway } from '../src/gateway/index.ts';
import type { Principal } from '../src/kms/index.ts';
import {
  listenAnnounce,
  load,
  measure,
  median,
  medianFigures,
  serveUpstream,
  startChild,
  startNginx,
  TOKEN,
  warmUp,
} from './gateway-support.ts';
import type { Figures } from './gateway-support.ts';

async function serveGateway(upstreamPort: number, dir: string): Promise<void> {
  const principal: Principal = { id: 'service:bench', roles: ['app'], authMethod: 'api-token' };
  // BENCH_AUDIT=off isolates the cost of the durable audit trail (never a production setting).
  const audit =
    process.env.BENCH_AUDIT === 'off'
      ? { record: () => Promise.resolve(), close: () => Promise.resolve() }
      : await JsonLinesAuditRecorder.open(path.join(dir, 'audit.jsonl'));
  const app = await createGateway({
    endpoints: [
      {
        name: 'bench',
        protocol: 'openai',
        upstream: { url: `http://127.0.0.1:${upstreamPort}`, connections: 64 },
        model: 'bench',
        version: '1',
        environment: 'prod',
        limits: {
          requests: [
            { points: 1_000_000_000, durationSeconds: 3600 },
            { points: 1_000_000_000, durationSeconds: 86_400 },
          ],
          tokens: [{ points: 1_000_000_000_000, durationSeconds: 86_400 }],
          maxTokens: 256,
        },
      },
    ],
    authenticate: (request) => (request.headers.authorization === `Bearer ${TOKEN}` ? principal : undefined),
    authorize: (p, target) => Promise.resolve(p.roles.includes('app') && target.environment === 'prod'),
    servable: ALWAYS_SERVABLE,
    audit,
    auditKey: randomBytes(32),
  });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  // A clean exit on SIGTERM/SIGINT: outstanding audit records are awaited and `--cpu-prof` writes its profile.
  const stop = (): void => {
    void app.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  listenAnnounce(Number(new URL(address).port));
}

const script = fileURLToPath(import.meta.url);

/** Only the gateway under load, profiled: `--cpu-prof` writes a `.cpuprofile` when the process exits. */
async function profile(profileDir: string, seconds: number, connections: number): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-gw-'));
  const upstream = await startChild(script, ['upstream']);
  const gateway = await startChild(
    script,
    ['gateway', String(upstream.port), dir],
    ['--cpu-prof', '--cpu-prof-dir', profileDir],
  );
  try {
    await warmUp(gateway.port, connections);
    const f = await measure(gateway.port, seconds, connections, gateway.child.pid, 0);
    console.log(`profiled ${seconds} s: ${f.rps.toFixed(0)} req/s, ${f.cpuUs.toFixed(0)} µs CPU/req`);
  } finally {
    const exited = new Promise((resolve) => gateway.child.once('exit', resolve));
    gateway.child.kill('SIGTERM');
    await exited;
    upstream.child.kill('SIGTERM');
  }
  console.log(`profile written to ${profileDir}`);
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-gw-'));
  const children: ChildProcess[] = [];
  try {
    const upstream = await startChild(script, ['upstream']);
    children.push(upstream.child);
    const nginx = await startNginx(dir, upstream.port);
    children.push(nginx.child);
    const gateway = await startChild(script, ['gateway', String(upstream.port), dir]);
    children.push(gateway.child);
    const floor =
      process.env.BENCH_FLOOR === '1'
        ? await startChild(path.join(path.dirname(script), 'gateway-floor.ts'), [
            'proxy',
            'fastify+dispatch',
            String(upstream.port),
          ])
        : undefined;
    if (floor !== undefined) children.push(floor.child);

    console.log(
      `Gateway benchmark: ${rounds} interleaved rounds, ${seconds} s per target, ${connections} connections ` +
        '(autocannon); unloaded latency from 3000 sequential requests on one keep-alive connection.',
    );
    console.log(`2-core machine, shared. Load average (1/5/15 min) at start: ${load()}\n`);
    // Warm-up under load (JIT, connection pools, limiter windows) for all three, not measured.
    for (const port of [
      upstream.port,
      nginx.port,
      gateway.port,
      ...(floor === undefined ? [] : [floor.port]),
    ])
      await warmUp(port, connections);
    const runs: { direct: Figures; nginx: Figures; gateway: Figures; floor: Figures | undefined }[] = [];
    const row = (name: string, f: Figures): string =>
      `| ${name} | ${f.rps.toFixed(0)} | ${Number.isNaN(f.cpuUs) ? '–' : f.cpuUs.toFixed(0)} | ${f.p50.toFixed(3)} | ${f.p99.toFixed(3)} | ${f.loadedP50} | ${f.loadedP99} | ${f.errors} |`;
    const header =
      '| target | req/s | proxy CPU µs/req | p50 ms | p99 ms | loaded p50 ms | loaded p99 ms | errors |\n' +
      '|---|---:|---:|---:|---:|---:|---:|---:|';
    for (let r = 1; r <= rounds; r++) {
      const run = {
        direct: await measure(upstream.port, seconds, connections, undefined),
        nginx: await measure(nginx.port, seconds, connections, nginx.child.pid),
        gateway: await measure(gateway.port, seconds, connections, gateway.child.pid),
        floor:
          floor === undefined ? undefined : await measure(floor.port, seconds, connections, floor.child.pid),
      };
      runs.push(run);
      console.log(`Round ${r} (load average ${load()}):`);
      console.log(header);
      console.log(row('direct', run.direct));
      console.log(row('nginx', run.nginx));
      console.log(row('warden gateway', run.gateway));
      if (run.floor !== undefined) console.log(row('node floor (fastify + undici dispatch)', run.floor));
      console.log('');
    }
    const direct = medianFigures(runs.map((x) => x.direct));
    const viaNginx = medianFigures(runs.map((x) => x.nginx));
    const viaGateway = medianFigures(runs.map((x) => x.gateway));
    console.log(`Medians of ${rounds} rounds (load average at end ${load()}):`);
    console.log(header);
    console.log(row('direct', direct));
    console.log(row('nginx', viaNginx));
    console.log(row('warden gateway (auth, authz, limits, audit, filter)', viaGateway));
    const floors = runs.flatMap((x) => (x.floor === undefined ? [] : [x.floor]));
    if (floors.length > 0) console.log(row('node floor (fastify + undici dispatch)', medianFigures(floors)));
    // Added latency per round (gateway minus direct of the same round), then the median.
    const addedP50 = median(runs.map((x) => x.gateway.p50 - x.direct.p50));
    const addedP99 = median(runs.map((x) => x.gateway.p99 - x.direct.p99));
    const ratio = median(runs.map((x) => x.gateway.rps / x.nginx.rps));
    console.log('');
    console.log(
      `added latency p50: ${addedP50.toFixed(3)} ms (target < 1 ms) ${addedP50 < 1 ? 'MET' : 'MISSED'}`,
    );
    console.log(
      `added latency p99: ${addedP99.toFixed(3)} ms (target < 5 ms) ${addedP99 < 5 ? 'MET' : 'MISSED'}`,
    );
    console.log(
      `throughput vs nginx: ${(ratio * 100).toFixed(1)}% (target >= 50%) ${ratio >= 0.5 ? 'MET' : 'MISSED'}; ` +
        `nginx vs direct ${((viaNginx.rps / direct.rps) * 100).toFixed(1)}%, gateway vs direct ${((viaGateway.rps / direct.rps) * 100).toFixed(1)}%`,
    );
  } finally {
    for (const child of children) child.kill('SIGTERM');
  }
}

const role = process.argv[2];
if (role === 'upstream') serveUpstream();
else if (role === 'gateway') await serveGateway(Number(process.argv[3]), process.argv[4] ?? tmpdir());
else if (process.env.BENCH_PROFILE !== undefined && process.env.BENCH_PROFILE !== '')
  await profile(
    path.resolve(process.env.BENCH_PROFILE),
    Number(process.argv[2] ?? 10),
    Number(process.argv[3] ?? 32),
  );
else await main();
