import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { chatBody, post, startUpstream } from './support.ts';
import type { TestUpstream } from './support.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
const TOKEN = 'alice-gateway-token-0123456789';
const LIMIT = 20;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

async function startRedis(): Promise<{ process: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  for (let i = 0; ; i++) {
    try {
      await client.connect();
      assert.equal(await client.ping(), 'PONG');
      break;
    } catch {
      if (i > 100) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  client.disconnect();
  return { process: child, port };
}

interface Node {
  readonly process: ChildProcess;
  readonly url: string;
}

/** One `warden gateway` process (the real CLI) with the given Redis fail mode. */
async function startNode(
  dir: string,
  name: string,
  redisPort: number,
  failMode: string,
  upstream: string,
): Promise<Node> {
  const config = {
    listen: '127.0.0.1:0',
    insecureHttp: true,
    audit: { file: `${name}-audit.jsonl`, keyFile: 'audit.key' },
    tokensFile: 'tokens.json',
    redis: { url: `redis://127.0.0.1:${redisPort}`, failMode, keyFile: 'limiter.key', prefix: 'test:gw' },
    endpoints: [
      {
        name: 'chat',
        protocol: 'openai',
        upstream: { url: upstream },
        model: 'chat',
        version: '1',
        environment: 'prod',
        limits: { requests: [{ points: LIMIT, durationSeconds: 3600 }] },
      },
    ],
  };
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['src/cli/main.ts', 'gateway', '--config', file, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WARDEN_GATEWAY_CONFIG: '' },
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      try {
        resolve((JSON.parse(stdout) as { url: string }).url);
      } catch {
        // Not the whole document yet.
      }
    });
    child.once('exit', (code) => {
      reject(new Error(`gateway ${name} exited ${code}: ${stderr}`));
    });
  });
  return { process: child, url };
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once('exit', () => {
      resolve();
    });
    child.kill('SIGTERM');
  });
}

describe('limits shared by two gateway processes through a real Redis', () => {
  let redis: { process: ChildProcess; port: number };
  let upstream: TestUpstream;
  let closed: Node;
  let open: Node;

  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'warden-gw-redis-'));
    writeFileSync(path.join(dir, 'audit.key'), randomBytes(32));
    writeFileSync(path.join(dir, 'limiter.key'), randomBytes(32));
    writeFileSync(
      path.join(dir, 'tokens.json'),
      JSON.stringify([
        {
          sha256: createHash('sha256').update(TOKEN).digest('hex'),
          principal: { id: 'service:alice' },
          endpoints: ['chat'],
        },
      ]),
    );
    redis = await startRedis();
    upstream = await startUpstream();
    [closed, open] = await Promise.all([
      startNode(dir, 'closed', redis.port, 'fail-closed', upstream.url),
      startNode(dir, 'open', redis.port, 'fail-open', upstream.url),
    ]);
  });
  after(async () => {
    await Promise.all([stop(closed.process), stop(open.process), stop(redis.process)]);
    await upstream.close();
  });

  it('admits exactly the limit across both nodes under concurrent load', async () => {
    const attempts = Array.from({ length: 2 * LIMIT }, (_, i) =>
      post(`${(i % 2 === 0 ? closed : open).url}/v1/chat/completions`, chatBody('hi'), { token: TOKEN }),
    );
    const results = await Promise.all(attempts);
    const ok = results.filter((r) => r.status === 200).length;
    const limited = results.filter((r) => r.status === 429);
    assert.equal(ok, LIMIT);
    assert.equal(limited.length, LIMIT);
    for (const r of limited) {
      assert.equal(r.json.error?.code, 'rate_limited');
      assert.ok(Number(r.headers['retry-after']) >= 1);
    }
  });

  it('when Redis dies: the fail-closed node refuses with 503, the fail-open node limits in memory', async () => {
    await stop(redis.process);
    const refused = await post(`${closed.url}/v1/chat/completions`, chatBody('hi'), { token: TOKEN });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error?.code, 'limiter_unavailable');
    assert.equal(refused.headers['retry-after'], '1');
    // The fail-open node's insurance limiter has the same windows, counted on this node alone.
    const results: number[] = [];
    for (let i = 0; i < LIMIT + 1; i++) {
      results.push((await post(`${open.url}/v1/chat/completions`, chatBody('hi'), { token: TOKEN })).status);
    }
    assert.deepEqual(results.slice(0, LIMIT), new Array<number>(LIMIT).fill(200));
    assert.equal(results[LIMIT], 429);
  });
});
