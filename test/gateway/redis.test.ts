import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import type { RunningWarden } from '../../src/app/index.ts';
import { BOOTSTRAP_PRINCIPAL } from '../../src/server/index.ts';
import { tempDir } from '../envelope/support.ts';
import { GATEWAY_SERVICE_POLICY, chatBody, post, startUpstream } from './support.ts';
import type { TestUpstream } from './support.ts';
import { freePort } from '../support/net.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
const LIMIT = 20;

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

/** One `warden gateway` process (the real CLI) with the given Redis fail mode, member of `warden`. */
async function startNode(
  dir: string,
  name: string,
  redisPort: number,
  failMode: string,
  upstream: string,
  wardenUrl: string,
): Promise<Node> {
  const config = {
    listen: '127.0.0.1:0',
    insecureHttp: true,
    environment: 'prod',
    audit: { file: `${name}-audit.jsonl`, keyFile: 'audit.key' },
    warden: {
      url: wardenUrl,
      caFile: 'warden-ca.pem',
      clientId: 'gateway',
      clientSecretFile: 'gateway.secret',
    },
    redis: { url: `redis://127.0.0.1:${redisPort}`, failMode, keyFile: 'limiter.key', prefix: 'test:gw' },
    endpoints: [
      {
        name: 'chat',
        protocol: 'openai',
        upstream: { url: upstream },
        // Registered, signed and deployed by the server at start-up: servable.
        model: 'credit-score',
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
  const dir = tempDir('warden-gw-redis-');
  let warden: RunningWarden;
  let redis: { process: ChildProcess; port: number };
  let upstream: TestUpstream;
  let closed: Node;
  let open: Node;
  let TOKEN: string;

  before(async () => {
    warden = await startWarden(
      loadConfig({ WARDEN_DATA_DIR: path.join(dir, 'server'), WARDEN_LISTEN: '127.0.0.1:0' }),
      { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
    );
    warden.policy.store.add('gateway-reads', GATEWAY_SERVICE_POLICY);
    const identity = warden.identity.current();
    const { clientSecret } = await identity.createServiceAccount(BOOTSTRAP_PRINCIPAL, {
      clientId: 'gateway',
      authMethod: 'client_secret',
      roles: ['resource-server'],
    });
    writeFileSync(path.join(dir, 'gateway.secret'), clientSecret ?? '', { mode: 0o600 });
    writeFileSync(path.join(dir, 'warden-ca.pem'), readFileSync(warden.caPath));
    await identity.createUser(BOOTSTRAP_PRINCIPAL, { username: 'alice', roles: ['business-user'] });
    TOKEN = (
      await identity.createApiKey(BOOTSTRAP_PRINCIPAL, { owner: 'user:alice', scopes: ['business-user'] })
    ).key;
    writeFileSync(path.join(dir, 'audit.key'), randomBytes(32));
    writeFileSync(path.join(dir, 'limiter.key'), randomBytes(32));
    redis = await startRedis();
    upstream = await startUpstream();
    [closed, open] = await Promise.all([
      startNode(dir, 'closed', redis.port, 'fail-closed', upstream.url, warden.url),
      startNode(dir, 'open', redis.port, 'fail-open', upstream.url, warden.url),
    ]);
  });
  after(async () => {
    await Promise.all([stop(closed.process), stop(open.process), stop(redis.process)]);
    await upstream.close();
    await warden.close();
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
