import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CompiledPolicy, PrivacyEngine } from '../../src/privacy/index.ts';
import { OutputFilter } from '../../src/gateway/index.ts';
import type { RouteKind, StreamFilter } from '../../src/gateway/index.ts';
import { MAX_OPEN_STREAMS } from '../../src/gateway/output-filter.ts';
import { chatBody, endpoint, post, sseData, startGateway, startUpstream } from './support.ts';

const filter = new OutputFilter(new PrivacyEngine(), new CompiledPolicy({ defaultAction: 'redact' }));

describe('output filter on tensors', () => {
  it('passes numeric KServe outputs through untouched, with no findings', () => {
    const body = {
      outputs: [
        {
          name: 'p',
          datatype: 'FP32',
          shape: [2, 2],
          data: [
            [0.1, 0.9],
            [1, 2],
          ],
        },
      ],
    };
    const r = filter.filterJson('kserve-v2', structuredClone(body));
    assert.deepEqual(r.body, body);
    assert.equal(r.counts.size, 0);
    assert.equal(r.blocked, false);
  });

  it('scans every string leaf whatever the declared datatype', () => {
    const body = {
      outputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [0.5, 'mail jane.doe@example.com'] }],
    };
    const r = filter.filterJson('kserve-v2', body);
    const [output] = (r.body as { outputs: { data: unknown[] }[] }).outputs;
    assert.ok(output !== undefined);
    assert.equal(output.data[0], 0.5);
    assert.ok(!String(output.data[1]).includes('jane.doe@example.com'));
    assert.equal(r.counts.get('EMAIL:redact'), 1);
  });

  it('scans KServe outputs of the wrong shape too, rather than releasing them unscanned', () => {
    // A server that breaks the v2 shape (data not an array, outputs not an array of objects) still has its
    // strings scanned: the filter used to look only inside well-formed outputs[].data arrays.
    for (const body of [
      { outputs: [{ name: 'label', datatype: 'BYTES', shape: [1], data: 'mail jane.doe@example.com' }] },
      { outputs: [{ name: 'label', datatype: 'BYTES', data: { text: 'mail jane.doe@example.com' } }] },
      { outputs: { label: { datatype: 'BYTES', data: ['mail jane.doe@example.com'] } } },
      { outputs: ['mail jane.doe@example.com'] },
      { outputs: 'mail jane.doe@example.com' },
    ]) {
      const r = filter.filterJson('kserve-v2', body);
      assert.ok(!JSON.stringify(r.body).includes('jane.doe@example.com'), JSON.stringify(r.body));
      assert.equal(r.counts.get('EMAIL:redact'), 1);
    }
    // Names and datatypes of well-formed outputs are left alone.
    const ok = filter.filterJson('kserve-v2', {
      outputs: [{ name: 'label', datatype: 'BYTES', shape: [1], data: ['approve'] }],
    });
    assert.deepEqual(ok.body, {
      outputs: [{ name: 'label', datatype: 'BYTES', shape: [1], data: ['approve'] }],
    });
  });

  it('blocks output nested deeper than it scans', () => {
    let deep: unknown = 'jane.doe@example.com';
    for (let i = 0; i < 40; i++) deep = [deep];
    const r = filter.filterJson('predict', { predictions: deep });
    assert.equal(r.blocked, true);
  });

  it('never changes number/boolean tensors (property)', () => {
    const tensor = fc.letrec((tie) => ({
      leaf: fc.oneof(fc.double({ noNaN: true }), fc.integer(), fc.boolean()),
      node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 })),
    })).node;
    fc.assert(
      fc.property(fc.array(tensor, { maxLength: 8 }), (predictions) => {
        const r = filter.filterJson('predict', { predictions: structuredClone(predictions) });
        assert.deepEqual((r.body as { predictions: unknown }).predictions, predictions);
        assert.equal(r.counts.size, 0);
        assert.equal(r.blocked, false);
      }),
    );
  });
});

type Obj = Record<string, unknown>;

const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';
const engine = new PrivacyEngine();
const redact = new CompiledPolicy({ defaultAction: 'redact' });
const blockCards = new CompiledPolicy({ defaultAction: 'redact', actions: { CREDIT_CARD: 'block' } });

function chatResponse(message: Obj): Obj {
  return {
    id: 'c1',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message, finish_reason: 'tool_calls' }],
  };
}

