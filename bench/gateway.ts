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
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { JsonLinesAuditRecorder } from '../src/audit/index.ts';
// Not the domain face: the bench needs only the core, not the standalone process's modules.
import { ALWAYS_SERVABLE, createGateway } from '../src/gateway/index.ts';
import type { Principal } from '../src/kms/index.ts';

/** The part of autocannon's API used here (the package ships no type declarations). */
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  non2xx: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  duration: number;
}) => Promise<CannonResult>;

const TOKEN = 'bench-token-0123456789abcdef';
const REPLY = JSON.stringify({
  id: 'c1',
  object: 'chat.completion',
  created: 1,
  model: 'bench',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: 'The applicant qualifies. Please send the signed form by Friday.',
      },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 14, total_tokens: 26 },
});
const BODY = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Does applicant 42 qualify for the standard loan?' }],
  max_tokens: 64,
});

function listenAnnounce(port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

function serveUpstream(): void {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(REPLY) });
      res.end(REPLY);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    listenAnnounce(typeof a === 'object' && a !== null ? a.port : 0);
  });
}

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

function startChild(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line !== undefined)
        resolve({ child, port: (JSON.parse(line) as { port: number }).port });
    });
    child.once('exit', (code) => {
      reject(new Error(`child ${args[0] ?? ''} exited ${code}`));
    });
  });
}

async function startNginx(dir: string, upstreamPort: number): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs'])
    mkdirSync(path.join(dir, d), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream model { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  const child = spawn('/usr/sbin/nginx', ['-p', dir, '-e', `${dir}/logs/error.log`, '-c', conf], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    try {
      const pool = new Pool(`http://127.0.0.1:${port}`);
      const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', body: BODY });
      await res.body.dump();
      await pool.close();
      return { child, port };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error('nginx did not start');
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => {
        resolve(typeof a === 'object' && a !== null ? a.port : 0);
      });
    });
  });
}

interface Figures {
  rps: number;
  /** CPU time of the proxy process per request under load, µs (NaN for direct). */
  cpuUs: number;
  loadedP50: number;
  loadedP99: number;
  p50: number;
  p99: number;
  errors: number;
}

const headers = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };

async function sequentialLatency(port: number, n: number): Promise<{ p50: number; p99: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
  const times: number[] = [];
  for (let i = 0; i < n + 200; i++) {
    const t = process.hrtime.bigint();
    const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body: BODY });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    // The first 200 warm the JIT and the connection.
    if (i >= 200) times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  await pool.close();
  times.sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

/** utime + stime of a process and its children (nginx: master and worker), in µs; Linux /proc, USER_HZ 100. */
function cpuMicros(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  let total = 0;
  const pids = [pid];
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) {
      if (c !== '') pids.push(Number(c));
    }
    for (const p of pids) {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * 10_000;
    }
  } catch {
    return NaN;
  }
  return total;
}

async function measure(
  port: number,
  seconds: number,
  connections: number,
  pid: number | undefined,
): Promise<Figures> {
  const latency = await sequentialLatency(port, 3000);
  const cpuBefore = cpuMicros(pid);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/v1/chat/completions`,
    method: 'POST',
    headers,
    body: BODY,
    connections,
    duration: seconds,
  });
  const cpu = cpuMicros(pid) - cpuBefore;
  return {
    rps: result.requests.average,
    cpuUs: cpu / Math.max(1, result.requests.total),
    loadedP50: result.latency.p50,
    loadedP99: result.latency.p99,
    p50: latency.p50,
    p99: latency.p99,
    errors: result.errors + result.non2xx,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

function medianFigures(all: Figures[]): Figures {
  const m = (f: (x: Figures) => number): number => median(all.map(f));
  return {
    rps: m((x) => x.rps),
    cpuUs: m((x) => x.cpuUs),
    loadedP50: m((x) => x.loadedP50),
    loadedP99: m((x) => x.loadedP99),
    p50: m((x) => x.p50),
    p99: m((x) => x.p99),
    errors: all.reduce((n, x) => n + x.errors, 0),
  };
}

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-gw-'));
  const children: ChildProcess[] = [];
  try {
    const upstream = await startChild(['upstream']);
    children.push(upstream.child);
    const nginx = await startNginx(dir, upstream.port);
    children.push(nginx.child);
    const gateway = await startChild(['gateway', String(upstream.port), dir]);
    children.push(gateway.child);

    console.log(
      `Gateway benchmark: ${rounds} interleaved rounds, ${seconds} s per target, ${connections} connections ` +
        '(autocannon); unloaded latency from 3000 sequential requests on one keep-alive connection.',
    );
    console.log(`2-core machine, shared. Load average (1/5/15 min) at start: ${load()}\n`);
    // Warm-up under load (JIT, connection pools, limiter windows) for all three, not measured.
    for (const port of [upstream.port, nginx.port, gateway.port]) {
      await autocannon({
        url: `http://127.0.0.1:${port}/v1/chat/completions`,
        method: 'POST',
        headers,
        body: BODY,
        connections,
        duration: 3,
      });
    }
    const runs: { direct: Figures; nginx: Figures; gateway: Figures }[] = [];
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
      };
      runs.push(run);
      console.log(`Round ${r} (load average ${load()}):`);
      console.log(header);
      console.log(row('direct', run.direct));
      console.log(row('nginx', run.nginx));
      console.log(row('warden gateway', run.gateway));
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
else await main();
