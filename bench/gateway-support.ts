/**
 * What the gateway benchmarks share: the upstream's answer and the request body, child processes that announce
 * their port, nginx as a plain reverse proxy, CPU time per process from /proc, and one measurement (sequential
 * latency, then autocannon under load with the proxy's CPU time per request).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadavg } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Pool } from 'undici';
import { freePort } from '../test/support/net.ts';

/** The part of autocannon's API used here (the package ships no type declarations). */
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  non2xx: number;
}
export const autocannon = createRequire(import.meta.url)('autocannon') as (options: {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  duration: number;
}) => Promise<CannonResult>;

export const TOKEN = 'bench-token-0123456789abcdef';
export const REPLY = JSON.stringify({
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
export const BODY = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'Does applicant 42 qualify for the standard loan?' }],
  max_tokens: 64,
});
export const PATH = '/v1/chat/completions';

/** The request headers of every measured call, carrying `bearer` (default the stub's `TOKEN`). */
export function headersFor(bearer: string = TOKEN): Record<string, string> {
  return { 'content-type': 'application/json', authorization: `Bearer ${bearer}` };
}

/** A child's first stdout line: the port it listens on. */
export function listenAnnounce(port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

/** The upstream model server: a tiny Node http server answering an OpenAI chat completion. */
export function serveUpstream(): void {
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

/** What a child announced on its stdout: its port, and whatever else it reports (see `announced`). */
export interface Started {
  child: ChildProcess;
  port: number;
  announced: Record<string, unknown>;
}

/**
 * Spawns `command` and waits for the JSON document it prints first on stdout: one line (`listenAnnounce`) or
 * one pretty-printed document (`warden gateway --json`). The port is its `port`, else the port of its `url`.
 */
export function startProcess(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Started> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
  return new Promise((resolve, reject) => {
    let out = '';
    let done = false;
    const parse = (text: string): Record<string, unknown> | undefined => {
      try {
        const value: unknown = JSON.parse(text);
        return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    };
    child.stdout.on('data', (c: Buffer) => {
      if (done) return;
      out += c.toString();
      const announced = (out.includes('\n') ? parse(out.split('\n')[0] ?? '') : undefined) ?? parse(out);
      if (announced === undefined) return;
      const port =
        typeof announced.port === 'number'
          ? announced.port
          : typeof announced.url === 'string'
            ? Number(new URL(announced.url).port)
            : NaN;
      done = true;
      if (Number.isInteger(port) && port > 0) resolve({ child, port, announced });
      else reject(new Error(`${args.join(' ')}: no port in its announcement`));
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`child ${args[0] ?? ''} exited ${code}`));
    });
  });
}

/** Starts `script` with `args` under this Node and waits for the port it announces. */
export function startChild(script: string, args: string[], nodeArgs: string[] = []): Promise<Started> {
  return startProcess(process.execPath, [...nodeArgs, script, ...args]);
}

/** nginx as a plain keep-alive reverse proxy with `workers` worker processes (temporary non-root setup). */
export async function startNginx(
  dir: string,
  upstreamPort: number,
  workers = 1,
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs'])
    mkdirSync(path.join(dir, d), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes ${workers};
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
    listen 127.0.0.1:${port}${workers > 1 ? ' reuseport' : ''};
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
      const res = await pool.request({ method: 'POST', path: PATH, body: BODY });
      await res.body.dump();
      await pool.close();
      return { child, port };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error('nginx did not start');
}

export interface Figures {
  rps: number;
  /** CPU time of the proxy process (and its children) per request under load, µs (NaN for direct). */
  cpuUs: number;
  /** CPU time of a process the proxy depends on (the Warden server) per request under load, µs (else NaN). */
  serverCpuUs: number;
  loadedP50: number;
  loadedP99: number;
  p50: number;
  p99: number;
  errors: number;
}

/** How a target is called and what else is watched while it is measured. */
export interface MeasureOptions {
  /** The bearer credential every request carries. Default: the stub's `TOKEN`. */
  readonly bearer?: string;
  /** A second process whose CPU time per request is reported separately (`serverCpuUs`). */
  readonly serverPid?: number;
}

async function sequentialLatency(
  port: number,
  n: number,
  headers: Record<string, string>,
): Promise<{ p50: number; p99: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
  const times: number[] = [];
  for (let i = 0; i < n + 200; i++) {
    const t = process.hrtime.bigint();
    const res = await pool.request({ method: 'POST', path: PATH, headers, body: BODY });
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

/**
 * utime + stime of a process and its children (nginx: master and workers; the gateway: its cluster workers),
 * in µs; Linux /proc, USER_HZ 100.
 */
export function cpuMicros(pid: number | undefined): number {
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

/** Loads a target for `seconds` without measuring (JIT, connection pools, limiter windows). */
export async function warmUp(port: number, connections: number, seconds = 3, bearer = TOKEN): Promise<void> {
  await autocannon({
    url: `http://127.0.0.1:${port}${PATH}`,
    method: 'POST',
    headers: headersFor(bearer),
    body: BODY,
    connections,
    duration: seconds,
  });
}

/** Sequential latency (skipped when `sequential` is 0), then throughput and CPU per request under load. */
export async function measure(
  port: number,
  seconds: number,
  connections: number,
  pid: number | undefined,
  sequential = 3000,
  options: MeasureOptions = {},
): Promise<Figures> {
  const headers = headersFor(options.bearer);
  const latency =
    sequential > 0 ? await sequentialLatency(port, sequential, headers) : { p50: NaN, p99: NaN };
  const cpuBefore = cpuMicros(pid);
  const serverBefore = cpuMicros(options.serverPid);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}${PATH}`,
    method: 'POST',
    headers,
    body: BODY,
    connections,
    duration: seconds,
  });
  const cpu = cpuMicros(pid) - cpuBefore;
  const serverCpu = cpuMicros(options.serverPid) - serverBefore;
  const total = Math.max(1, result.requests.total);
  return {
    rps: result.requests.average,
    cpuUs: cpu / total,
    serverCpuUs: serverCpu / total,
    loadedP50: result.latency.p50,
    loadedP99: result.latency.p99,
    p50: latency.p50,
    p99: latency.p99,
    errors: result.errors + result.non2xx,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

export function medianFigures(all: Figures[]): Figures {
  const m = (f: (x: Figures) => number): number => median(all.map(f));
  return {
    rps: m((x) => x.rps),
    cpuUs: m((x) => x.cpuUs),
    serverCpuUs: m((x) => x.serverCpuUs),
    loadedP50: m((x) => x.loadedP50),
    loadedP99: m((x) => x.loadedP99),
    p50: m((x) => x.p50),
    p99: m((x) => x.p99),
    errors: all.reduce((n, x) => n + x.errors, 0),
  };
}

export const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
