import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditHasher, JsonLinesAuditRecorder } from '../../src/audit/index.ts';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { AuditTrail, ContentHasher, gatewayOf } from '../../src/gateway/index.ts';
import { chatBody, endpoint, post, sseData, startGateway, startUpstream } from './support.ts';
import type { TestGateway, TestUpstream } from './support.ts';

/**
 * The real JSON-lines recorder behind a switch: `failing` makes records reject (as a full disk or a closed log
 * would), `hold()` keeps records from reaching the file until `release()` (as a slow fsync would).
 */
class SwitchedRecorder implements AuditRecorder {
  failing = false;
  #held: { event: AuditEvent; resolve: () => void; reject: (err: unknown) => void }[] | undefined;
  readonly #inner: JsonLinesAuditRecorder;

  constructor(inner: JsonLinesAuditRecorder) {
    this.#inner = inner;
  }

  hold(): void {
    this.#held ??= [];
  }

  release(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const h of held) this.#inner.record(h.event).then(h.resolve, h.reject);
  }

  get heldCount(): number {
    return this.#held?.length ?? 0;
  }

  record(event: AuditEvent): Promise<void> {
    if (this.failing) return Promise.reject(new Error('disk full'));
    const held = this.#held;
    if (held !== undefined) {
      return new Promise((resolve, reject) => held.push({ event, resolve, reject }));
    }
    return this.#inner.record(event);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

const SECRET = 'confidential-prompt-text-4711';

function events(file: string): (Record<string, unknown> & { details: Record<string, unknown> })[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown> & { details: Record<string, unknown> });
}