function toolCall(index: number, id: string, name: string, args: string): Obj {
  return { index, id, type: 'function', function: { name, arguments: args } };
}

describe('output filter on generated fields besides content (non-streamed)', () => {
  it('redacts tool call arguments, refusal, reasoning text and legacy function_call arguments', () => {
    const body = chatResponse({
      role: 'assistant',
      content: null,
      refusal: `I cannot mail ${EMAIL}.`,
      reasoning_content: `The user's card is ${CARD}.`,
      reasoning: `Write to ${EMAIL}.`,
      function_call: { name: 'legacy', arguments: `{"card":"${CARD}"}` },
      tool_calls: [
        { id: 'call_a', type: 'function', function: { name: 'send_mail', arguments: `{"to":"${EMAIL}"}` } },
        { id: 'call_b', type: 'function', function: { name: 'charge', arguments: `{"card":"${CARD}"}` } },
      ],
    });
    const r = new OutputFilter(engine, redact).filterJson('chat', body);
    assert.equal(r.blocked, false);
    const message = (r.body as { choices: { message: Obj }[] }).choices[0]?.message;
    assert.deepEqual(message, {
      role: 'assistant',
      content: null,
      refusal: 'I cannot mail [REDACTED:EMAIL].',
      reasoning_content: "The user's card is [REDACTED:CREDIT_CARD].",
      reasoning: 'Write to [REDACTED:EMAIL].',
      function_call: { name: 'legacy', arguments: '{"card":"[REDACTED:CREDIT_CARD]"}' },
      tool_calls: [
        {
          id: 'call_a',
          type: 'function',
          function: { name: 'send_mail', arguments: '{"to":"[REDACTED:EMAIL]"}' },
        },
        {
          id: 'call_b',
          type: 'function',
          function: { name: 'charge', arguments: '{"card":"[REDACTED:CREDIT_CARD]"}' },
        },
      ],
    });
    assert.equal(r.counts.get('EMAIL:redact'), 3);
    assert.equal(r.counts.get('CREDIT_CARD:redact'), 3);
  });

  it('scans content given as an array of parts, and the transcript of an audio answer', () => {
    const body = chatResponse({
      role: 'assistant',
      content: [
        { type: 'text', text: `Mail ${EMAIL}.` },
        { type: 'output_text', text: `Card ${CARD}.`, annotations: [{ note: `again ${EMAIL}` }] },
      ],
      audio: { id: 'audio_1', data: 'AAAA', transcript: `Your card is ${CARD}.` },
    });
    const r = new OutputFilter(engine, redact).filterJson('chat', body);
    assert.equal(r.blocked, false);
    const message = (r.body as { choices: { message: Obj }[] }).choices[0]?.message;
    assert.deepEqual(message?.content, [
      { type: 'text', text: 'Mail [REDACTED:EMAIL].' },
      {
        type: 'output_text',
        text: 'Card [REDACTED:CREDIT_CARD].',
        annotations: [{ note: 'again [REDACTED:EMAIL]' }],
      },
    ]);
    assert.deepEqual(message.audio, {
      id: 'audio_1',
      data: 'AAAA',
      transcript: 'Your card is [REDACTED:CREDIT_CARD].',
    });
    assert.equal(r.counts.get('EMAIL:redact'), 2);
    assert.equal(r.counts.get('CREDIT_CARD:redact'), 2);
  });

  it('keeps JSON arguments parseable under redact, mask and pseudonymise', () => {
    const policies = [
      redact,
      new CompiledPolicy({ defaultAction: 'mask' }),
      new CompiledPolicy({ defaultAction: 'pseudonymize', pseudonymKey: new Uint8Array(32).fill(7) }),
    ];
    for (const policy of policies) {
      const args = JSON.stringify({ to: EMAIL, card: CARD, note: 'thanks' });
      const body = chatResponse({ role: 'assistant', tool_calls: [toolCall(0, 'call_a', 'f', args)] });
      const r = new OutputFilter(engine, policy).filterJson('chat', body);
      const out = (
        r.body as { choices: { message: { tool_calls: { function: { arguments: string } }[] } }[] }
      ).choices[0]?.message.tool_calls[0]?.function.arguments;
      const parsed = JSON.parse(out ?? '') as Obj;
      assert.notEqual(parsed.to, EMAIL);
      assert.notEqual(parsed.card, CARD);
      assert.equal(parsed.note, 'thanks');
    }
  });

  it('scans arguments that are not JSON, and ignores malformed tool call shapes without crashing', () => {
    const body = chatResponse({
      role: 'assistant',
      tool_calls: [
        toolCall(0, 'call_a', 'f', `{"to": "${EMAIL}", "card": ${CARD.slice(0, 9)}`),
        toolCall(1, 'call_b', 'g', `mail ${EMAIL} now \\u0000 }}{{`),
        null,
        'call',
        { id: 'call_c', function: null },
        { id: 'call_d', function: { name: 'h', arguments: { to: EMAIL } } },
      ],
      function_call: 'legacy',
      refusal: 42,
    });
    const r = new OutputFilter(engine, redact).filterJson('chat', body);
    const calls = (r.body as { choices: { message: { tool_calls: unknown[] } }[] }).choices[0]?.message
      .tool_calls;
    assert.equal(
      (calls?.[0] as { function: { arguments: string } }).function.arguments,
      `{"to": "[REDACTED:EMAIL]", "card": ${CARD.slice(0, 9)}`,
    );
    assert.equal(
      (calls?.[1] as { function: { arguments: string } }).function.arguments,
      'mail [REDACTED:EMAIL] now \\u0000 }}{{',
    );
    assert.deepEqual(calls?.slice(2), [
      null,
      'call',
      { id: 'call_c', function: null },
      { id: 'call_d', function: { name: 'h', arguments: { to: EMAIL } } },
    ]);
    // Never crashes on any JSON-shaped message (property).
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (toolCalls, message) => {
        const m = {
          ...(typeof message === 'object' && message !== null && !Array.isArray(message) ? message : {}),
          tool_calls: toolCalls,
        };
        new OutputFilter(engine, redact).filterJson('chat', chatResponse(m));
      }),
      { numRuns: 200, seed: 11 },
    );
  });

  it('blocks the whole output for a blocked entity in tool arguments, refusal or reasoning text', () => {
    const filterBlocking = new OutputFilter(engine, blockCards);
    const messages: Obj[] = [
      { role: 'assistant', tool_calls: [toolCall(0, 'call_a', 'charge', `{"card":"${CARD}"}`)] },
      { role: 'assistant', refusal: `Not charging ${CARD}.` },
      { role: 'assistant', reasoning_content: `Card ${CARD} looks valid.` },
      { role: 'assistant', function_call: { name: 'charge', arguments: `{"card":"${CARD}"}` } },
    ];
    for (const message of messages)
      assert.equal(filterBlocking.filterJson('chat', chatResponse(message)).blocked, true);
    const clean = { role: 'assistant', tool_calls: [toolCall(0, 'call_a', 'mail', `{"to":"${EMAIL}"}`)] };
    assert.equal(filterBlocking.filterJson('chat', chatResponse(clean)).blocked, false);
  });
});

