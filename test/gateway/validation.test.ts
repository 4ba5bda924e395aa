import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  checkEndpoints,
  checkParameters,
  endpointsFromFile,
  GatewayError,
  numericFeatures,
  promptChars,
  promptText,
  validateBody,
} from '../../src/gateway/index.ts';
import type { RouteKind } from '../../src/gateway/index.ts';
import { networkOf } from '../../src/policy/index.ts';

const ok = (kind: RouteKind, body: unknown): void => {
  validateBody(kind, body);
};
const bad = (kind: RouteKind, body: unknown): void => {
  assert.throws(
    () => {
      validateBody(kind, body);
    },
    (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.code, 'invalid_request');
      assert.equal(err.httpStatus, 400);
      return true;
    },
  );
};

describe('request validation', () => {
  it('accepts well-formed requests of every protocol', () => {
    ok('chat', { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 5 });
    ok('chat', { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] });
    ok('completions', { model: 'm', prompt: ['a', 'b'], logprobs: 0 });
    ok('embeddings', { model: 'm', input: ['a'], encoding_format: 'float' });
    ok('kserve-v2', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [[1, 2]] }] });
    ok('predict', {
      instances: [
        [1, 2],
        [3, 4],
      ],
    });
    ok('predict', { inputs: { a: [1] } });
  });

  it('refuses malformed requests with 400 and no value in the message', () => {
    bad('chat', { model: 'm', messages: [] });
    bad('chat', { model: 'm', messages: [{ role: 'hacker', content: 'x' }] });
    bad('chat', { model: 'm', messages: [{ role: 'user', content: 'x' }], unknown: 1 });
    bad('chat', { model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: '5' });
    bad('chat', { model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 3 });
    bad('completions', { model: 'm', prompt: [1, 2, 3] });
    bad('embeddings', { model: 'm' });
    bad('kserve-v2', { inputs: [{ name: 'x', shape: [1], datatype: 'FP99', data: [1] }] });
    bad('kserve-v2', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [{ a: 1 }] }] });
    bad('kserve-v2', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [null] }] });
    bad('predict', { instances: [1], inputs: [1] });
    bad('predict', {});
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    bad('predict', { instances: [deep] });
    try {
      validateBody('chat', { model: 'secret-value-xyz', messages: 'secret-content' });
    } catch (err) {
      assert.ok(!(err as Error).message.includes('secret'));
    }
  });

  it('refuses logprobs, top_logprobs and logit_bias unless allowed; neutral values pass', () => {
    const body = (extra: Record<string, unknown>) => ({ model: 'm', messages: [], ...extra });
    for (const [extra, name] of [
      [{ logprobs: true }, 'logprobs'],
      [{ top_logprobs: 3 }, 'top_logprobs'],
      [{ logit_bias: { '1': 5 } }, 'logit_bias'],
    ] as const) {
      assert.throws(
        () => {
          checkParameters('chat', body(extra), {});
        },
        {
          code: 'parameter_not_allowed',
          message: new RegExp(name),
        },
      );
      checkParameters('chat', body(extra), { logprobs: true, topLogprobs: true, logitBias: true });
    }
    assert.throws(
      () => {
        checkParameters('completions', { logprobs: 5 }, {});
      },
      {
        code: 'parameter_not_allowed',
      },
    );
    checkParameters('chat', body({ logprobs: false, top_logprobs: 0, logit_bias: {} }), {});
    checkParameters('kserve-v2', { logprobs: true }, {});
  });

  it('refuses logprobs: 0 on completions: it is not neutral there (the sampled tokens and their logprobs)', () => {
    // Legacy completions return the logprob of every sampled token (and, with echo, of every prompt token)
    // plus the token strings for any `logprobs` value, 0 included: only its absence asks for none.
    assert.throws(
      () => {
        checkParameters('completions', { model: 'm', prompt: 'p', logprobs: 0 }, {});
      },
      { code: 'parameter_not_allowed', message: /logprobs/ },
    );
    checkParameters('completions', { model: 'm', prompt: 'p', logprobs: 0 }, { logprobs: true });
    checkParameters('completions', { model: 'm', prompt: 'p' }, {});
  });

  it('counts every input the model reads towards the prompt length, not only message content', () => {
    const chat = (extra: Record<string, unknown>, message: Record<string, unknown> = {}) => {
      const b = { messages: [{ role: 'user', content: 'hi', ...message }], ...extra };
      return promptChars('chat', b, promptText('chat', b));
    };
    const plain = chat({});
    assert.equal(plain, 'hi'.length);
    const stuffed = 'x'.repeat(500);
    const tool = { type: 'function', function: { name: 'f', description: stuffed } };
    assert.ok(chat({ tools: [tool] }) > plain + 500);
    assert.ok(
      chat({ response_format: { type: 'json_schema', json_schema: { description: stuffed } } }) > 500,
    );
    assert.ok(chat({}, { name: stuffed }) > 500);
    assert.ok(chat({}, { tool_calls: [{ id: 'c', function: { name: 'f', arguments: stuffed } }] }) > 500);
    const completion = { prompt: 'hi', suffix: stuffed };
    assert.equal(promptChars('completions', completion, promptText('completions', completion)), 502);
  });

  it('extracts prompt text and numeric features', () => {
    assert.equal(
      promptText('chat', {
        messages: [{ content: 'a' }, { content: [{ type: 'text', text: 'b' }] }, { content: null }],
      }),
      'a\nb\n\n',
    );
    assert.equal(promptText('embeddings', { input: ['x', 'y'] }), 'x\ny');
    assert.deepEqual(
      numericFeatures('kserve-v2', {
        inputs: [
          {
            data: [
              [1, 2],
              [3, 'a'],
            ],
          },
        ],
      }),
      [1, 2, 3],
    );
    assert.equal(numericFeatures('chat', {}), undefined);
  });

  it('property: validation never throws anything but invalid_request on arbitrary JSON', () => {
    const kinds: RouteKind[] = ['chat', 'completions', 'embeddings', 'kserve-v2', 'predict'];
    fc.assert(
      fc.property(fc.constantFrom(...kinds), fc.jsonValue({ maxDepth: 6 }), (kind, value) => {
        try {
          validateBody(kind, value);
        } catch (err) {
          assert.ok(err instanceof GatewayError);
          assert.equal(err.code, 'invalid_request');
        }
      }),
    );
  });

  it('property: structurally valid chat bodies are accepted, and any extra key is refused', () => {
    const message = fc.record({
      role: fc.constantFrom('system', 'user', 'assistant'),
      content: fc.string({ maxLength: 50 }),
    });
    fc.assert(
      fc.property(
        fc.array(message, { minLength: 1, maxLength: 5 }),
        fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined }),
        fc
          .string({ minLength: 1, maxLength: 12 })
          .filter(
            (k) =>
              !['model', 'messages', 'max_tokens', '__proto__'].includes(k) &&
              !/^(temperature|top_p|top_k|min_p|repetition_penalty|presence_penalty|frequency_penalty|n|seed|stop|stream|stream_options|user|logit_bias|max_completion_tokens|logprobs|top_logprobs|response_format|tools|tool_choice|parallel_tool_calls)$/.test(
                k,
              ),
          ),
        (messages, maxTokens, extra) => {
          const body = {
            model: 'm',
            messages,
            ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
          };
          validateBody('chat', body);
          assert.throws(
            () => {
              validateBody('chat', { ...body, [extra]: 1 });
            },
            { code: 'invalid_request' },
          );
        },
      ),
    );
  });
});

