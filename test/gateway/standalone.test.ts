import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { loadStandaloneConfig, startStandaloneGateway } from '../../src/gateway/index.ts';
import type { RunningGateway } from '../../src/gateway/index.ts';
import { chatBody, post, startUpstream } from './support.ts';
import type { TestUpstream } from './support.ts';

const TOKEN = 'svc-token-abcdefghijklmnop';
const OTHER = 'svc-token-qrstuvwxyz012345';
const sha = (t: string) => createHash('sha256').update(t).digest('hex');

describe('standalone gateway from a configuration file', () => {
  let dir: string;
  let upstream: TestUpstream;
  let gw: RunningGateway;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'warden-gw-cfg-'));
    upstream = await startUpstream();
    writeFileSync(path.join(dir, 'audit.key'), randomBytes(32));
    writeFileSync(
      path.join(dir, 'tokens.json'),
      JSON.stringify([
        { sha256: sha(TOKEN), principal: { id: 'service:app', roles: ['app'] }, endpoints: ['chat'] },
        { sha256: sha(OTHER), principal: { id: 'service:other' }, endpoints: ['elsewhere'] },
      ]),
    );
    writeFileSync(path.join(dir, 'servable.json'), JSON.stringify({ quarantined: [] }));
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        listen: '127.0.0.1:0',
        insecureHttp: true,
        metrics: { listen: '127.0.0.1:0' },
        audit: { file: 'audit.jsonl', keyFile: 'audit.key' },
        tokensFile: 'tokens.json',
        servableFile: 'servable.json',
        outputPolicy: { defaultAction: 'mask' },
        endpoints: [
          {
            name: 'chat',
            protocol: 'openai',
            upstream: { url: upstream.url },
            model: 'chat',
            version: '2',
            environment: 'prod',
          },
        ],
      }),
    );
    const config = loadStandaloneConfig(path.join(dir, 'gateway.json'), {});
    gw = await startStandaloneGateway(config);
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('authenticates by token hash and authorises by the token’s endpoint list', async () => {
    assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('hi'), { token: TOKEN })).status, 200);
    assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('hi'), { token: OTHER })).status, 403);
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, chatBody('hi'), { token: `${TOKEN}x` })).status,
      401,
    );
    const masked = await post(`${gw.url}/v1/chat/completions`, chatBody('mail a.b@example.org'), {
      token: TOKEN,
    });
    assert.match(masked.text, /\*\.\*@\*{7}\.\*{3}/);
    const audit = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8');
    assert.ok(!audit.includes(TOKEN) && !audit.includes('a.b@example.org'));
    assert.match(audit, /"id":"service:app","authMethod":"api-token"/);
  });

  it('serves metrics only on the separate listener', async () => {
    assert.ok(gw.metricsUrl !== undefined);
    const res = await request(gw.metricsUrl);
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /warden_gateway_requests_total\{endpoint="chat",status="200"\}/);
    const other = await request(gw.metricsUrl.replace('/metrics', '/other'));
    assert.equal(other.statusCode, 404);
    await other.body.dump();
    const onMain = await request(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(onMain.statusCode, 404);
    await onMain.body.dump();
    const health = await request(`${gw.url}/health`);
    assert.equal(health.statusCode, 200);
    await health.body.dump();
  });

  it('quarantines a version by editing the servable file', async () => {
    writeFileSync(path.join(dir, 'servable.json'), JSON.stringify({ quarantined: ['chat@2', 'x@1'] }));
    let status = 200;
    for (let i = 0; i < 100 && status === 200; i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = (await post(`${gw.url}/v1/chat/completions`, chatBody('hi'), { token: TOKEN })).status;
    }
    assert.equal(status, 503);
  });

  it('refuses incomplete configurations', () => {
    const write = (cfg: unknown) => {
      const f = path.join(dir, `bad-${Math.random()}.json`);
      writeFileSync(f, JSON.stringify(cfg));
      return f;
    };
    const base = {
      insecureHttp: true,
      audit: { file: 'a', keyFile: 'audit.key' },
      tokensFile: 'tokens.json',
      endpoints: [],
    };
    assert.throws(() => loadStandaloneConfig(write({ ...base, insecureHttp: false }), {}), /tls/);
    assert.throws(() => loadStandaloneConfig(write({ ...base, audit: {} }), {}), /audit/);
    assert.throws(() => loadStandaloneConfig(write(base), {}), /endpoints/);
    assert.throws(() => loadStandaloneConfig(write({ ...base, listen: 'nope' }), {}), /host:port/);
    assert.throws(() => loadStandaloneConfig(write({ ...base, redis: { url: 'redis://x' } }), {}), /keyFile/);
    writeFileSync(path.join(dir, 'short.key'), 'short');
    assert.throws(
      () => loadStandaloneConfig(write({ ...base, audit: { file: 'a', keyFile: 'short.key' } }), {}),
      /32 bytes/,
    );
  });
});