/** Runs chunks through a stream filter as the gateway does; the released chunks, and whether it blocked. */
function runStream(filter: StreamFilter, chunks: readonly Obj[]): { out: Obj[]; blocked: boolean } {
  const out: Obj[] = [];
  for (const chunk of chunks) {
    const copy = structuredClone(chunk);
    if (!filter.chunk(copy)) return { out, blocked: true };
    out.push(copy);
  }
  const tail = filter.finish();
  if (filter.blocked) return { out, blocked: true };
  if (tail !== undefined) out.push(tail);
  return { out, blocked: false };
}

interface AssembledTool {
  id?: string;
  type?: string;
  name: string;
  arguments: string;
}
interface Assembled {
  content: string;
  refusal: string;
  reasoning_content: string;
  function_call: string;
  tools: Map<number, AssembledTool>;
  finish?: string;
}

/** Reassembles streamed choices the way OpenAI clients do (fragments concatenated per choice, field, tool index). */
function assemble(chunks: readonly Obj[]): Map<number, Assembled> {
  const choices = new Map<number, Assembled>();
  for (const chunk of chunks) {
    for (const c of (chunk.choices ?? []) as Obj[]) {
      const index = c.index as number;
      let a = choices.get(index);
      if (a === undefined) {
        a = { content: '', refusal: '', reasoning_content: '', function_call: '', tools: new Map() };
        choices.set(index, a);
      }
      if (typeof c.finish_reason === 'string') a.finish = c.finish_reason;
      const delta = (c.delta ?? {}) as Obj & { tool_calls?: Obj[]; function_call?: { arguments?: string } };
      a.content += (delta.content as string | undefined) ?? '';
      a.refusal += (delta.refusal as string | undefined) ?? '';
      a.reasoning_content += (delta.reasoning_content as string | undefined) ?? '';
      a.function_call += delta.function_call?.arguments ?? '';
      for (const call of delta.tool_calls ?? []) {
        const i = call.index as number;
        const fn = (call.function ?? {}) as { name?: string; arguments?: string };
        const t = a.tools.get(i) ?? { name: '', arguments: '' };
        if (typeof call.id === 'string') t.id = call.id;
        if (typeof call.type === 'string') t.type = call.type;
        t.name += fn.name ?? '';
        t.arguments += fn.arguments ?? '';
        a.tools.set(i, t);
      }
    }
  }
  return choices;
}