describe('write-behind audit with a breaker', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let recorder: SwitchedRecorder;
  let file: string;

  before(async () => {
    upstream = await startUpstream();
    file = path.join(mkdtempSync(path.join(tmpdir(), 'warden-gw-trail-')), 'audit.jsonl');
    recorder = new SwitchedRecorder(await JsonLinesAuditRecorder.open(file));
    gw = await startGateway([endpoint('chat', upstream.url)], { audit: recorder });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('releases the response once the record is handed over, before it is committed', async () => {
    const gateway = gatewayOf(gw.app);
    recorder.hold();
    const res = await post(`${gw.url}/v1/chat/completions`, chatBody('hello'));
    assert.equal(res.status, 200);
    assert.equal(recorder.heldCount, 1);
    assert.equal(gateway.auditAvailable, true);
    recorder.release();
    await gateway.auditSettled();
    const last = events(file).at(-1);
    assert.equal(last?.outcome, 'success');
    assert.equal(last.details.status, 200);
  });

  it('trips on a failed record: the next request gets 503 audit_unavailable and never reaches the model', async () => {
    const gateway = gatewayOf(gw.app);
    recorder.failing = true;
    // Handed over before the failure was known: the documented write-behind window.
    const first = await post(`${gw.url}/v1/chat/completions`, chatBody(`first ${SECRET}`));
    assert.equal(first.status, 200);
    await gateway.auditSettled();
    assert.equal(gateway.auditAvailable, false);

    upstream.received.length = 0;
    const refused = await post(`${gw.url}/v1/chat/completions`, chatBody(`second ${SECRET}`));
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error?.code, 'audit_unavailable');
    assert.ok(!refused.text.includes(SECRET));
    assert.equal(upstream.received.length, 0, 'refused before the upstream call');

    // Every refusal answers 503 while the recorder keeps failing, unauthenticated callers included.
    const anonymous = await post(`${gw.url}/v1/chat/completions`, chatBody('x'), { token: null });
    assert.equal(anonymous.status, 503);
    assert.equal(anonymous.json.error?.code, 'audit_unavailable');

    const metrics = await gateway.metrics.registry.metrics();
    assert.match(metrics, /warden_gateway_audit_failures_total \d+/);
    assert.match(metrics, /warden_gateway_audit_breaker_open 1/);
  });

  it('recovers: the first refusal recorded after the failure closes the breaker', async () => {
    const gateway = gatewayOf(gw.app);
    recorder.failing = false;
    // Its record is the probe: it succeeds, but this request was already refused.
    const probe = await post(`${gw.url}/v1/chat/completions`, chatBody('probe'));
    assert.equal(probe.status, 503);
    assert.equal(gateway.auditAvailable, true);
    const served = await post(`${gw.url}/v1/chat/completions`, chatBody('after recovery'));
    assert.equal(served.status, 200);
    await gateway.auditSettled();
    const recorded = events(file);
    const probeEvent = recorded.find((e) => e.reason === 'audit_unavailable');
    assert.equal(probeEvent?.outcome, 'failure');
    assert.equal(probeEvent.details.status, 503);
    assert.equal(recorded.at(-1)?.outcome, 'success');
    assert.match(await gateway.metrics.registry.metrics(), /warden_gateway_audit_breaker_open 0/);
  });

  it('keeps at most 256 characters of the User-Agent, as the server does', async () => {
    const res = await post(`${gw.url}/v1/chat/completions`, chatBody('ua'), {
      headers: { 'user-agent': `probe/${'x'.repeat(8000)}` },
    });
    assert.equal(res.status, 200);
    await gatewayOf(gw.app).auditSettled();
    const last = events(file).at(-1);
    assert.equal(String(last?.userAgent).length, 256);
    assert.match(String(last?.userAgent), /^probe\/x+$/);
  });

  it('writes no content in clear, whatever happened to the records', () => {
    const text = readFileSync(file, 'utf8');
    for (const needle of [SECRET, 'hello', 'after recovery', 'token-alice']) {
      assert.ok(!text.includes(needle), `audit log contains ${needle}`);
    }
    assert.match(text, /"requestHash":"hmac-sha256:[0-9a-f]{64}"/);
  });

  it('ends a stream with an error event instead of [DONE] when the breaker opened meanwhile', async () => {
    const gateway = gatewayOf(gw.app);
    let resume = (): void => undefined;
    const paused = new Promise<void>((resolve) => {
      resume = resolve;
    });
    upstream.received.length = 0;
    upstream.script = {
      raw: (_req, res, body) => {
        if (body.stream !== true) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"choices":[{"index":0,"delta":{"content":"part one "}}]}\n\n');
        void paused.then(() => {
          res.write('data: {"choices":[{"index":0,"delta":{"content":"two"},"finish_reason":"stop"}]}\n\n');
          res.end('data: [DONE]\n\n');
        });
      },
    };
    try {
      const streamed = post(`${gw.url}/v1/chat/completions`, chatBody('streamed', { stream: true }));
      while (upstream.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      // Another request's record fails while the stream is in flight.
      recorder.failing = true;
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('concurrent'))).status, 200);
      await gateway.auditSettled();
      assert.equal(gateway.auditAvailable, false);
      resume();
      const res = await streamed;
      assert.equal(res.status, 200);
      const data = sseData(res.text);
      assert.ok(!data.includes('[DONE]'));
      assert.deepEqual(data.at(-1), {
        error: { code: 'audit_unavailable', message: 'the audit trail is unavailable' },
      });
    } finally {
      upstream.script = {};
      recorder.failing = false;
    }
    assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('probe'))).status, 503);
    assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('ok'))).status, 200);
  });
});

