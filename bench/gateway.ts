/**
 * Gateway overhead against a local upstream, in one run, each figure next to its baselines:
 *   (1) direct to the upstream (a tiny Node http server answering an OpenAI chat completion),
 *   (2) through nginx as a plain reverse proxy (/usr/sbin/nginx, temporary non-root configuration),
 *   (3) the gateway core (`createGateway`) with stub authentication (a string compare) and a stub authorisation
 *       callback, two request windows, a token budget, the JSON-lines audit recorder (fsync'd group commit) and
 *       PII output filtering: the pipeline without Warden's identity and Cedar,
 *   (4) the Warden gateway as shipped: `warden gateway --config <file>` (src/cli/main.ts, the flags and malloc
 *       settings of bin/warden.js) joined to a Warden server (`startWarden` on a temporary data directory, dev
 *       defaults, its own process). The caller presents an OAuth2 access token (JWT, client_credentials) of a
 *       service account with the `business-user` role; the gateway verifies it against the server's JWKS,
 *       checks its status by introspection (cached 2 s), decides `endpoint.invoke` with Cedar over the server's
 *       policies, gates on the registry's servable answer (`demo-chat@1`, deployed by the server at start-up),
 *       applies the same limits, audits to its JSON-lines file, runs the extraction monitor (every detector, a
 *       monitor-only policy) and filters output.
 * Every target gets the same request bytes (the JWT as bearer; the stub compares it as a string). Each server
 * runs in its own process; plain HTTP to the proxies so the comparison is like for like (the gateway reaches its
 * server over HTTPS, as deployed). Throughput and loaded latency: autocannon (programmatic). Unloaded latency:
 * sequential requests timed with hrtime (autocannon's histogram has 1 ms resolution, too coarse for
 * sub-millisecond overheads). CPU per request of the proxy process (nginx worker, gateway) from /proc during the
 * loaded phase: on a shared machine it moves far less than req/s; for the shipped gateway the Warden server's
 * CPU per request is reported separately. The targets are measured in interleaved rounds and medians reported,
 * so a change in the machine's load hits all alike. The MET/MISSED lines judge the shipped gateway.
 *
 *   ./node_modules/.bin/node bench/gateway.ts [seconds=5] [connections=32] [rounds=3]
 *   BENCH_AUDIT=off ./node_modules/.bin/node bench/gateway.ts   # the core's audit recorder replaced by a no-op
 *   BENCH_PROFILE=<dir> ./node_modules/.bin/node bench/gateway.ts [seconds=10] [connections=32]
 *       # only the shipped gateway (BENCH_PROFILE_TARGET=core: only the core), under load, with `--cpu-prof`
 *       # writing its profile into <dir>
 *   BENCH_FLOOR=1 ./node_modules/.bin/node bench/gateway.ts   # adds the Node proxy floor as a fifth target:
 *       # Fastify + undici dispatch, no pipeline (bench/gateway-floor.ts), in the same interleaved rounds
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../src/app/index.ts';
import { JsonLinesAuditRecorder } from '../src/audit/index.ts';
// Not the domain face: the bench needs only the core, not the standalone process's modules.
import { ALWAYS_SERVABLE, createGateway } from '../src/gateway/index.ts';
import type { Principal } from '../src/kms/index.ts';
import {
  BODY,
  headersFor,
  listenAnnounce,
  load,
  measure,
  median,
  medianFigures,
  PATH,
  serveUpstream,
  startChild,
  startNginx,
  startProcess,
  TOKEN,
  warmUp,
} from './gateway-support.ts';
import type { Figures, Started } from './gateway-support.ts';
import { GATEWAY_SERVICE_POLICY } from '../test/gateway/support.ts';

/** The same limits for the core and the shipped gateway: present and checked, never reached. */
const LIMITS = {
  requests: [
    { points: 1_000_000_000, durationSeconds: 3600 },
    { points: 1_000_000_000, durationSeconds: 86_400 },
  ],
  tokens: [{ points: 1_000_000_000_000, durationSeconds: 86_400 }],
  maxTokens: 256,
};

async function serveGateway(upstreamPort: number, dir: string): Promise<void> {
  const principal: Principal = { id: 'service:bench', roles: ['app'], authMethod: 'api-token' };
  const expected = `Bearer ${process.env.BENCH_BEARER ?? TOKEN}`;
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
        limits: LIMITS,
      },
    ],
    authenticate: (request) => (request.headers.authorization === expected ? principal : undefined),
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