function chunkOf(...choices: Obj[]): Obj {
  return { id: 's1', object: 'chat.completion.chunk', created: 1, model: 'm', choices };
}

/** The first fragment of a tool call carries id, type and name; the rest only index and arguments. */
function toolFragment(index: number, args: string, first?: { id: string; name: string }): Obj {
  return first === undefined
    ? { index, function: { arguments: args } }
    : { index, id: first.id, type: 'function', function: { name: first.name, arguments: args } };
}

const toolDelta = (choice: number, ...calls: Obj[]): Obj => ({
  index: choice,
  delta: { tool_calls: calls },
  finish_reason: null,
});

function released(chunks: readonly Obj[]): string {
  return JSON.stringify(chunks);
}

describe('responses of the wrong shape', () => {
  const text = `mail ${EMAIL}`;
  it('are scanned whole when not streamed, not released unscanned', () => {
    const bodies: [RouteKind, Obj][] = [
      ['chat', { choices: { 0: { message: { content: text } } } }],
      ['chat', { choices: [text] }],
      ['chat', { choices: [{ index: 0, message: [text] }] }],
      ['completions', { choices: [{ index: 0, text: [text] }] }],
      ['completions', { choices: text }],
    ];
    for (const [kind, body] of bodies) {
      const r = new OutputFilter(engine, redact).filterJson(kind, body);
      assert.ok(!JSON.stringify(r.body).includes(EMAIL), JSON.stringify(r.body));
      assert.equal(r.counts.get('EMAIL:redact'), 1);
    }
  });
  it('are scanned whole when streamed', () => {
    const chunks: ['chat' | 'completions', Obj][] = [
      ['chat', { id: 's', choices: { 0: { delta: { content: text } } } }],
      ['chat', { id: 's', choices: [text] }],
      ['chat', { id: 's', choices: [{ index: 0, delta: [text] }] }],
      ['completions', { id: 's', choices: [{ index: 0, text: { t: text } }] }],
    ];
    for (const [kind, chunk] of chunks) {
      const { out, blocked } = runStream(new OutputFilter(engine, redact).stream(kind), [chunk]);
      assert.equal(blocked, false);
      assert.ok(!released(out).includes(EMAIL), released(out));
      assert.match(released(out), /REDACTED:EMAIL/);
    }
  });
});

