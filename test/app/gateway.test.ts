import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { BOOTSTRAP_PRINCIPAL } from '../../src/server/index.ts';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { tempDir } from '../envelope/support.ts';

/**
 * The quickstart's promise: `warden server` on embedded defaults serves the demo credit-scoring model and a demo
 * chat model behind the gateway; an authorised call succeeds, a caller without `endpoint.invoke` is denied, the
 * per-minute limit answers 429 with Retry-After, and PII in a chat answer is redacted.
 */
describe('warden server: the demo model behind the gateway', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-gw-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const dispatcher = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  const admin = readFileSync(warden.tokenPath, 'utf8').trim();
  const identity = warden.identity.current();
  await identity.createUser(BOOTSTRAP_PRINCIPAL, { username: 'dana', roles: ['data-scientist'] });
  const { key: scientist } = await identity.createApiKey(BOOTSTRAP_PRINCIPAL, {
    owner: 'user:dana',
    scopes: ['data-scientist'],
  });
  await identity.createUser(BOOTSTRAP_PRINCIPAL, {
    username: 'bea',
    roles: ['business-user', 'ml-engineer'],
  });
  const { key: caller } = await identity.createApiKey(BOOTSTRAP_PRINCIPAL, {
    owner: 'user:bea',
    scopes: ['ml-engineer'],
  });

  const call = async (path: string, token: string | undefined, body: unknown) => {
    const r = await request(`${warden.url}${path}`, {
      method: 'POST',
      dispatcher,
      headers: {
        'content-type': 'application/json',
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body),
    });
    return {
      status: r.statusCode,
      headers: r.headers,
      body: (await r.body.json()) as Record<string, unknown>,
    };
  };
  const chat = { model: 'demo-chat', messages: [{ role: 'user', content: 'hello' }] };
  const score = {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 5], data: [[85, 0.2, 6, 0, 0.3]] }],
  };

  it('scores with an authorised caller, and refuses the unauthenticated and the unauthorised', async () => {
    const ok = await call('/v2/models/credit-score/infer', caller, score);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(Array.isArray(ok.body.outputs));
    assert.equal((await call('/v2/models/credit-score/infer', undefined, score)).status, 401);
    const denied = await call('/v2/models/credit-score/infer', scientist, score);
    assert.equal(denied.status, 403);
    assert.deepEqual(Object.keys(denied.body), ['error']);
  });

  it('redacts PII in a chat answer', async () => {
    const r = await call('/v1/chat/completions', admin, {
      model: 'demo-chat',
      messages: [{ role: 'user', content: 'My card is 4111 1111 1111 1111, mail me at jo@example.com' }],
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const text = JSON.stringify(r.body);
    assert.equal(text.includes('4111 1111 1111 1111'), false);
    assert.equal(text.includes('jo@example.com'), false);
  });

  it('answers 429 with Retry-After past the per-minute limit', async () => {
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 12 && limited === undefined; i++) {
      const r = await call('/v2/models/credit-score/infer', admin, score);
      if (r.status === 429) limited = r;
      else assert.equal(r.status, 200);
    }
    assert.ok(limited, 'the limit was reached');
    assert.ok(Number(limited.headers['retry-after']) > 0);
  });

  it('names an oversized body 413 payload_too_large, as the standalone gateway does', async () => {
    const big = await call('/v1/chat/completions', admin, {
      ...chat,
      messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }],
    });
    assert.equal(big.status, 413);
    assert.equal((big.body.error as { code?: string } | undefined)?.code, 'payload_too_large');
  });

  it('stops serving a quarantined model within a second', async () => {
    assert.equal((await call('/v1/chat/completions', admin, chat)).status, 200);
    await warden.registry?.registry.quarantine(BOOTSTRAP_PRINCIPAL, 'demo-chat', '1', 'suspected poisoning');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const refused = await call('/v1/chat/completions', admin, chat);
    assert.notEqual(refused.status, 200);
    assert.match(String((refused.body.error as { code?: string } | undefined)?.code), /model_unavailable/);
  });
});