describe('endpoint configuration', () => {
  const base = {
    name: 'e',
    protocol: 'openai',
    upstream: { url: 'http://127.0.0.1:1' },
    model: 'm',
    version: '1',
    environment: 'prod',
  };

  it('reads endpoints from a file shape and refuses bad ones', () => {
    const read = (p: string) => Buffer.from(`pem:${p}`);
    const [e] = endpointsFromFile([{ ...base, upstream: { url: 'https://h:1', caFile: 'ca.pem' } }], read);
    assert.equal(String(e?.upstream.ca), 'pem:ca.pem');
    assert.throws(() => endpointsFromFile([], read), { code: 'gateway_config_error' });
    assert.throws(() => endpointsFromFile([{ ...base, extra: 1 }], read), { code: 'gateway_config_error' });
    assert.throws(() => endpointsFromFile([{ ...base, protocol: 'grpc' }], read), {
      code: 'gateway_config_error',
    });
    assert.throws(() => endpointsFromFile([base, base], read), /duplicate/);
    assert.throws(() => {
      checkEndpoints([{ ...base, protocol: 'openai', upstream: { url: 'http://u:p@h:1' } }]);
    }, /credentials/);
    assert.throws(() => {
      checkEndpoints([{ ...base, protocol: 'openai', upstream: { url: 'ftp://h' } }]);
    }, /http/);
    assert.throws(() => {
      checkEndpoints([{ ...base, protocol: 'openai', upstream: { url: 'https://h', cert: 'x' } }]);
    }, /both cert and key/);
  });

  it('groups callers by network', () => {
    assert.equal(networkOf('203.0.113.77'), '203.0.113.0/24');
    assert.equal(networkOf('::ffff:10.1.2.3'), '10.1.2.0/24');
    assert.equal(networkOf('2001:db8:abcd:12::1'), '2001:db8:abcd::/48');
    assert.equal(networkOf('2001:db8::1'), '2001:db8:0::/48');
  });
});