describe('streamed tool calls and other generated fields', () => {
  it('catches a card number split across argument fragments of one tool call', () => {
    const chunks = [
      chunkOf({ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }),
      chunkOf(toolDelta(0, toolFragment(0, '', { id: 'call_a', name: 'charge' }))),
      chunkOf(toolDelta(0, toolFragment(0, '{"card":"4111 11'))),
      chunkOf(toolDelta(0, toolFragment(0, '11 1111'))),
      chunkOf(toolDelta(0, toolFragment(0, ' 1111","amount":12}'))),
      chunkOf({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
    ];
    const filter = new OutputFilter(engine, redact).stream('chat');
    const { out, blocked } = runStream(filter, chunks);
    assert.equal(blocked, false);
    assert.ok(!released(out).includes('4111'));
    const a = assemble(out).get(0);
    assert.deepEqual(a?.tools.get(0), {
      id: 'call_a',
      type: 'function',
      name: 'charge',
      arguments: '{"card":"[REDACTED:CREDIT_CARD]","amount":12}',
    });
    assert.equal(a.finish, 'tool_calls');
    assert.equal(filter.counts.get('CREDIT_CARD:redact'), 1);
    // Same number of chunks out as in: the tail went into the chunk carrying finish_reason, under index 0.
    assert.equal(out.length, chunks.length);
    const last = (out.at(-1)?.choices as { delta: { tool_calls: Obj[] }; finish_reason: string }[])[0];
    assert.equal(last?.finish_reason, 'tool_calls');
    assert.equal(last.delta.tool_calls.length, 1);
    assert.equal(last.delta.tool_calls[0]?.index, 0);
  });

  it('filters two parallel tool calls interleaved fragment by fragment, keeping ids, names and indices', () => {
    const chunks = [
      chunkOf(toolDelta(0, toolFragment(0, '{"to":"jane.d', { id: 'call_a', name: 'send_mail' }))),
      chunkOf(toolDelta(0, toolFragment(1, '{"card":"4111 ', { id: 'call_b', name: 'charge' }))),
      chunkOf(toolDelta(0, toolFragment(0, 'oe@examp'))),
      chunkOf(toolDelta(0, toolFragment(1, '1111 1111'))),
      // One chunk carrying fragments of both calls.
      chunkOf(toolDelta(0, toolFragment(0, 'le.com","body":"hi"}'), toolFragment(1, ' 1111"}'))),
      chunkOf({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
    ];
    const { out, blocked } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
    assert.equal(blocked, false);
    for (const leak of ['jane', 'oe@examp', '4111', '1111 1111'])
      assert.ok(!released(out).includes(leak), leak);
    const tools = assemble(out).get(0)?.tools;
    assert.deepEqual(tools?.get(0), {
      id: 'call_a',
      type: 'function',
      name: 'send_mail',
      arguments: '{"to":"[REDACTED:EMAIL]","body":"hi"}',
    });
    assert.deepEqual(tools.get(1), {
      id: 'call_b',
      type: 'function',
      name: 'charge',
      arguments: '{"card":"[REDACTED:CREDIT_CARD]"}',
    });
    // Every tool call item released keeps its index; ids and names only ever on each call's first fragment.
    const items = out.flatMap((c) =>
      (c.choices as { delta: { tool_calls?: Obj[] } }[]).flatMap((ch) => ch.delta.tool_calls ?? []),
    );
    assert.ok(items.every((t) => t.index === 0 || t.index === 1));
    assert.deepEqual(
      items.filter((t) => 'id' in t).map((t) => t.id),
      ['call_a', 'call_b'],
    );
  });

  it('adds a tool call item for held-back text when the finishing chunk has none, and appends to one it has', () => {
    const chunks = [
      chunkOf(toolDelta(0, toolFragment(0, `{"to":"${EMAIL}"`, { id: 'call_a', name: 'mail' }))),
      chunkOf(toolDelta(0, toolFragment(1, `{"to":"${EMAIL}"`, { id: 'call_b', name: 'mail' }))),
      chunkOf({ index: 0, delta: { tool_calls: [toolFragment(1, '}')] }, finish_reason: 'tool_calls' }),
    ];
    const { out } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
    const last = (out.at(-1)?.choices as { delta: { tool_calls: Obj[] } }[])[0]?.delta.tool_calls;
    assert.deepEqual(last, [
      { index: 1, function: { arguments: '[REDACTED:EMAIL]"}' } },
      { index: 0, function: { arguments: '[REDACTED:EMAIL]"' } },
    ]);
    const tools = assemble(out).get(0)?.tools;
    assert.equal(tools?.get(0)?.arguments, '{"to":"[REDACTED:EMAIL]"');
    assert.equal(tools.get(1)?.arguments, '{"to":"[REDACTED:EMAIL]"}');
  });

  it('without finish_reason, flushes every held-back field in one extra chunk at the end', () => {
    const chunks = [
      chunkOf(
        { index: 0, delta: { reasoning_content: `Mail ${EMAIL}` }, finish_reason: null },
        { index: 1, delta: { refusal: `No: ${CARD}` }, finish_reason: null },
      ),
      chunkOf(toolDelta(0, toolFragment(2, `{"to":"${EMAIL}"}`, { id: 'call_c', name: 'mail' }))),
      chunkOf({
        index: 0,
        delta: { function_call: { name: 'f', arguments: `{"c":"${CARD}"}` } },
        finish_reason: null,
      }),
    ];
    const { out } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
    assert.equal(out.length, chunks.length + 1);
    const tail = out.at(-1) as { id: string; model: string; choices: Obj[] };
    assert.equal(tail.id, 's1');
    assert.equal(tail.model, 'm');
    assert.deepEqual(
      tail.choices.map((c) => [c.index, c.finish_reason]),
      [
        [0, null],
        [1, null],
      ],
    );
    const a = assemble(out);
    assert.equal(a.get(0)?.reasoning_content, 'Mail [REDACTED:EMAIL]');
    assert.equal(a.get(0)?.function_call, '{"c":"[REDACTED:CREDIT_CARD]"}');
    assert.deepEqual(a.get(0)?.tools.get(2), {
      id: 'call_c',
      type: 'function',
      name: 'mail',
      arguments: '{"to":"[REDACTED:EMAIL]"}',
    });
    assert.equal(a.get(1)?.refusal, 'No: [REDACTED:CREDIT_CARD]');
  });

  it('catches PII split across refusal and reasoning deltas', () => {
    const text = `Contact ${EMAIL} or card ${CARD} please`;
    const pieces = text.match(/[\s\S]{1,3}/g) ?? [];
    for (const field of ['refusal', 'reasoning_content'] as const) {
      const chunks = [
        ...pieces.map((p) => chunkOf({ index: 0, delta: { [field]: p }, finish_reason: null })),
        chunkOf({ index: 0, delta: {}, finish_reason: 'stop' }),
      ];
      const { out } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
      assert.equal(
        assemble(out).get(0)?.[field],
        'Contact [REDACTED:EMAIL] or card [REDACTED:CREDIT_CARD] please',
      );
      assert.ok(!released(out).includes('@ex'));
    }
  });

  it('catches a card number spelled with zero-width spaces and fullwidth digits, streamed and not', () => {
    const spelled = `${Array.from('4111111111111111').join('\u200b')} and ４１１１ １１１１ １１１１ １１１１`;
    const whole = new OutputFilter(engine, redact).filterJson('chat', {
      choices: [{ index: 0, message: { role: 'assistant', content: `cards ${spelled}.` } }],
    });
    const message = (whole.body as { choices: { message: { content: string } }[] }).choices[0]?.message;
    assert.equal(message?.content, 'cards [REDACTED:CREDIT_CARD] and [REDACTED:CREDIT_CARD].');
    const pieces = `cards ${spelled}.`.match(/[\s\S]{1,2}/g) ?? [];
    const chunks = [
      ...pieces.map((p) => chunkOf({ index: 0, delta: { content: p }, finish_reason: null })),
      chunkOf({ index: 0, delta: {}, finish_reason: 'stop' }),
    ];
    const { out } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
    assert.equal(assemble(out).get(0)?.content, 'cards [REDACTED:CREDIT_CARD] and [REDACTED:CREDIT_CARD].');
  });

  it('scans streamed content parts, and catches PII split across audio transcript deltas', () => {
    const parts = chunkOf({
      index: 0,
      delta: { content: [{ type: 'text', text: `Mail ${EMAIL} now` }] },
      finish_reason: null,
    });
    const pieces = `Card ${CARD} ok`.match(/[\s\S]{1,3}/g) ?? [];
    const chunks = [
      parts,
      ...pieces.map((p) => chunkOf({ index: 0, delta: { audio: { transcript: p } }, finish_reason: null })),
      chunkOf({ index: 0, delta: {}, finish_reason: 'stop' }),
    ];
    const filter = new OutputFilter(engine, redact).stream('chat');
    const { out, blocked } = runStream(filter, chunks);
    assert.equal(blocked, false);
    const text = released(out);
    assert.ok(!text.includes('@ex') && !text.includes('4111'), text);
    assert.ok(text.includes('Mail [REDACTED:EMAIL] now'), text);
    const transcript = out
      .flatMap((c) => c.choices as { delta?: { audio?: { transcript?: string } } }[])
      .map((c) => c.delta?.audio?.transcript ?? '')
      .join('');
    assert.equal(transcript, 'Card [REDACTED:CREDIT_CARD] ok');
    assert.equal(filter.counts.get('EMAIL:redact'), 1);
    assert.equal(filter.counts.get('CREDIT_CARD:redact'), 1);
  });

  it('ends the stream when a blocked entity arrives in tool call arguments, before any of it is released', () => {
    const chunks = [
      chunkOf(toolDelta(0, toolFragment(0, '{"note":"ok", "card":"4111 1111', { id: 'call_a', name: 'f' }))),
      chunkOf(toolDelta(0, toolFragment(0, ' 1111 1111"'))),
      chunkOf(toolDelta(0, toolFragment(0, ', "more": "text that follows the card number here"}'))),
      chunkOf({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
    ];
    const filter = new OutputFilter(engine, blockCards).stream('chat');
    const { out, blocked } = runStream(filter, chunks);
    assert.equal(blocked, true);
    assert.equal(filter.blocked, true);
    assert.ok(!released(out).includes('4111'));
    assert.equal(filter.chunk(chunkOf(toolDelta(0, toolFragment(0, 'x')))), false);
  });

  it('filters text that arrives for a choice after its finish_reason instead of passing it through', () => {
    const chunks = [
      chunkOf({ index: 0, delta: { content: 'done' }, finish_reason: 'stop' }),
      chunkOf(toolDelta(0, toolFragment(0, `{"to":"${EMAIL}"}`, { id: 'call_late', name: 'mail' }))),
      chunkOf({ index: 0, delta: { content: `late ${EMAIL}` }, finish_reason: null }),
    ];
    const { out } = runStream(new OutputFilter(engine, redact).stream('chat'), chunks);
    assert.ok(!released(out).includes(EMAIL));
    const a = assemble(out).get(0);
    assert.equal(a?.content, 'donelate [REDACTED:EMAIL]');
    assert.equal(a.tools.get(0)?.arguments, '{"to":"[REDACTED:EMAIL]"}');
  });

  it('fails closed when an upstream opens more streams than the bound', () => {
    const filter = new OutputFilter(engine, redact).stream('chat');
    const calls = Array.from({ length: MAX_OPEN_STREAMS + 1 }, (_, i) => toolFragment(i, 'x'));
    assert.equal(filter.chunk(chunkOf(toolDelta(0, ...calls))), false);
    assert.equal(filter.blocked, true);
    assert.equal(filter.finish(), undefined);
    const choices = new OutputFilter(engine, redact).stream('chat');
    const roles = Array.from({ length: MAX_OPEN_STREAMS + 1 }, (_, index) => ({
      index,
      delta: { role: 'assistant' },
      finish_reason: null,
    }));
    assert.equal(choices.chunk(chunkOf(...roles)), false);
  });

  it('any chunking of streamed tool call arguments releases the one-shot result (property)', () => {
    const piece = fc.oneof(
      fc.constantFrom(EMAIL, CARD, '4111111111111111', '+44 20 7946 0958', 'GB82 WEST 1234 5698 7654 32'),
      fc.constantFrom('{"to":"', '","card":"', '"}', ', ', ':', ' ', '\\"', '\\u0040', '[', ']', '1', '@'),
      fc.string({ maxLength: 10 }),
    );
    const args = fc.array(piece, { minLength: 1, maxLength: 8 }).map((parts) => parts.join(''));
    const split = (text: string, points: number[]): string[] => {
      const cuts = [...new Set(points.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
      const out: string[] = [];
      let prev = 0;
      for (const c of cuts) {
        out.push(text.slice(prev, c));
        prev = c;
      }
      out.push(text.slice(prev));
      return out;
    };
    const cuts = fc.array(fc.nat({ max: 500 }), { maxLength: 10 });
    fc.assert(
      fc.property(
        args,
        args,
        cuts,
        cuts,
        fc.array(fc.boolean(), { maxLength: 30 }),
        fc.boolean(),
        (a0, a1, cuts0, cuts1, order, withFinish) => {
          const queues = [split(a0, cuts0), split(a1, cuts1)];
          const chunks: Obj[] = [];
          const started = [false, false];
          const take = (i: 0 | 1): void => {
            const fragment = queues[i]?.shift();
            if (fragment === undefined) return;
            const first = started[i] === true ? undefined : { id: `call_${i}`, name: `f${i}` };
            started[i] = true;
            chunks.push(chunkOf(toolDelta(0, toolFragment(i, fragment, first))));
          };
          for (const o of order) take(o ? 1 : 0);
          while (queues[0]?.length !== 0 || queues[1]?.length !== 0) {
            take(0);
            take(1);
          }
          if (withFinish) chunks.push(chunkOf({ index: 0, delta: {}, finish_reason: 'tool_calls' }));
          const filter = new OutputFilter(engine, redact).stream('chat');
          const { out, blocked } = runStream(filter, chunks);
          assert.equal(blocked, false);
          const tools = assemble(out).get(0)?.tools;
          const expected = [engine.apply(a0, redact), engine.apply(a1, redact)];
          for (const i of [0, 1]) {
            assert.equal(tools?.get(i)?.arguments, expected[i]?.text);
            assert.equal(tools?.get(i)?.id, `call_${i}`);
            assert.equal(tools.get(i)?.name, `f${i}`);
          }
          const findings = expected.flatMap((r) => r.findings).length;
          assert.equal(
            [...filter.counts.values()].reduce((s, n) => s + n, 0),
            findings,
          );
        },
      ),
      { numRuns: 200, seed: 13 },
    );
  });
});

describe('tool call filtering through the gateway', () => {
  it('redacts non-streamed and streamed tool call arguments end to end, and blocks per policy', async () => {
    const streamed = [
      chunkOf({ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }),
      chunkOf(toolDelta(0, toolFragment(0, '{"to":"jane.d', { id: 'call_a', name: 'send_mail' }))),
      chunkOf(toolDelta(0, toolFragment(1, '{"card":"4111 1111', { id: 'call_b', name: 'charge' }))),
      chunkOf(toolDelta(0, toolFragment(0, 'oe@example.com"}'))),
      chunkOf(toolDelta(0, toolFragment(1, ' 1111 1111"}'))),
      chunkOf({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
    ];
    const upstream = await startUpstream({
      raw: (_req, res, body) => {
        if (body.stream === true) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          for (const c of streamed) res.write(`data: ${JSON.stringify(c)}\n\n`);
          res.end('data: [DONE]\n\n');
          return;
        }
        const message = {
          role: 'assistant',
          content: null,
          tool_calls: [toolCall(0, 'call_a', 'charge', `{"card":"${CARD}","to":"${EMAIL}"}`)],
        };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(chatResponse(message)));
      },
    });
    const gw = await startGateway([
      endpoint('chat', upstream.url),
      endpoint('strict', upstream.url, { outputPolicy: { actions: { CREDIT_CARD: 'block' } } }),
    ]);
    try {
      const plain = await post(`${gw.url}/v1/chat/completions`, chatBody('pay'));
      assert.equal(plain.status, 200);
      assert.ok(!plain.text.includes(EMAIL) && !plain.text.includes(CARD));
      const calls = (plain.json.choices as { message: { tool_calls: Obj[] } }[])[0]?.message.tool_calls;
      assert.deepEqual(calls, [
        toolCall(0, 'call_a', 'charge', '{"card":"[REDACTED:CREDIT_CARD]","to":"[REDACTED:EMAIL]"}'),
      ]);
      const blocked = await post(`${gw.url}/v1/chat/completions`, { ...chatBody('pay'), model: 'strict' });
      assert.equal(blocked.status, 422);
      assert.equal(blocked.json.error?.code, 'output_blocked');
      assert.ok(!blocked.text.includes('4111'));

      const stream = await post(`${gw.url}/v1/chat/completions`, chatBody('pay', { stream: true }));
      assert.equal(stream.status, 200);
      const events = sseData(stream.text);
      assert.equal(events.at(-1), '[DONE]');
      assert.ok(!stream.text.includes('jane') && !stream.text.includes('4111'));
      const tools = assemble(events.filter((e): e is Obj => e !== '[DONE]')).get(0)?.tools;
      assert.equal(tools?.get(0)?.arguments, '{"to":"[REDACTED:EMAIL]"}');
      assert.equal(tools.get(0)?.id, 'call_a');
      assert.equal(tools.get(1)?.arguments, '{"card":"[REDACTED:CREDIT_CARD]"}');
      assert.equal(tools.get(1)?.name, 'charge');

      const strictStream = await post(`${gw.url}/v1/chat/completions`, {
        ...chatBody('pay', { stream: true }),
        model: 'strict',
      });
      const strictEvents = sseData(strictStream.text);
      assert.ok(!strictEvents.includes('[DONE]'));
      assert.equal((strictEvents.at(-1) as { error: { code: string } }).error.code, 'output_blocked');
      assert.ok(!strictStream.text.includes('4111'));
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