/**
 * The Warden server child: `startWarden` on `dir/server` with dev defaults (request logs on, written to a file),
 * set up through its HTTP API with the bootstrap token as an administrator would: the gateway's policy and
 * service account (its secret into `dir/gateway.secret`, mode 0600), and a caller's service account with the
 * `business-user` role, whose client_credentials access token it announces with its address.
 */
async function serveWarden(dir: string): Promise<void> {
  const logFd = openSync(path.join(dir, 'server-requests.log'), 'a');
  const requestLog = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writeSync(logFd, chunk);
      callback();
    },
  });
  const warden = await startWarden(
    loadConfig({}, { dataDir: path.join(dir, 'server'), listen: '127.0.0.1:0' }),
    { requestLog },
  );
  const agent = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  const bootstrap = readFileSync(warden.tokenPath, 'utf8').trim();
  const call = async (
    method: 'POST' | 'PUT',
    url: string,
    body: string,
    authorization: string,
    contentType = 'application/json',
  ): Promise<Record<string, unknown>> => {
    const res = await request(`${warden.url}${url}`, {
      method,
      dispatcher: agent,
      headers: { authorization, 'content-type': contentType },
      body,
    });
    const answer = (await res.body.json()) as Record<string, unknown>;
    if (res.statusCode !== 200 && res.statusCode !== 201) {
      throw new Error(`${method} ${url}: HTTP ${res.statusCode} ${JSON.stringify(answer.error ?? null)}`);
    }
    return answer;
  };
  const admin = `Bearer ${bootstrap}`;
  const serviceAccount = async (clientId: string, roles: string[]): Promise<string> => {
    const { clientSecret } = await call(
      'POST',
      '/v1/identities/service-accounts',
      JSON.stringify({ clientId, authMethod: 'client_secret', roles }),
      admin,
    );
    if (typeof clientSecret !== 'string') throw new Error(`no client secret for ${clientId}`);
    return clientSecret;
  };
  await call('PUT', '/v1/policies/gateway-reads', JSON.stringify({ text: GATEWAY_SERVICE_POLICY }), admin);
  writeFileSync(
    path.join(dir, 'gateway.secret'),
    `${await serviceAccount('gateway', ['resource-server'])}\n`,
    {
      mode: 0o600,
    },
  );
  const appSecret = await serviceAccount('bench-app', ['business-user']);
  const { access_token: accessToken } = await call(
    'POST',
    '/oauth/token',
    'grant_type=client_credentials',
    `Basic ${Buffer.from(`bench-app:${appSecret}`).toString('base64')}`,
    'application/x-www-form-urlencoded',
  );
  if (typeof accessToken !== 'string') throw new Error('client_credentials grant: no access token');
  await agent.close();
  const stop = (): void => {
    void warden.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(
    `${JSON.stringify({ port: Number(new URL(warden.url).port), url: warden.url, caPath: warden.caPath, accessToken })}\n`,
  );
}

const script = fileURLToPath(import.meta.url);
const cli = path.join(path.dirname(script), '..', 'src', 'cli', 'main.ts');

interface Shipped {
  server: Started;
  gateway: Started;
  /** The caller's access token (JWT). */
  bearer: string;
}

/**
 * The Warden server, then `warden gateway --config` joined to it (as bin/warden.js starts the CLI: `--expose-gc`
 * and its malloc settings), one OpenAI endpoint to the bench upstream; checks that the gateway answers 200 with
 * the caller's token and 401 without before anything is measured.
 */
