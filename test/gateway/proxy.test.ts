import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Agent, request } from 'undici';
import { ensureDevTls } from '../../src/app/index.ts';
import { JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import { gatewayOf, startDemoModel } from '../../src/gateway/index.ts';
import type { ExtractionObserver } from '../../src/gateway/index.ts';
import {
  chatBody,
  endpoint,
  post,
  sseData,
  startGateway,
  startUpstream,
  streamedContent,
} from './support.ts';
import type { TestGateway, TestUpstream } from './support.ts';

/** Audit records are write-behind: wait until those of the requests made so far are in the file. */
async function settledEvents(gw: TestGateway): Promise<Record<string, unknown>[]> {
  await gatewayOf(gw.app).auditSettled();
  return gw.auditEvents();
}

const EMAIL = 'jane.doe@example.com';
const CARD = '4111111111111111';

describe('gateway proxy against a real upstream', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;

  before(async () => {
    upstream = await startUpstream();
    gw = await startGateway([
      endpoint('chat', upstream.url, { upstreamModel: 'served-chat' }),
      endpoint('gen', upstream.url, { idempotent: false }),
      endpoint('emb', upstream.url),
      endpoint('scorer', upstream.url, { protocol: 'kserve-v2', model: 'credit', version: '3' }),
      endpoint('tabular', upstream.url, { protocol: 'predict' }),
      endpoint('raw', upstream.url, { outputPolicy: false }),
      endpoint('masked', upstream.url, {
        outputPolicy: {
          actions: { CREDIT_CARD: 'mask', EMAIL: 'pseudonymize' },
          pseudonymKey: Buffer.alloc(32, 7),
        },
      }),
      endpoint('strict', upstream.url, { outputPolicy: { actions: { CREDIT_CARD: 'block' } } }),
      endpoint('lenient', upstream.url, { allow: { logprobs: true, topLogprobs: true, logitBias: true } }),
      endpoint('small', upstream.url, { limits: { maxBodyBytes: 200, maxPromptChars: 20, maxTokens: 50 } }),
    ]);
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('proxies chat completions, rewrites the model name and never forwards the caller credential', async () => {
    upstream.received.length = 0;
    const res = await post(`${gw.url}/v1/chat/completions`, chatBody('hello there'));
    assert.equal(res.status, 200);
    const choices = res.json.choices as { message: { content: string } }[];
    assert.equal(choices[0]?.message.content, 'hello there');
    const seen = upstream.received.at(0);
    assert.ok(seen);
    assert.equal(seen.body.model, 'served-chat');
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(typeof seen.headers['x-request-id'], 'string');
    assert.equal(seen.body.max_tokens, 4096, 'max_tokens is set to the cap when absent');
  });

  it('proxies completions, embeddings, KServe v2 and JSON predict to the matching upstream paths', async () => {
    upstream.received.length = 0;
    const c = await post(`${gw.url}/v1/completions`, { model: 'gen', prompt: 'say hi' });
    assert.equal(c.status, 200);
    assert.equal((c.json.choices as { text: string }[])[0]?.text, 'say hi');
    const e = await post(`${gw.url}/v1/embeddings`, { model: 'emb', input: 'vector me' });
    assert.equal(e.status, 200);
    const k = await post(`${gw.url}/v2/models/scorer/infer`, {
      inputs: [{ name: 'features', shape: [1, 2], datatype: 'FP32', data: [1, 2] }],
    });
    assert.equal(k.status, 200);
    assert.deepEqual((k.json.outputs as { data: unknown[] }[])[0]?.data, ['approve']);
    const p = await post(`${gw.url}/v1/models/tabular:predict`, { instances: [[1, 2]] });
    assert.equal(p.status, 200);
    assert.deepEqual(p.json.predictions, [0.25]);
    assert.deepEqual(
      upstream.received.map((r) => r.path),
      ['/v1/completions', '/v1/embeddings', '/v2/models/scorer/infer', '/v1/models/tabular:predict'],
    );
  });

  it('refuses unauthenticated (401), unauthorised (403) and unknown endpoints (404)', async () => {
    const none = await post(`${gw.url}/v1/chat/completions`, chatBody('x'), { token: null });
    assert.equal(none.status, 401);
    assert.equal(none.json.error?.code, 'unauthenticated');
    const wrong = await post(`${gw.url}/v1/chat/completions`, chatBody('x'), { token: 'nope' });
    assert.equal(wrong.status, 401);
    const eve = await post(`${gw.url}/v1/chat/completions`, chatBody('x'), { token: 'token-eve' });
    assert.equal(eve.status, 403);
    assert.equal(eve.json.error?.code, 'forbidden');
    const unknown = await post(`${gw.url}/v1/chat/completions`, { ...chatBody('x'), model: 'nope' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error?.code, 'endpoint_not_found');
    // A KServe endpoint is not reachable through the predict route and vice versa.
    const crossed = await post(`${gw.url}/v1/models/scorer:predict`, { instances: [[1]] });
    assert.equal(crossed.status, 404);
  });

  it('input checks: malformed JSON, schema, refused parameters, prompt and body limits, max_tokens cap', async () => {
    const bad = await post(`${gw.url}/v1/chat/completions`, '{"model": "chat", "messages": [');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error?.code, 'invalid_request');
    const schema = await post(`${gw.url}/v1/chat/completions`, { model: 'chat', messages: [], extra: 1 });
    assert.equal(schema.status, 400);
    const textBody = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer token-alice', 'content-type': 'text/plain' },
      body: 'hello',
    });
    assert.equal(textBody.statusCode, 415);
    await textBody.body.dump();
    for (const extra of [{ logprobs: true }, { top_logprobs: 5 }, { logit_bias: { '42': 10 } }]) {
      const refused = await post(`${gw.url}/v1/chat/completions`, chatBody('x', extra));
      assert.equal(refused.status, 400);
      assert.equal(refused.json.error?.code, 'parameter_not_allowed');
      const allowed = await post(`${gw.url}/v1/chat/completions`, {
        ...chatBody('x', extra),
        model: 'lenient',
      });
      assert.equal(allowed.status, 200);
    }
    const neutral = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { logprobs: false }));
    assert.equal(neutral.status, 200);
    const long = await post(`${gw.url}/v1/chat/completions`, { ...chatBody('x'.repeat(21)), model: 'small' });
    assert.equal(long.status, 400);
    assert.equal(long.json.error?.code, 'prompt_too_long');
    // Text moved out of the messages into what the model also reads counts too.
    const stuffed = await post(`${gw.url}/v1/chat/completions`, {
      ...chatBody('x'),
      model: 'small',
      tools: [{ type: 'function', function: { name: 'f', description: 'y'.repeat(30) } }],
    });
    assert.equal(stuffed.status, 400);
    assert.equal(stuffed.json.error?.code, 'prompt_too_long');
    const big = await post(`${gw.url}/v1/chat/completions`, {
      ...chatBody('short'),
      model: 'small',
      user: 'u'.repeat(200),
    });
    assert.equal(big.status, 413);
    assert.equal(big.json.error?.code, 'payload_too_large');
    upstream.received.length = 0;
    const capped = await post(`${gw.url}/v1/chat/completions`, {
      ...chatBody('hi'),
      model: 'small',
      max_tokens: 9999,
    });
    assert.equal(capped.status, 200);
    assert.equal(upstream.received[0]?.body.max_tokens, 50);
    // Both fields at once: an upstream may obey either, so neither passes uncapped.
    const both = await post(`${gw.url}/v1/chat/completions`, {
      ...chatBody('hi'),
      model: 'small',
      max_completion_tokens: 10,
      max_tokens: 9999,
    });
    assert.equal(both.status, 200);
    const sent = upstream.received[1]?.body;
    assert.equal(sent?.max_completion_tokens, 10);
    assert.equal(sent.max_tokens, 50);
    const tokenIds = await post(`${gw.url}/v1/completions`, { model: 'gen', prompt: [[1, 2, 3]] });
    assert.equal(tokenIds.status, 400);
  });

  it('filters PII out of non-streamed output per policy: redact, mask, pseudonymise, block, or off', async () => {
    const text = `Contact ${EMAIL} and card ${CARD} today.`;
    const redacted = await post(`${gw.url}/v1/chat/completions`, chatBody(text));
    const content = (redacted.json.choices as { message: { content: string } }[])[0]?.message.content;
    assert.equal(content, 'Contact [REDACTED:EMAIL] and card [REDACTED:CREDIT_CARD] today.');
    const masked = await post(`${gw.url}/v1/chat/completions`, { ...chatBody(text), model: 'masked' });
    const m = (masked.json.choices as { message: { content: string } }[])[0]?.message.content ?? '';
    assert.match(m, /^Contact <EMAIL:[0-9a-f]{8}> and card \*{12}1111 today\.$/);
    const blocked = await post(`${gw.url}/v1/chat/completions`, { ...chatBody(text), model: 'strict' });
    assert.equal(blocked.status, 422);
    assert.equal(blocked.json.error?.code, 'output_blocked');
    assert.ok(!blocked.text.includes(CARD));
    const raw = await post(`${gw.url}/v1/chat/completions`, { ...chatBody(text), model: 'raw' });
    assert.equal((raw.json.choices as { message: { content: string } }[])[0]?.message.content, text);
    const completion = await post(`${gw.url}/v1/completions`, { model: 'gen', prompt: text });
    assert.ok(!completion.text.includes(EMAIL));
  });

  it('streams SSE and catches PII split across chunks while releasing text early', async () => {
    const text = `Hello, your e-mail is ${EMAIL} and your card ${CARD} is on file.`;
    // One or two characters per event: every value is split over many chunks.
    upstream.script = { pieces: () => text.match(/[\s\S]{1,2}/g) ?? [] };
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, chatBody('ignored', { stream: true }));
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      assert.ok(!res.text.includes(EMAIL) && !res.text.includes('jane') && !res.text.includes('1111 is'));
      const out = streamedContent(res.text);
      assert.equal(
        out,
        'Hello, your e-mail is [REDACTED:EMAIL] and your card [REDACTED:CREDIT_CARD] is on file.',
      );
      const events = sseData(res.text);
      assert.equal(events.at(-1), '[DONE]');
      // Text is released word by word as soon as it cannot be part of a finding, long before the stream ends.
      const released = events
        .filter((e) => e !== '[DONE]')
        .map((e) => (e as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '')
        .filter((c) => c !== '');
      assert.deepEqual(released.slice(0, 4), ['Hello,', ' ', 'your ', 'e-mail ']);
      assert.ok(released.length >= 5);
      const comp = await post(`${gw.url}/v1/completions`, { model: 'gen', prompt: 'x', stream: true });
      assert.equal(
        streamedContent(comp.text),
        'Hello, your e-mail is [REDACTED:EMAIL] and your card [REDACTED:CREDIT_CARD] is on file.',
      );
    } finally {
      upstream.script = {};
    }
  });

  it('a blocked entity in a stream ends it with an error event and no [DONE]', async () => {
    upstream.script = { pieces: () => ['Your card is ', '4111 1111', ' 1111 1111', ' thanks'] };
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, {
        ...chatBody('x', { stream: true }),
        model: 'strict',
      });
      const events = sseData(res.text);
      assert.ok(!events.includes('[DONE]'));
      assert.deepEqual((events.at(-1) as { error: { code: string } }).error.code, 'output_blocked');
      assert.ok(!res.text.includes('4111'));
    } finally {
      upstream.script = {};
    }
  });

  it('a non-JSON SSE event from upstream fails closed', async () => {
    upstream.script = {
      raw: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(
          'data: {"choices":[{"index":0,"delta":{"content":"ok "}}]}\n\ndata: not json\n\ndata: [DONE]\n\n',
        );
      },
    };
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { stream: true }));
      const events = sseData(res.text);
      assert.equal((events.at(-1) as { error: { code: string } }).error.code, 'upstream_malformed');
    } finally {
      upstream.script = {};
    }
  });

  it('an error event from upstream mid-stream ends the stream as an upstream error, its text never forwarded', async () => {
    // OpenAI-compatible servers report a failure after the headers as an SSE event: `{"error": {...}}` or, in
    // older vLLM, `{"object": "error", "message": ...}`. Its message can echo the prompt, like a non-200 body.
    for (const event of [
      { error: { message: `bad input from ${EMAIL}`, type: 'BadRequestError', code: 400 } },
      { object: 'error', message: `bad input from ${EMAIL}`, type: 'BadRequestError', code: 400 },
    ]) {
      upstream.script = {
        raw: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(
            `data: {"choices":[{"index":0,"delta":{"content":"ok "}}]}\n\ndata: ${JSON.stringify(event)}\n\ndata: [DONE]\n\n`,
          );
        },
      };
      try {
        const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { stream: true }));
        assert.ok(!res.text.includes(EMAIL), 'the upstream error text is not forwarded');
        assert.ok(!res.text.includes('BadRequestError'));
        const events = sseData(res.text);
        assert.ok(!events.includes('[DONE]'), 'a failed stream does not end with [DONE]');
        assert.equal((events.at(-1) as { error: { code: string } }).error.code, 'upstream_error');
      } finally {
        upstream.script = {};
      }
    }
  });

  it('a stream the upstream ends without [DONE] is reported cut off, not passed off as complete', async () => {
    upstream.script = {
      raw: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('data: {"choices":[{"index":0,"delta":{"content":"The answer is "}}]}\n\n');
      },
    };
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { stream: true }));
      const events = sseData(res.text);
      assert.ok(!events.includes('[DONE]'));
      assert.equal((events.at(-1) as { error: { code: string } }).error.code, 'upstream_unavailable');
    } finally {
      upstream.script = {};
    }
  });

  it('retries idempotent calls after 503, never generation calls', async () => {
    upstream.received.length = 0;
    upstream.script = { failFirst: { count: 2, status: 503 } };
    const k = await post(`${gw.url}/v2/models/scorer/infer`, {
      inputs: [{ name: 'f', shape: [1], datatype: 'FP32', data: [1] }],
    });
    assert.equal(k.status, 200);
    assert.equal(upstream.received.length, 3);
    upstream.received.length = 0;
    upstream.script = { failFirst: { count: 1, status: 503 } };
    const g = await post(`${gw.url}/v1/completions`, { model: 'gen', prompt: 'x' });
    assert.equal(g.status, 502);
    assert.equal(g.json.error?.code, 'upstream_error');
    assert.equal(upstream.received.length, 1);
    upstream.script = {};
  });

  it('maps upstream 4xx to upstream_rejected without forwarding its body', async () => {
    upstream.script = { failFirst: { count: 1, status: 400 } };
    const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x'));
    assert.equal(res.status, 400);
    assert.equal(res.json.error?.code, 'upstream_rejected');
    assert.ok(!res.text.includes('busy'));
    upstream.script = {};
  });

  it("passes on the model server's own Retry-After with its 429, and drops one that is not a valid wait", async () => {
    const answer = (retryAfter: string | undefined) => (_req: unknown, res: ServerResponse) => {
      res
        .writeHead(429, {
          'content-type': 'application/json',
          ...(retryAfter === undefined ? {} : { 'retry-after': retryAfter }),
        })
        .end('{"error":"slow down"}');
    };
    for (const [header, expected] of [
      ['7', '7'],
      [new Date(Date.now() + 30_000).toUTCString(), /^(29|30|31)$/],
      ['soon', undefined],
      [undefined, undefined],
    ] as const) {
      upstream.script = { raw: answer(header) };
      for (const body of [chatBody('x'), chatBody('x', { stream: true })]) {
        const res = await post(`${gw.url}/v1/chat/completions`, body);
        assert.equal(res.status, 429, String(header));
        assert.equal(res.json.error?.code, 'upstream_rejected');
        const got = res.headers['retry-after'];
        if (expected === undefined) assert.equal(got, undefined, String(header));
        else if (typeof expected === 'string') assert.equal(got, expected);
        else assert.match(String(got), expected);
      }
    }
    upstream.script = {};
  });

  it('cancels the model call when the client goes away before the answer, and audits it as client_closed', async () => {
    let upstreamClosedEarly: Promise<boolean> | undefined;
    upstream.script = {
      raw: (_req, res) => {
        // Answers only after 2 s; notes whether the gateway hung up before then.
        upstreamClosedEarly = new Promise((resolve) => {
          const timer = setTimeout(() => {
            resolve(false);
            res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          }, 2000);
          res.on('close', () => {
            clearTimeout(timer);
            resolve(!res.writableFinished);
          });
        });
      },
    };
    const aborted = new AbortController();
    const pending = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer token-alice' },
      body: JSON.stringify(chatBody('slow question')),
      signal: aborted.signal,
    }).catch(() => undefined);
    while (upstreamClosedEarly === undefined) await new Promise((r) => setTimeout(r, 10));
    aborted.abort();
    await pending;
    assert.equal(await upstreamClosedEarly, true, 'the upstream call was not cancelled');
    const last = (await settledEvents(gw)).at(-1) as { outcome: string; reason?: string };
    assert.deepEqual([last.outcome, last.reason], ['failure', 'client_closed']);
    upstream.script = {};
  });

  it('audit records carry principal, version, decision, sizes and keyed hashes, never content', async () => {
    const secret = `unique-secret-prompt-${Date.now()}`;
    const res = await post(`${gw.url}/v1/chat/completions`, chatBody(`${secret} ${EMAIL}`));
    assert.equal(res.status, 200);
    const events = await settledEvents(gw);
    const event = events.at(-1) as { details: Record<string, unknown> } & Record<string, unknown>;
    assert.equal(event.action, 'endpoint.invoke');
    assert.deepEqual(event.principal, { id: 'user:alice', authMethod: 'token' });
    assert.equal(event.outcome, 'success');
    assert.equal(event.resource, 'endpoint:chat');
    assert.equal(event.details.model, 'chat');
    assert.equal(event.details.version, '1');
    assert.equal(event.details.decision, 'allowed');
    assert.equal(event.details.filter, 'EMAIL:redact=1');
    assert.match(String(event.details.requestHash), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.match(String(event.details.responseHash), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.ok(Number(event.details.requestBytes) > secret.length);
    const all = gw.auditText();
    for (const needle of [secret, EMAIL, CARD, 'jane', 'token-alice', 'hello there']) {
      assert.ok(!all.includes(needle), `audit log contains ${needle}`);
    }
    const denied = events.find(
      (e) => e.outcome === 'denied' && (e as { reason?: string }).reason === 'forbidden',
    );
    assert.equal((denied?.principal as { id: string }).id, 'user:eve');
  });

  it('serves metrics per instance: requests by status, latency, denials, filter actions', async () => {
    const metrics = await gatewayOf(gw.app).metrics.registry.metrics();
    assert.match(
      metrics,
      /warden_gateway_requests_total\{endpoint="chat",protocol="openai",status="200"\} \d+/,
    );
    assert.match(
      metrics,
      /warden_gateway_request_duration_seconds_bucket\{le="[0-9.]+",endpoint="chat",protocol="openai"\}/,
    );
    assert.match(
      metrics,
      /warden_gateway_denials_total\{endpoint="chat",protocol="openai",reason="parameter_not_allowed"\} \d+/,
    );
    assert.match(
      metrics,
      /warden_gateway_output_filter_actions_total\{endpoint="chat",protocol="openai",entity="EMAIL",action="redact"\} \d+/,
    );
    assert.match(
      metrics,
      /warden_gateway_upstream_duration_seconds_count\{endpoint="chat",protocol="openai"\} \d+/,
    );
  });
});

