import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { GatewayError, Upstream } from '../../src/gateway/index.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** A real HTTP server whose answer each test scripts; counts the requests it received. */
async function startServer(): Promise<{
  url: string;
  hits: () => number;
  answer: (h: Handler) => void;
  close: () => Promise<void>;
}> {
  let handler: Handler = (_req, res) => {
    res.end('{}');
  };
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handler(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  const port = typeof a === 'object' && a !== null ? a.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    hits: () => hits,
    answer: (h) => {
      handler = h;
      hits = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

async function gatewayError(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected the call to fail');
}

const call = (idempotent: boolean, body = Buffer.from('{"a":1}')) => ({
  path: '/v1/x',
  body,
  idempotent,
  headers: { 'x-request-id': 'r1' },
});

describe('Upstream.exchange (buffered calls through undici dispatch)', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let upstream: Upstream;

  before(async () => {
    server = await startServer();
    upstream = new Upstream({ url: `${server.url}/base/`, retries: 2, timeoutMs: 2000, idleTimeoutMs: 300 });
  });
  after(async () => {
    await upstream.close();
    await server.close();
  });

  it('posts the body with its headers and collects the answer, with or without content-length', async () => {
    let seen: { path?: string; type?: string; id?: string; body?: string } = {};
    server.answer((req, res, body) => {
      seen = {
        path: req.url ?? '',
        type: req.headers['content-type'] ?? '',
        id: String(req.headers['x-request-id']),
        body: body.toString(),
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      // Three writes without a length: chunked, several data callbacks.
      res.write('{"x":');
      res.write('"é"');
      res.end('}');
    });
    const chunked = await upstream.exchange(call(false), 1024);
    assert.deepEqual(seen, { path: '/base/v1/x', type: 'application/json', id: 'r1', body: '{"a":1}' });
    assert.equal(chunked.statusCode, 200);
    assert.equal(chunked.attempts, 1);
    assert.deepEqual(JSON.parse(chunked.body.toString('utf8')), { x: 'é' });

    server.answer((_req, res) => {
      res.writeHead(200, { 'content-length': '7' }).end('{"y":2}');
    });
    const sized = await upstream.exchange(call(false), 7);
    assert.equal(sized.body.toString(), '{"y":2}');
  });

  it('refuses an answer larger than the bound, announced or not', async () => {
    server.answer((_req, res) => {
      res.writeHead(200, { 'content-length': '11' }).end('01234567890');
    });
    assert.equal(await gatewayError(upstream.exchange(call(true), 10)), 'upstream_malformed');
    assert.equal(server.hits(), 1, 'a refused size is never retried');
    server.answer((_req, res) => {
      res.writeHead(200);
      res.write('012345');
      res.end('67890');
    });
    assert.equal(await gatewayError(upstream.exchange(call(true), 10)), 'upstream_malformed');
    // The pool stays usable after an aborted answer.
    server.answer((_req, res) => {
      res.end('{}');
    });
    assert.equal((await upstream.exchange(call(true), 10)).body.toString(), '{}');
  });

  it('returns other statuses without their body; retries 502/503/504 only for idempotent calls', async () => {
    server.answer((_req, res) => {
      res.writeHead(400).end('secret detail from upstream');
    });
    const refused = await upstream.exchange(call(true), 1024);
    assert.equal(refused.statusCode, 400);
    assert.equal(refused.body.length, 0);
    assert.equal(server.hits(), 1);

    let n = 0;
    server.answer((_req, res) => {
      n++;
      if (n <= 2) res.writeHead(503).end('busy');
      else res.end('{"ok":true}');
    });
    const retried = await upstream.exchange(call(true), 1024);
    assert.equal(retried.statusCode, 200);
    assert.equal(retried.attempts, 3);
    assert.equal(server.hits(), 3);

    server.answer((_req, res) => {
      res.writeHead(503).end('busy');
    });
    const once = await upstream.exchange(call(false), 1024);
    assert.equal(once.statusCode, 503);
    assert.equal(server.hits(), 1);
  });

  it('never retries once a response started: a connection cut mid-body is upstream_unavailable', async () => {
    server.answer((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    assert.equal(await gatewayError(upstream.exchange(call(true), 1024)), 'upstream_unavailable');
    assert.equal(server.hits(), 1);
  });

  it('maps a stalled body to upstream_timeout and a refused connection to upstream_unavailable', async () => {
    server.answer((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"stalled":');
    });
    assert.equal(await gatewayError(upstream.exchange(call(false), 1024)), 'upstream_timeout');

    const closed = await startServer();
    const url = closed.url;
    await closed.close();
    const nowhere = new Upstream({ url, retries: 1 });
    try {
      assert.equal(await gatewayError(nowhere.exchange(call(true), 1024)), 'upstream_unavailable');
    } finally {
      await nowhere.close();
    }
  });

  it('an aborted signal ends the call', async () => {
    server.answer((_req, res) => {
      setTimeout(() => res.end('{}'), 200);
    });
    const controller = new AbortController();
    const pending = upstream.exchange({ ...call(false), signal: controller.signal }, 1024);
    setTimeout(() => {
      controller.abort();
    }, 20);
    assert.equal(await gatewayError(pending), 'upstream_unavailable');
    // Aborted with the gateway's own reason (the client went away): that reason comes back, on both call styles.
    const withReason = new AbortController();
    const exchanged = upstream.exchange({ ...call(false), signal: withReason.signal }, 1024);
    const posted = upstream.post({ ...call(true), signal: withReason.signal });
    setTimeout(() => {
      withReason.abort(new GatewayError('client_closed', 499, 'gone'));
    }, 20);
    assert.equal(await gatewayError(exchanged), 'client_closed');
    assert.equal(await gatewayError(posted), 'client_closed');
  });

  it('property: any chunking of any body is returned intact within the bound and refused beyond it', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 0, maxLength: 6 }),
        fc.integer({ min: 0, max: 1200 }),
        fc.boolean(),
        async (pieces, bound, announce) => {
          const whole = Buffer.concat(pieces.map((p) => Buffer.from(p)));
          server.answer((_req, res) => {
            res.writeHead(200, announce ? { 'content-length': String(whole.length) } : {});
            for (const p of pieces) res.write(p);
            res.end();
          });
          if (whole.length <= bound) {
            const res = await upstream.exchange(call(false), bound);
            assert.ok(res.body.equals(whole));
          } else {
            assert.equal(await gatewayError(upstream.exchange(call(false), bound)), 'upstream_malformed');
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