async function startShipped(
  dir: string,
  upstreamPort: number,
  children: ChildProcess[],
  nodeArgs: string[] = [],
): Promise<Shipped> {
  const server = await startChild(script, ['warden', dir]);
  children.push(server.child);
  const { url, caPath, accessToken } = server.announced;
  if (typeof url !== 'string' || typeof caPath !== 'string' || typeof accessToken !== 'string') {
    throw new Error('the Warden server child announced no url, CA or access token');
  }
  writeFileSync(path.join(dir, 'audit.key'), randomBytes(32), { mode: 0o600 });
  const config = path.join(dir, 'gateway.json');
  writeFileSync(
    config,
    JSON.stringify({
      listen: '127.0.0.1:0',
      insecureHttp: true,
      environment: 'prod',
      audit: { file: 'gateway-audit.jsonl', keyFile: 'audit.key' },
      warden: { url, caFile: caPath, clientId: 'gateway', clientSecretFile: 'gateway.secret' },
      // Every detector runs, with a monitor-only policy: one caller sending one prompt thousands of times a
      // second is a burst of near-duplicates, which the default policy would throttle, then answer 401 step-up.
      extraction: { policy: { rules: [{ action: 'alert' }] } },
      endpoints: [
        {
          name: 'bench',
          protocol: 'openai',
          upstream: { url: `http://127.0.0.1:${upstreamPort}`, connections: 64 },
          // The demo chat model the server registers, signs and deploys at start-up: servable.
          model: 'demo-chat',
          version: '1',
          environment: 'prod',
          limits: LIMITS,
        },
      ],
    }),
  );
  const gateway = await startProcess(
    process.execPath,
    ['--expose-gc', ...nodeArgs, cli, 'gateway', '--config', config, '--json'],
    { ...process.env, MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '268435456' },
  );
  children.push(gateway.child);
  if (gateway.announced.connected !== true) throw new Error('warden gateway could not reach its server');
  const status = async (headers: Record<string, string>): Promise<number> => {
    const res = await request(`http://127.0.0.1:${gateway.port}${PATH}`, {
      method: 'POST',
      headers,
      body: BODY,
    });
    await res.body.dump();
    return res.statusCode;
  };
  const withToken = await status(headersFor(accessToken));
  const without = await status({ 'content-type': 'application/json' });
  if (withToken !== 200 || without !== 401) {
    throw new Error(
      `warden gateway answered ${withToken} with the token, ${without} without (want 200, 401)`,
    );
  }
  console.log(`warden gateway checked: 200 with the service account's access token, 401 without`);
  return { server, gateway, bearer: accessToken };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Only one gateway under load, profiled: `--cpu-prof` writes a `.cpuprofile` when the process exits. */
async function profile(profileDir: string, seconds: number, connections: number): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-gw-'));
  const children: ChildProcess[] = [];
  const prof = ['--cpu-prof', '--cpu-prof-dir', profileDir];
  try {
    const upstream = await startChild(script, ['upstream']);
    children.push(upstream.child);
    let target: Started;
    let bearer = TOKEN;
    if (process.env.BENCH_PROFILE_TARGET === 'core') {
      target = await startChild(script, ['gateway', String(upstream.port), dir], prof);
      children.push(target.child);
    } else {
      const shipped = await startShipped(dir, upstream.port, children, prof);
      target = shipped.gateway;
      bearer = shipped.bearer;
    }
    await warmUp(target.port, connections, 3, bearer);
    const f = await measure(target.port, seconds, connections, target.child.pid, 0, { bearer });
    console.log(`profiled ${seconds} s: ${f.rps.toFixed(0)} req/s, ${f.cpuUs.toFixed(0)} µs CPU/req`);
    // The profiled process first, so that it exits cleanly while its server and upstream still answer.
    await stopChild(target.child);
  } finally {
    for (const child of children.reverse()) await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`profile written to ${profileDir}`);
}

