/**
 * The floor of a Node reverse proxy on this machine, measured next to nginx in the same run: what any gateway
 * written on Node's HTTP server and undici pays per request before doing anything of its own. Variants (each
 * its own process, one core, plain HTTP, keep-alive pool of 64 connections to the same upstream):
 *   http+request     node:http server, body collected, undici Pool.request, response body.arrayBuffer()
 *   http+dispatch    node:http server, undici Pool.dispatch with a minimal handler collecting the chunks
 *   fastify+request  Fastify (buffer content parser, logger off), undici Pool.request
 *   fastify+dispatch Fastify, undici Pool.dispatch
 * None parses JSON: that is the floor. CPU per request is the proxy process's utime+stime from /proc during the
 * loaded phase (it moves far less than req/s on a shared machine).
 *
 *   ./node_modules/.bin/node bench/gateway-floor.ts [seconds=5] [connections=32] [rounds=3]
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import {
  listenAnnounce,
  load,
  measure,
  median,
  medianFigures,
  serveUpstream,
  startChild,
  startNginx,
  warmUp,
} from './gateway-support.ts';
import type { Figures } from './gateway-support.ts';

const VARIANTS = ['http+request', 'http+dispatch', 'fastify+request', 'fastify+dispatch'] as const;
type Variant = (typeof VARIANTS)[number];

interface Answer {
  status: number;
  body: Buffer;
}

type Forward = (path: string, body: Buffer) => Promise<Answer>;

function forwarder(pool: Pool, style: 'request' | 'dispatch'): Forward {
  const requestHeaders = (body: Buffer): Record<string, string> => ({
    'content-type': 'application/json',
    'content-length': String(body.length),
  });
  if (style === 'request') {
    return async (path, body) => {
      const res = await pool.request({ method: 'POST', path, body, headers: requestHeaders(body) });
      return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
    };
  }
  return (path, body) =>
    new Promise((resolve, reject) => {
      let status = 0;
      const chunks: Buffer[] = [];
      // undici refuses a handler without `onRequestStart`, even one with nothing to do there.
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart() {
          // Nothing to set up per request.
        },
        onResponseStart(_controller, statusCode) {
          status = statusCode;
        },
        onResponseData(_controller, chunk) {
          chunks.push(chunk);
        },
        onResponseEnd() {
          resolve({ status, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
        },
        onResponseError(_controller, err) {
          reject(err);
        },
      };
      pool.dispatch({ method: 'POST', path, body, headers: requestHeaders(body) }, handler);
    });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

async function serveProxy(variant: Variant, upstreamPort: number): Promise<void> {
  const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, {
    connections: 64,
    pipelining: 1,
    keepAliveTimeout: 30_000,
  });
  const forward = forwarder(pool, variant.endsWith('dispatch') ? 'dispatch' : 'request');
  // A clean exit on SIGTERM, so that a `--cpu-prof` run writes its profile.
  process.once('SIGTERM', () => process.exit(0));
  if (variant.startsWith('http')) {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      readBody(req)
        .then((body) => forward(req.url ?? '/', body))
        .then(
          (answer) => {
            res.writeHead(answer.status, {
              'content-type': 'application/json',
              'content-length': answer.body.length,
            });
            res.end(answer.body);
          },
          () => {
            res.writeHead(502).end();
          },
        );
    });
    server.keepAliveTimeout = 65_000;
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      listenAnnounce(typeof a === 'object' && a !== null ? a.port : 0);
    });
    return;
  }
  const app = Fastify({ logger: false, keepAliveTimeout: 65_000 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
  app.post('/v1/chat/completions', async (request, reply) => {
    const answer = await forward(request.url, request.body as Buffer);
    return reply.code(answer.status).header('content-type', 'application/json').send(answer.body);
  });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  listenAnnounce(Number(new URL(address).port));
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const script = fileURLToPath(import.meta.url);
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-bench-floor-'));
  const children: ChildProcess[] = [];
  try {
    const upstream = await startChild(script, ['upstream']);
    children.push(upstream.child);
    const nginx = await startNginx(dir, upstream.port);
    children.push(nginx.child);
    const targets: { name: string; port: number; pid: number | undefined }[] = [
      { name: 'nginx (1 worker)', port: nginx.port, pid: nginx.child.pid },
    ];
    for (const variant of VARIANTS) {
      const proxy = await startChild(script, ['proxy', variant, String(upstream.port)]);
      children.push(proxy.child);
      targets.push({ name: variant, port: proxy.port, pid: proxy.child.pid });
    }
    console.log(
      `Node proxy floor: ${rounds} interleaved rounds, ${seconds} s per target, ${connections} connections ` +
        `(autocannon). Load average at start: ${load()}\n`,
    );
    for (const t of targets) await warmUp(t.port, connections);
    const results = new Map<string, Figures[]>(targets.map((t) => [t.name, []]));
    for (let r = 1; r <= rounds; r++) {
      for (const t of targets) {
        results.get(t.name)?.push(await measure(t.port, seconds, connections, t.pid, 0));
      }
    }
    console.log(`Medians of ${rounds} rounds (load average at end ${load()}):`);
    console.log('| proxy | req/s | CPU µs/req | loaded p50 ms | loaded p99 ms | errors | vs nginx req/s |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    const nginxRuns = results.get(targets[0]?.name ?? '') ?? [];
    for (const t of targets) {
      const runs = results.get(t.name) ?? [];
      const f = medianFigures(runs);
      const ratio = median(runs.map((x, i) => x.rps / (nginxRuns[i]?.rps ?? NaN)));
      console.log(
        `| ${t.name} | ${f.rps.toFixed(0)} | ${f.cpuUs.toFixed(0)} | ${f.loadedP50} | ${f.loadedP99} | ${f.errors} | ${(ratio * 100).toFixed(1)}% |`,
      );
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
  }
}

const role = process.argv[2];
if (role === 'upstream') serveUpstream();
else if (role === 'proxy') await serveProxy(process.argv[3] as Variant, Number(process.argv[4]));
else await main();