describe('gateway upstream timeouts, TLS and failures', () => {
  it('answers 504 when the upstream is slower than its timeout, and 502 when it is down', async () => {
    const upstream = await startUpstream({ delayMs: 1500 });
    const gw = await startGateway([
      endpoint('slow', upstream.url, { upstream: { url: upstream.url, timeoutMs: 200, retries: 0 } }),
      endpoint('down', 'http://127.0.0.1:1', { protocol: 'kserve-v2' }),
    ]);
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, { ...chatBody('x'), model: 'slow' });
      assert.equal(res.status, 504);
      assert.equal(res.json.error?.code, 'upstream_timeout');
      const down = await post(`${gw.url}/v2/models/down/infer`, {
        inputs: [{ name: 'f', shape: [1], datatype: 'FP32', data: [1] }],
      });
      assert.equal(down.status, 502);
      assert.equal(down.json.error?.code, 'upstream_unavailable');
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('ends a stream whose upstream stalls with upstream_timeout, and one cut off with upstream_unavailable', async () => {
    // As for non-streamed answers (test/gateway/upstream.test.ts): neither is a malformed answer.
    const first = 'data: {"choices":[{"index":0,"delta":{"content":"hello there "}}]}\n\n';
    const upstream = await startUpstream({
      raw: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(first);
      },
    });
    const gw = await startGateway([
      endpoint('chat', upstream.url, { upstream: { url: upstream.url, idleTimeoutMs: 300, retries: 0 } }),
    ]);
    try {
      const stalled = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { stream: true }));
      assert.deepEqual(sseData(stalled.text).at(-1), {
        error: { code: 'upstream_timeout', message: 'the model server did not answer in time' },
      });
      upstream.script = {
        raw: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(first);
          setTimeout(() => res.socket?.destroy(), 50);
        },
      };
      const cut = await post(`${gw.url}/v1/chat/completions`, chatBody('x', { stream: true }));
      assert.deepEqual(sseData(cut.text).at(-1), {
        error: { code: 'upstream_unavailable', message: 'the model server is unreachable' },
      });
      await gatewayOf(gw.app).auditSettled();
      assert.deepEqual(
        gw.auditEvents().map((e) => e.reason),
        ['upstream_timeout', 'upstream_unavailable'],
      );
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('keeps memory bounded while a long stream runs: what was sent is hashed, not kept', async () => {
    // The audit record's responseHash covers the whole stream; the sent text used to be kept until its end
    // to hash it then, so an upstream streaming without end grew the gateway's memory without end.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const heapUsed = (): number => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const EVENTS = 32_000;
    const piece = `${'x'.repeat(999)} `;
    let finish = (): void => undefined;
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const upstream = await startUpstream({
      raw: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const pump = (): void => {
          while (i < EVENTS) {
            i++;
            if (!res.write(`data: {"choices":[{"index":0,"delta":{"content":"${piece}"}}]}\n\n`)) {
              res.once('drain', pump);
              return;
            }
          }
          void finished.then(() => res.end('data: [DONE]\n\n'));
        };
        pump();
      },
    });
    const gw = await startGateway([endpoint('raw', upstream.url, { outputPolicy: false })]);
    try {
      const before = heapUsed();
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer token-alice' },
        body: JSON.stringify(chatBody('x', { model: 'raw', stream: true })),
      });
      let received = 0;
      res.body.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      const ended = new Promise((resolve) => res.body.on('end', resolve));
      while (received < EVENTS * piece.length) await new Promise((resolve) => setTimeout(resolve, 20));
      // 32 MB went through; the stream is still open.
      const grown = heapUsed() - before;
      finish();
      await ended;
      assert.ok(grown < 12_000_000, `heap grew by ${grown} bytes while streaming 32 MB`);
      await gatewayOf(gw.app).auditSettled();
      const event = gw.auditEvents().at(-1) as { outcome: string; details: Record<string, unknown> };
      assert.equal(event.outcome, 'success');
      assert.ok((event.details.responseBytes as number) > EVENTS * piece.length);
      assert.match(String(event.details.responseHash), /^hmac-sha256:[0-9a-f]{64}$/);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('behind a trusted proxy, takes the address the proxy appended, not one the client wrote', async () => {
    // A fronting proxy appends the peer it saw to the client's X-Forwarded-For. Trusting every hop took the
    // left-most entry, which the client chooses: any caller could pick the source address that Cedar conditions,
    // the extraction monitor's per-network grouping and the audit record see.
    const upstream = await startUpstream();
    const gw = await startGateway([endpoint('chat', upstream.url)], { trustProxy: true });
    try {
      const forwarded = async (xff: string | undefined): Promise<unknown> => {
        const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x'), {
          headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
        });
        assert.equal(res.status, 200);
        await gatewayOf(gw.app).auditSettled();
        return gw.auditEvents().at(-1)?.sourceIp;
      };
      assert.equal(await forwarded('6.6.6.6, 10.0.0.7'), '10.0.0.7');
      assert.equal(await forwarded('10.0.0.8'), '10.0.0.8');
      assert.equal(await forwarded(undefined), '127.0.0.1');
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('serves TLS 1.3 only and reaches an HTTPS upstream with a configured CA', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'warden-gw-tls-'));
    const tls = await ensureDevTls(dir);
    const { readFile } = await import('node:fs/promises');
    const ca = await readFile(tls.caPath, 'utf8');
    const upstream = await startUpstream({}, { key: tls.key, cert: tls.cert });
    const gw = await startGateway(
      [endpoint('chat', upstream.url, { upstream: { url: upstream.url, ca, servername: 'localhost' } })],
      { tls: { key: tls.key, cert: tls.cert } },
    );
    const agent = new Agent({ connect: { ca, servername: 'localhost' } });
    try {
      assert.match(gw.url, /^https:/);
      const res = await post(`${gw.url}/v1/chat/completions`, chatBody('over tls'), { dispatcher: agent });
      assert.equal(res.status, 200);
      const tls12 = new Agent({ connect: { ca, servername: 'localhost', maxVersion: 'TLSv1.2' } });
      await assert.rejects(post(`${gw.url}/v1/chat/completions`, chatBody('x'), { dispatcher: tls12 }));
      await tls12.close();
      // Without the CA the upstream certificate is refused: fail closed, 502.
      const untrusted = await startGateway([endpoint('chat', upstream.url)]);
      const refused = await post(`${untrusted.url}/v1/chat/completions`, chatBody('x'));
      assert.equal(refused.status, 502);
      await untrusted.close();
    } finally {
      await agent.close();
      await gw.close();
      await upstream.close();
    }
  });

  it('refuses requests with 503 once an audit record could not be written', async () => {
    const upstream = await startUpstream();
    const dir = mkdtempSync(path.join(tmpdir(), 'warden-gw-audit-'));
    const audit = await JsonLinesAuditRecorder.open(path.join(dir, 'a.jsonl'));
    const gw = await startGateway([endpoint('chat', upstream.url)], { audit });
    try {
      await audit.close();
      // Write-behind: this response was released when its record was handed over; the record then failed.
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('first'))).status, 200);
      await gatewayOf(gw.app).auditSettled();
      const res = await post(`${gw.url}/v1/chat/completions`, chatBody('must not leave'));
      assert.equal(res.status, 503);
      assert.equal(res.json.error?.code, 'audit_unavailable');
      assert.ok(!res.text.includes('must not leave'));
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('enforces extraction monitor actions and records verdicts', async () => {
    const upstream = await startUpstream();
    let action: 'none' | 'alert' | 'throttle' | 'step-up' | 'block' = 'none';
    const observed: { features?: number[]; outputLabel?: string; network: string; text?: string }[] = [];
    const monitor: ExtractionObserver = {
      observe: (req) => {
        observed.push(req);
        return {
          verdicts: [{ detector: 'boundary', score: action === 'none' ? 0 : 0.9, reason: 'probing' }],
          action,
        };
      },
    };
    const gw = await startGateway(
      [endpoint('scorer', upstream.url, { protocol: 'kserve-v2' }), endpoint('chat', upstream.url)],
      { extraction: () => monitor },
    );
    const infer = () =>
      post(`${gw.url}/v2/models/scorer/infer`, {
        inputs: [{ name: 'f', shape: [1, 2], datatype: 'FP32', data: [[0.5, 2]] }],
      });
    try {
      assert.equal((await infer()).status, 200);
      const first = observed.at(0);
      assert.ok(first);
      assert.deepEqual(first.features, [0.5, 2]);
      assert.equal(first.outputLabel, 'approve');
      assert.equal(first.network, '127.0.0.0/24');
      await post(`${gw.url}/v1/chat/completions`, chatBody('prompt text'));
      assert.equal(observed[1]?.text, 'prompt text');
      action = 'alert';
      assert.equal((await infer()).status, 200);
      action = 'throttle';
      const t = await infer();
      assert.equal(t.status, 429);
      assert.equal(t.headers['retry-after'], '60');
      action = 'step-up';
      assert.equal((await infer()).json.error?.code, 'step_up_required');
      action = 'block';
      const b = await infer();
      assert.equal(b.status, 403);
      assert.ok(!b.text.includes('approve'), 'the label is withheld');
      const last = (await settledEvents(gw)).at(-1) as { details: Record<string, unknown> };
      assert.equal(last.details.extractionAction, 'block');
      assert.equal(last.details.extractionVerdicts, 'boundary=0.900');
      const metrics = await gatewayOf(gw.app).metrics.registry.metrics();
      assert.match(
        metrics,
        /warden_gateway_extraction_detections_total\{endpoint="scorer",protocol="kserve-v2",detector="boundary",action="block"\} 1/,
      );
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('a chat request the extraction monitor refuses gives its token reservation back', async () => {
    // The monitor decides after the reservation and before the model is called: nothing was generated, so
    // nothing may stay charged (a throttled caller's budget used to drain by max_tokens per refused request).
    const upstream = await startUpstream();
    let action: 'none' | 'throttle' | 'step-up' | 'block' = 'throttle';
    const monitor: ExtractionObserver = {
      observe: () => ({ verdicts: [{ detector: 'burst', score: 0.9, reason: 'probing' }], action }),
    };
    const budget = [{ points: 1000, durationSeconds: 3600 }];
    const gw = await startGateway(
      [endpoint('chat', upstream.url, { limits: { tokens: budget, maxTokens: 300 } })],
      { extraction: () => monitor },
    );
    try {
      for (const refused of ['throttle', 'step-up', 'block'] as const) {
        action = refused;
        for (let i = 0; i < 3; i++) {
          const res = await post(`${gw.url}/v1/chat/completions`, chatBody('hello'));
          assert.ok([429, 401, 403].includes(res.status), `${refused}: ${res.status}`);
        }
      }
      assert.equal(upstream.received.length, 0);
      const events = (await settledEvents(gw)) as { details: Record<string, unknown> }[];
      assert.ok(events.every((e) => e.details.tokensUsed === 0));
      const limits = gatewayOf(gw.app).limits;
      const { states } = await limits.reserve(limits.keyFor('user:alice', 'chat'), budget, 1);
      assert.equal(states[0]?.remaining, 1000 - 1);
      action = 'none';
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('hello'))).status, 200);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('puts the demo model behind the gateway: KServe, predict and chat with redacted echo', async () => {
    const demo = await startDemoModel();
    const gw = await startGateway([
      endpoint('credit-score', demo.url, { protocol: 'kserve-v2', model: 'credit-score' }),
      { ...endpoint('credit-score', demo.url, { protocol: 'openai', model: 'credit-score' }) },
    ]);
    try {
      const k = await post(`${gw.url}/v2/models/credit-score/infer`, {
        inputs: [{ name: 'features', shape: [1, 5], datatype: 'FP32', data: [60, 0.3, 5, 0, 0.4] }],
      });
      assert.equal(k.status, 200);
      const outputs = k.json.outputs as { name: string; data: unknown[] }[];
      assert.equal(outputs[1]?.data[0], 'approve');
      const c = await post(`${gw.url}/v1/chat/completions`, {
        model: 'credit-score',
        messages: [{ role: 'user', content: `I am ${EMAIL}, figures 60, 0.3, 5, 0, 0.4` }],
        stream: true,
      });
      const out = streamedContent(c.text);
      assert.ok(out.includes('[REDACTED:EMAIL]'));
      assert.ok(!c.text.includes(EMAIL));
      assert.match(out, /decision approve/);
      // The two endpoints share a name (one per protocol family): their metrics must not share a series.
      const metrics = await gatewayOf(gw.app).metrics.registry.metrics();
      for (const protocol of ['kserve-v2', 'openai']) {
        const labels = `endpoint="credit-score",protocol="${protocol}"`;
        assert.match(metrics, new RegExp(`warden_gateway_requests_total\\{${labels},status="200"\\} 1\\n`));
        assert.match(
          metrics,
          new RegExp(`warden_gateway_upstream_duration_seconds_count\\{${labels}\\} 1\\n`),
        );
      }
    } finally {
      await gw.close();
      await demo.close();
    }
  });
});