const cell = (x: number, digits = 0): string => (Number.isNaN(x) ? '–' : x.toFixed(digits));

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-gw-'));
  mkdirSync(path.join(dir, 'core'));
  const children: ChildProcess[] = [];
  try {
    const upstream = await startChild(script, ['upstream']);
    children.push(upstream.child);
    const shipped = await startShipped(dir, upstream.port, children);
    const { bearer } = shipped;
    const nginx = await startNginx(path.join(dir, 'nginx'), upstream.port);
    children.push(nginx.child);
    const core = await startProcess(
      process.execPath,
      [script, 'gateway', String(upstream.port), path.join(dir, 'core')],
      { ...process.env, BENCH_BEARER: bearer },
    );
    children.push(core.child);
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
    console.log(
      'Every target gets the same request (bearer: a Warden access token, JWT). While the shipped gateway is ' +
        'measured its Warden server process is also running: its CPU per request is the "server CPU" column ' +
        '(polls and cached introspection only, ~0 in steady state).',
    );
    console.log(`2-core machine, shared. Load average (1/5/15 min) at start: ${load()}\n`);
    // Warm-up under load (JIT, connection pools, limiter windows, token status cache) for all, not measured.
    for (const port of [
      upstream.port,
      nginx.port,
      core.port,
      shipped.gateway.port,
      ...(floor === undefined ? [] : [floor.port]),
    ])
      await warmUp(port, connections, 3, bearer);
    const runs: {
      direct: Figures;
      nginx: Figures;
      core: Figures;
      shipped: Figures;
      floor: Figures | undefined;
    }[] = [];
    const row = (name: string, f: Figures): string =>
      `| ${name} | ${f.rps.toFixed(0)} | ${cell(f.cpuUs)} | ${cell(f.serverCpuUs, 1)} | ${f.p50.toFixed(3)} | ${f.p99.toFixed(3)} | ${f.loadedP50} | ${f.loadedP99} | ${f.errors} |`;
    const header =
      '| target | req/s | proxy CPU µs/req | server CPU µs/req | p50 ms | p99 ms | loaded p50 ms | loaded p99 ms | errors |\n' +
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|';
    const names = {
      direct: 'direct',
      nginx: 'nginx',
      core: 'gateway core (stub auth/authz)',
      shipped: 'warden gateway (as shipped)',
      floor: 'node floor (fastify + undici dispatch)',
    };
    const options = { bearer };
    for (let r = 1; r <= rounds; r++) {
      const run = {
        direct: await measure(upstream.port, seconds, connections, undefined, 3000, options),
        nginx: await measure(nginx.port, seconds, connections, nginx.child.pid, 3000, options),
        core: await measure(core.port, seconds, connections, core.child.pid, 3000, options),
        shipped: await measure(shipped.gateway.port, seconds, connections, shipped.gateway.child.pid, 3000, {
          bearer,
          serverPid: shipped.server.child.pid,
        }),
        floor:
          floor === undefined
            ? undefined
            : await measure(floor.port, seconds, connections, floor.child.pid, 3000, options),
      };
      runs.push(run);
      console.log(`Round ${r} (load average ${load()}):`);
      console.log(header);
      console.log(row(names.direct, run.direct));
      console.log(row(names.nginx, run.nginx));
      console.log(row(names.core, run.core));
      console.log(row(names.shipped, run.shipped));
      if (run.floor !== undefined) console.log(row(names.floor, run.floor));
      console.log('');
    }
    const direct = medianFigures(runs.map((x) => x.direct));
    const viaNginx = medianFigures(runs.map((x) => x.nginx));
    const viaCore = medianFigures(runs.map((x) => x.core));
    const viaShipped = medianFigures(runs.map((x) => x.shipped));
    console.log(`Medians of ${rounds} rounds (load average at end ${load()}):`);
    console.log(header);
    console.log(row(names.direct, direct));
    console.log(row(names.nginx, viaNginx));
    console.log(row(`${names.core}: limits, audit, filter`, viaCore));
    console.log(row(`${names.shipped}: JWT, Cedar, limits, audit, filter`, viaShipped));
    const floors = runs.flatMap((x) => (x.floor === undefined ? [] : [x.floor]));
    if (floors.length > 0) console.log(row(names.floor, medianFigures(floors)));
    // Added latency per round (gateway minus direct of the same round), then the median.
    const added = (g: (x: (typeof runs)[number]) => Figures) => ({
      p50: median(runs.map((x) => g(x).p50 - x.direct.p50)),
      p99: median(runs.map((x) => g(x).p99 - x.direct.p99)),
      ratio: median(runs.map((x) => g(x).rps / x.nginx.rps)),
    });
    const s = added((x) => x.shipped);
    const c = added((x) => x.core);
    console.log('');
    console.log('Judged: the warden gateway as shipped.');
    console.log(`added latency p50: ${s.p50.toFixed(3)} ms (target < 1 ms) ${s.p50 < 1 ? 'MET' : 'MISSED'}`);
    console.log(`added latency p99: ${s.p99.toFixed(3)} ms (target < 5 ms) ${s.p99 < 5 ? 'MET' : 'MISSED'}`);
    console.log(
      `throughput vs nginx: ${(s.ratio * 100).toFixed(1)}% (target >= 50%) ${s.ratio >= 0.5 ? 'MET' : 'MISSED'}; ` +
        `nginx vs direct ${((viaNginx.rps / direct.rps) * 100).toFixed(1)}%, shipped gateway vs direct ${((viaShipped.rps / direct.rps) * 100).toFixed(1)}%`,
    );
    console.log(
      `For comparison, the gateway core (stub auth/authz): added p50 ${c.p50.toFixed(3)} ms, p99 ${c.p99.toFixed(3)} ms, ` +
        `throughput vs nginx ${(c.ratio * 100).toFixed(1)}%; the shipped gateway costs ` +
        `${(viaShipped.cpuUs - viaCore.cpuUs).toFixed(0)} µs CPU/req more than the core.`,
    );
  } finally {
    for (const child of children.reverse()) await stopChild(child);
    // The audit files grow by hundreds of MB per run on a shared machine.
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === 'upstream') serveUpstream();
else if (role === 'gateway') await serveGateway(Number(process.argv[3]), process.argv[4] ?? tmpdir());
else if (role === 'warden') await serveWarden(process.argv[3] ?? tmpdir());
else if (process.env.BENCH_PROFILE !== undefined && process.env.BENCH_PROFILE !== '')
  await profile(
    path.resolve(process.env.BENCH_PROFILE),
    Number(process.argv[2] ?? 10),
    Number(process.argv[3] ?? 32),
  );
else await main();