describe('audit trail bounds and shutdown', () => {
  it('refuses new requests while too many records are pending, and the refusal waits for its record', async () => {
    const upstream = await startUpstream();
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'warden-gw-trail-')), 'audit.jsonl');
    const recorder = new SwitchedRecorder(await JsonLinesAuditRecorder.open(file));
    const gw = await startGateway([endpoint('chat', upstream.url)], { audit: recorder, maxPendingAudit: 1 });
    try {
      recorder.hold();
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('one'))).status, 200);
      const refused = post(`${gw.url}/v1/chat/completions`, chatBody('two'));
      // The refusal is answered only once its own record is committed.
      while (recorder.heldCount < 2) await new Promise((resolve) => setImmediate(resolve));
      recorder.release();
      const res = await refused;
      assert.equal(res.status, 503);
      assert.equal(res.json.error?.code, 'audit_unavailable');
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('three'))).status, 200);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });

  it('close() waits for every record handed over', async () => {
    const upstream = await startUpstream();
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'warden-gw-trail-')), 'audit.jsonl');
    const inner = await JsonLinesAuditRecorder.open(file);
    const recorder = new SwitchedRecorder(inner);
    const gw = await startGateway([endpoint('chat', upstream.url)], { audit: recorder });
    recorder.hold();
    assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('pending'))).status, 200);
    let closed = false;
    const closing = gw.app.close().then(() => {
      closed = true;
    });
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false, 'close is waiting for the pending record');
    recorder.release();
    await closing;
    assert.equal(events(file).length, 1);
    await inner.close();
    await upstream.close();
  });

  it('treats a recorder that throws synchronously as a failed record', async () => {
    const trail = new AuditTrail({
      record: () => {
        throw new Error('boom');
      },
      close: () => Promise.resolve(),
    });
    assert.equal(await trail.hand(sampleEvent()), false);
    assert.equal(trail.open, true);
    assert.equal(trail.accepts(), false);
  });

  it('closes only on the success of a record handed over after the failure', async () => {
    const pending: { resolve: () => void; reject: (err: unknown) => void }[] = [];
    const transitions: boolean[] = [];
    let failures = 0;
    const trail = new AuditTrail(
      {
        record: () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })),
        close: () => Promise.resolve(),
      },
      {
        onFailure: () => {
          failures++;
        },
        onBreaker: (open) => transitions.push(open),
      },
    );
    const a = trail.hand(sampleEvent());
    const b = trail.hand(sampleEvent());
    pending[0]?.reject(new Error('io'));
    assert.equal(await a, false);
    assert.equal(trail.open, true);
    // b was in flight when a failed: its success proves nothing about the recorder now.
    pending[1]?.resolve();
    assert.equal(await b, true);
    assert.equal(trail.open, true);
    const probe = trail.hand(sampleEvent());
    pending[2]?.resolve();
    assert.equal(await probe, true);
    assert.equal(trail.open, false);
    assert.deepEqual(transitions, [true, false]);
    assert.equal(failures, 1);
    assert.equal(trail.pending, 0);
    await trail.settled();
  });

  it('rejects a non-positive pending bound', () => {
    const recorder: AuditRecorder = { record: () => Promise.resolve(), close: () => Promise.resolve() };
    assert.throws(() => new AuditTrail(recorder, { maxPending: 0 }), TypeError);
    assert.throws(() => new AuditTrail(recorder, { maxPending: 1.5 }), TypeError);
  });

  it('hashes content in the audit face format', () => {
    const hasher = new ContentHasher(Buffer.alloc(32, 1));
    const h = hasher.hash('x');
    assert.match(h, /^hmac-sha256:[0-9a-f]{64}$/);
    assert.equal(hasher.hash(Buffer.from('x')), h);
    assert.notEqual(new ContentHasher(Buffer.alloc(32, 2)).hash('x'), h);
    assert.equal(new AuditHasher(Buffer.alloc(32, 1)).hash('x'), h);
  });

  it('hashes content given in pieces as its concatenation, ignoring pieces after the digest', () => {
    const hasher = new ContentHasher(Buffer.alloc(32, 1));
    const pieces = ['data: {"a":"é"}\n\n', '', Buffer.from('data: 😀\n\n').toString(), 'tail'];
    const incremental = hasher.start();
    for (const piece of pieces) incremental.update(piece);
    const digest = incremental.digest();
    assert.equal(digest, hasher.hash(pieces.join('')));
    incremental.update('data: [DONE]\n\n');
    assert.equal(incremental.digest(), digest);
  });
});

function sampleEvent(): AuditEvent {
  return {
    action: 'endpoint.invoke',
    principal: { id: 'user:test', authMethod: 'token' },
    resource: 'endpoint:chat',
    outcome: 'success',
  };
}
