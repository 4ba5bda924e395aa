import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { estimateTokens, gatewayOf, Limits } from '../../src/gateway/index.ts';
import { chatBody, endpoint, post, startGateway, startUpstream } from './support.ts';
import type { TestGateway, TestUpstream } from './support.ts';

/** Audit records are write-behind: wait until those of the requests made so far are in the file. */
async function settledEvents(gw: TestGateway): Promise<Record<string, unknown>[]> {
  await gatewayOf(gw.app).auditSettled();
  return gw.auditEvents();
}

describe('rate limits and token budgets (in memory)', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;

  before(async () => {
    upstream = await startUpstream({ totalTokens: 10 });
    gw = await startGateway([
      endpoint('chat', upstream.url, {
        limits: {
          requests: [
            { points: 5, durationSeconds: 86_400 },
            { points: 3, durationSeconds: 3600 },
          ],
        },
      }),
      endpoint('budget', upstream.url, {
        limits: { tokens: [{ points: 200, durationSeconds: 3600 }], maxTokens: 50 },
      }),
      endpoint('budget-stream', upstream.url, {
        limits: { tokens: [{ points: 1000, durationSeconds: 3600 }], maxTokens: 50 },
      }),
    ]);
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('applies several windows at once per principal and answers 429 with Retry-After', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('hi'))).status, 200);
    }
    const limited = await post(`${gw.url}/v1/chat/completions`, chatBody('hi'));
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error?.code, 'rate_limited');
    const retry = Number(limited.headers['retry-after']);
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 3600, `Retry-After ${retry}`);
    // Another principal has its own counters.
    assert.equal(
      (await post(`${gw.url}/v1/chat/completions`, chatBody('hi'), { token: 'token-bob' })).status,
      200,
    );
    const events = await settledEvents(gw);
    const ok = events.find((e) => e.outcome === 'success') as { details: { limiter: string } };
    assert.match(ok.details.limiter, /requests:3\/3600s=2,requests:5\/86400s=4/);
    const metrics = await (
      await import('../../src/gateway/index.ts')
    )
      .gatewayOf(gw.app)
      .metrics.registry.metrics();
    assert.match(
      metrics,
      /warden_gateway_limiter_hits_total\{endpoint="chat",protocol="openai",limiter="requests"\} 1/,
    );
  });

  it('refused requests do not consume the other windows', async () => {
    const limits = new Limits();
    const key = limits.keyFor('user:x', 'm');
    const windows = [
      { points: 2, durationSeconds: 60 },
      { points: 3, durationSeconds: 3600 },
    ];
    await limits.admit(key, windows);
    await limits.admit(key, windows);
    await assert.rejects(limits.admit(key, windows), { code: 'rate_limited' });
    await assert.rejects(limits.admit(key, windows), { code: 'rate_limited' });
    // The hour window saw two admitted requests only: one more fits once the minute window allows it.
    const states = await limits.admit(key, [{ points: 3, durationSeconds: 3600 }]);
    assert.equal(states[0]?.remaining, 0);
  });

  it('reserves an estimate before the call and corrects it with the real usage', async () => {
    // Each call reserves ceil(2/4) + 4 + 50 = 55 tokens and is settled at 10 (usage.total_tokens): sequential
    // calls fit while 10k + 55 <= 200, i.e. exactly 15. Without the correction only 3 would.
    assert.equal(estimateTokens(2, 1, 50), 55);
    let admitted = 0;
    for (;;) {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        ...chatBody('hi'),
        model: 'budget',
        max_tokens: 500,
      });
      if (res.status !== 200) {
        assert.equal(res.status, 429);
        assert.equal(res.json.error?.code, 'token_budget_exhausted');
        assert.ok(Number(res.headers['retry-after']) >= 1);
        break;
      }
      admitted++;
      assert.ok(admitted <= 20);
    }
    assert.equal(admitted, 15);
    const last = (await settledEvents(gw)).filter((e) => e.outcome === 'success').at(-1) as {
      details: Record<string, unknown>;
    };
    assert.equal(last.details.tokensReserved, 55);
    assert.equal(last.details.tokensUsed, 10);
    assert.equal(upstream.received.at(-1)?.body.max_tokens, 50);
  });

  it('refuses a request that needs more than the whole budget with 400', async () => {
    const res = await post(
      `${gw.url}/v1/chat/completions`,
      { ...chatBody('x'.repeat(1000)), model: 'budget' },
      { token: 'token-bob' },
    );
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, 'exceeds_token_budget');
  });

  it('reserves best_of completions: each one is generated, even if only n come back', async () => {
    const res = await post(
      `${gw.url}/v1/completions`,
      { model: 'budget', prompt: 'hi', max_tokens: 50, best_of: 5 },
      { token: 'token-bob' },
    );
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, 'exceeds_token_budget');
  });

  it('asks a streamed call for usage and settles the reservation with it', async () => {
    upstream.received.length = 0;
    const res = await post(`${gw.url}/v1/chat/completions`, {
      ...chatBody('hello', { stream: true }),
      model: 'budget-stream',
    });
    assert.equal(res.status, 200);
    assert.deepEqual(upstream.received[0]?.body.stream_options, { include_usage: true });
    const last = (await settledEvents(gw)).at(-1) as { details: Record<string, unknown> };
    assert.equal(last.details.stream, true);
    assert.equal(last.details.tokensUsed, 10);
  });

  it('settles a streamed reservation once, even when the upstream reports usage in several chunks', async () => {
    // Some OpenAI-compatible servers report the running usage in every chunk. Each report used to be settled
    // against the whole reservation again, refunding it once per chunk: the budget grew past its own limit.
    const chunk = (i: number): string =>
      `data: ${JSON.stringify({
        id: 'c',
        object: 'chat.completion.chunk',
        created: 1,
        model: 'm',
        choices: [{ index: 0, delta: { content: 'ab ' }, finish_reason: i === 5 ? 'stop' : null }],
        usage: { prompt_tokens: 5, completion_tokens: i, total_tokens: 5 + i },
      })}\n\n`;
    upstream.script = {
      raw: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let i = 1; i <= 5; i++) res.write(chunk(i));
        res.end('data: [DONE]\n\n');
      },
    };
    try {
      for (let i = 0; i < 2; i++) {
        const res = await post(
          `${gw.url}/v1/chat/completions`,
          { ...chatBody('hello', { stream: true }), model: 'budget-stream' },
          { token: 'token-carol' },
        );
        assert.equal(res.status, 200);
      }
      const events = (await settledEvents(gw)).slice(-2) as { details: Record<string, unknown> }[];
      assert.deepEqual(
        events.map((e) => e.details.tokensUsed),
        [10, 10],
      );
      // 10 tokens per call (the last report), nothing more and nothing less: 1000 - 2 × 10 left.
      const limits = gatewayOf(gw.app).limits;
      const { states } = await limits.reserve(
        limits.keyFor('user:carol', 'budget-stream'),
        [{ points: 1000, durationSeconds: 3600 }],
        1,
      );
      assert.equal(states[0]?.remaining, 1000 - 20 - 1);
    } finally {
      upstream.script = { totalTokens: 10 };
    }
  });
});
