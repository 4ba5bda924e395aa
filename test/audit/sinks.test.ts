import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, appendFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/recorder.ts';
import {
  RotatingFileSink,
  SpoolFullError,
  SyslogTlsSink,
  WebhookSink,
  escapeParamValue,
  parseRetryAfter,
} from '../../src/audit/sinks/index.ts';

let dir: string;
let caPem: string;
let otherCaPem: string;
let serverKey: string;
let serverCert: string;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-sinks-'));
  const ca = (name: string): void => {
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
        .concat(['-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`, '-days', '2'])
        .concat(['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']),
    );
  };
  ca('ca');
  ca('otherca');
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'srv.key',
    ].concat(['-out', 'srv.csr', '-subj', '/CN=localhost']),
  );
  const ext = join(dir, 'ext.cnf');
  await appendFile(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(
    ['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
      '-out',
      'srv.crt',
      '-days',
      '2',
      '-extfile',
      ext,
    ]),
  );
  caPem = await readFile(join(dir, 'ca.crt'), 'utf8');
  otherCaPem = await readFile(join(dir, 'otherca.crt'), 'utf8');
  serverKey = await readFile(join(dir, 'srv.key'), 'utf8');
  serverCert = await readFile(join(dir, 'srv.crt'), 'utf8');
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ev(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return {
    action: 'kms.decrypt',
    principal: { id: `user-${i}`, authMethod: 'token' },
    resource: `key/${i}`,
    outcome: i % 3 === 0 ? 'denied' : 'success',
    details: { seq: i },
    ...extra,
  };
}

const seqOf = (r: { details?: { seq?: unknown } }): number => Number(r.details?.seq);

describe('RotatingFileSink', () => {
  it('size rotation: every event exactly once, files ≤ maxBytes, mode 0600, ordered names', async () => {
    const d = await mkdtemp(join(dir, 'rot-'));
    const path = join(d, 'audit.jsonl');
    const sink = await RotatingFileSink.open({ path, maxBytes: 2000 });
    const all: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      all.push(sink.record(ev(i)));
      if (i % 37 === 0) await Promise.all(all);
    }
    await Promise.all(all);
    const rotated = await sink.rotatedFiles();
    await sink.close();
    assert.ok(rotated.length >= 10, `${rotated.length} rotated files`);
    const files = [...rotated, path];
    const seen: number[] = [];
    for (const f of files) {
      const st = await stat(f);
      assert.equal(st.mode & 0o777, 0o600);
      assert.ok(st.size <= 2000, `${f} is ${st.size} bytes`);
      const text = await readFile(f, 'utf8');
      for (const line of text.split('\n').filter((l) => l.length > 0)) {
        seen.push(seqOf(JSON.parse(line) as { details?: { seq?: unknown } }));
      }
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 300 }, (_, i) => i),
      'in order, each exactly once',
    );
    assert.ok(rotated.every((f) => /audit-\d{8}T\d{6}\.\d{3}Z\.jsonl$/.test(f)));
  });

  it('time rotation and keep=N pruning', async () => {
    const d = await mkdtemp(join(dir, 'rot-'));
    const path = join(d, 'audit.jsonl');
    const sink = await RotatingFileSink.open({ path, maxAgeMs: 20, keep: 2 });
    for (let i = 0; i < 5; i++) {
      await sink.record(ev(i));
      await new Promise((r) => setTimeout(r, 30));
    }
    await sink.close();
    const names = (await readdir(d)).sort();
    assert.equal(names.length, 3, names.join(','));
    assert.ok(names.includes('audit.jsonl'));
    const current = JSON.parse(await readFile(path, 'utf8')) as {
      details: { seq: number };
      id: string;
      time: string;
    };
    assert.equal(current.details.seq, 4);
    assert.match(current.id, /^[0-9a-f-]{36}$/);
  });
});

interface SyslogMsg {
  pri: number;
  header: string[];
  sd: Map<string, Map<string, string>>;
  msg: string;
}

/** Parses one RFC 5424 message (header, structured data with §6.3.3 unescaping, MSG). */
function parse5424(m: string): SyslogMsg {
  const hm = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(m);
  assert.ok(hm, m.slice(0, 80));
  let pos = hm[0].length;
  const sd = new Map<string, Map<string, string>>();
  while (m[pos] === '[') {
    pos++;
    const idEnd = m.slice(pos).search(/[ \]]/) + pos;
    const id = m.slice(pos, idEnd);
    pos = idEnd;
    const params = new Map<string, string>();
    while (m[pos] === ' ') {
      pos++;
      const eq = m.indexOf('=', pos);
      const name = m.slice(pos, eq);
      assert.equal(m[eq + 1], '"');
      pos = eq + 2;
      let value = '';
      while (m[pos] !== '"') {
        if (m[pos] === '\\' && ['"', '\\', ']'].includes(m[pos + 1]!)) {
          value += m[pos + 1]!;
          pos += 2;
        } else {
          assert.notEqual(m[pos], ']', 'unescaped ] in PARAM-VALUE');
          value += m[pos]!;
          pos++;
        }
      }
      pos++;
      params.set(name, value);
    }
    assert.equal(m[pos], ']');
    pos++;
    sd.set(id, params);
  }
  assert.equal(m[pos], ' ');
  return { pri: Number(hm[1]), header: hm.slice(2, 7), sd, msg: m.slice(pos + 1) };
}

/** RFC 5425 octet-counting deframer over a TLS server. */
function syslogServer(onSocket?: (s: TLSSocket, count: number) => void) {
  const messages: SyslogMsg[] = [];
  let connections = 0;
  const server = createTlsServer({ key: serverKey, cert: serverCert, minVersion: 'TLSv1.2' }, (socket) => {
    connections++;
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const sp = buf.indexOf(0x20);
        if (sp < 0) return;
        const len = Number(buf.subarray(0, sp).toString());
        assert.ok(Number.isSafeInteger(len) && len > 0, 'frame length');
        if (buf.byteLength < sp + 1 + len) return;
        messages.push(parse5424(buf.toString('utf8', sp + 1, sp + 1 + len)));
        buf = buf.subarray(sp + 1 + len);
        onSocket?.(socket, messages.length);
      }
    });
    socket.on('error', () => undefined);
  });
  return { server, messages, connections: () => connections };
}

async function listen(server: {
  listen: (port: number, host: string, cb: () => void) => unknown;
  address: () => unknown;
}): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SyslogTlsSink', () => {
  it('escapes PARAM-VALUEs per RFC 5424 §6.3.3', () => {
    assert.equal(escapeParamValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
  });

  it('delivers RFC 5424 messages in RFC 5425 frames with structured data; reconnects', async () => {
    // The server drops the connection after the 3rd message: the sink must reconnect.
    const { server, messages, connections } = syslogServer((s, n) => {
      if (n === 3) s.destroy();
    });
    const port = await listen(server);
    const errors: Error[] = [];
    const sink = new SyslogTlsSink({
      host: 'localhost',
      port,
      ca: caPem,
      facility: 4,
      appName: 'warden-test',
      hostname: 'host one',
      procId: '42',
      backoff: { baseMs: 10, maxMs: 50 },
      onError: (e) => errors.push(e),
    });
    const tricky = 'value with "quotes", back\\slash and ] bracket, é ✓';
    await sink.record(ev(0, { reason: tricky, details: { seq: 0, 'we ird=key': tricky } }));
    await sink.record(ev(1));
    await sink.record(ev(2));
    await until(() => messages.length >= 3);
    await until(() => connections() === 1 && messages.length === 3);
    await new Promise((r) => setTimeout(r, 50)); // let the server close reach the client
    for (let i = 3; i < 10; i++) await sink.record(ev(i));
    await until(() => new Set(messages.map((m) => m.sd.get('wardenDetails@32473')?.get('seq'))).size === 10);
    await sink.close();
    server.close();
    assert.ok(connections() >= 2, 'reconnected');
    const m0 = messages[0]!;
    assert.equal(m0.pri, 4 * 8 + 5); // facility 4, denied → notice
    assert.deepEqual(m0.header.slice(1), ['host_one', 'warden-test', '42', 'kms.decrypt']);
    assert.match(m0.header[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const sd = m0.sd.get('warden@32473')!;
    assert.equal(sd.get('reason'), tricky);
    assert.equal(sd.get('principal'), 'user-0');
    assert.equal(sd.get('outcome'), 'denied');
    assert.equal(m0.sd.get('wardenDetails@32473')!.get('we_ird_key'), tricky);
    assert.ok(m0.msg.startsWith('\uFEFF'));
    const body = JSON.parse(m0.msg.slice(1)) as { id: string; reason: string };
    assert.equal(body.reason, tricky);
    assert.equal(body.id, sd.get('id'));
    assert.equal(messages[1]!.pri, 4 * 8 + 6); // success → informational
  });

  it('pins the CA: a server certificate from another CA is refused', async () => {
    const { server, messages } = syslogServer();
    const port = await listen(server);
    const errors: Error[] = [];
    const sink = new SyslogTlsSink({
      host: 'localhost',
      port,
      ca: otherCaPem,
      backoff: { baseMs: 10, maxMs: 20 },
      closeTimeoutMs: 100,
      onError: (e) => errors.push(e),
    });
    const p = sink.record(ev(1));
    await until(() => errors.length >= 2);
    await sink.close();
    await assert.rejects(p, { code: 'sink_closed' });
    server.close();
    assert.equal(messages.length, 0);
    assert.match(String(errors[0]), /certificate|self.signed|issuer/i);
  });
});

interface Received {
  id: string;
  details?: { seq?: unknown };
}

/** HTTPS SIEM double: dedupes on event id, records raw deliveries, programmable failures. */
function webhookServer() {
  const state = {
    unique: [] as Received[],
    ids: new Set<string>(),
    raw: 0,
    keys: [] as string[],
    /** Responses to give before behaving: e.g. [500 after processing] */
    script: [] as ({ status: number; retryAfter?: string; process?: boolean } | undefined)[],
    times: [] as number[],
  };
  const server: HttpsServer = createHttpsServer({ key: serverKey, cert: serverCert }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      state.times.push(Date.now());
      state.keys.push(String(req.headers['idempotency-key']));
      const step = state.script.shift();
      const events = (JSON.parse(body) as { events: Received[] }).events;
      if (step === undefined || step.process === true) {
        for (const e of events) {
          state.raw++;
          if (!state.ids.has(e.id)) {
            state.ids.add(e.id);
            state.unique.push(e);
          }
        }
      }
      const status = step?.status ?? 200;
      res.writeHead(status, step?.retryAfter !== undefined ? { 'retry-after': step.retryAfter } : {});
      res.end();
    });
  });
  return { server, state };
}

describe('WebhookSink', () => {
  it('parses Retry-After', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    const ms = parseRetryAfter(new Date(Date.now() + 5000).toUTCString())!;
    assert.ok(ms > 3000 && ms <= 5000, String(ms));
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });

  it('SIEM down → spooled; back up → delivered in order, once per id; lost acks deduplicated', async () => {
    const { server, state } = webhookServer();
    const port = await listen(server);
    server.close(); // down: connection refused; the port stays ours to reuse
    await new Promise((r) => setTimeout(r, 20));
    const spoolDir = join(dir, 'spool-a');
    const sink = await WebhookSink.open({
      url: `https://localhost:${port}/ingest`,
      ca: caPem,
      spoolDir,
      maxBatchEvents: 7,
      segmentBytes: 1500,
      backoff: { baseMs: 20, maxMs: 100 },
    });
    for (let i = 0; i < 40; i++) await sink.record(ev(i));
    assert.ok(sink.spooledBytes > 0);
    // Back up; the 1st batch is processed but answered 500 (lost ack), the 2nd gets 503 + Retry-After: 1.
    state.script.push({ status: 500, process: true }, { status: 503, retryAfter: '1' });
    server.listen(port, '127.0.0.1');
    await sink.flush();
    await sink.close();
    server.close();
    assert.deepEqual(
      state.unique.map(seqOf),
      Array.from({ length: 40 }, (_, i) => i),
    );
    assert.ok(state.raw > 40, 'the lost-ack batch was sent twice');
    assert.equal(state.keys[0], state.keys[1], 'retry keeps the Idempotency-Key');
    assert.ok(state.times[2]! - state.times[1]! >= 950, 'Retry-After honoured');
    assert.equal((await readdir(spoolDir)).filter((n) => n.startsWith('seg-')).length, 1);
  });

  it('the spool survives a restart: a new sink delivers what the old one spooled', async () => {
    const { server, state } = webhookServer();
    const port = await listen(server);
    server.close();
    const spoolDir = join(dir, 'spool-b');
    const opts = {
      url: `https://localhost:${port}/`,
      ca: caPem,
      spoolDir,
      segmentBytes: 1000,
      backoff: { baseMs: 20, maxMs: 50 },
    };
    const first = await WebhookSink.open(opts);
    for (let i = 0; i < 25; i++) await first.record(ev(i));
    await first.close();
    // A crash mid-append leaves a torn line; it was never acknowledged and must be dropped, not delivered.
    const segs = (await readdir(spoolDir)).filter((n) => n.startsWith('seg-')).sort();
    await appendFile(join(spoolDir, segs.at(-1)!), '{"id":"torn","act');
    server.listen(port, '127.0.0.1');
    const second = await WebhookSink.open(opts);
    for (let i = 25; i < 30; i++) await second.record(ev(i));
    await second.flush();
    await second.close();
    server.close();
    assert.deepEqual(
      state.unique.map(seqOf),
      Array.from({ length: 30 }, (_, i) => i),
    );
    assert.equal(state.raw, 30);
  });

  it("spool full: 'reject' fails closed; 'block' waits for delivery", async () => {
    const { server, state } = webhookServer();
    const port = await listen(server);
    server.close();
    const base = { url: `https://localhost:${port}/`, ca: caPem, backoff: { baseMs: 20, maxMs: 50 } };
    const rejecting = await WebhookSink.open({
      ...base,
      spoolDir: join(dir, 'spool-c'),
      maxSpoolBytes: 2000,
    });
    let accepted = 0;
    let err: unknown;
    for (let i = 0; i < 100 && err === undefined; i++) {
      try {
        await rejecting.record(ev(i));
        accepted++;
      } catch (e) {
        err = e;
      }
    }
    assert.ok(err instanceof SpoolFullError);
    assert.ok(accepted > 3 && accepted < 20, String(accepted));
    await rejecting.close();

    const blocking = await WebhookSink.open({
      ...base,
      spoolDir: join(dir, 'spool-d'),
      maxSpoolBytes: 2000,
      onSpoolFull: 'block',
      blockTimeoutMs: 10_000,
    });
    const pending = Array.from({ length: 30 }, (_, i) => blocking.record(ev(i)));
    let settled = 0;
    for (const p of pending) void p.then(() => settled++);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(settled < 30, 'callers are blocked while the SIEM is down');
    server.listen(port, '127.0.0.1');
    await Promise.all(pending);
    await blocking.flush();
    await blocking.close();
    assert.equal(state.unique.length, 30);
    // What the rejecting sink accepted before it filled up is still spooled and delivered on reopen.
    const reopened = await WebhookSink.open({ ...base, spoolDir: join(dir, 'spool-c'), maxSpoolBytes: 2000 });
    await reopened.flush();
    await reopened.close();
    server.close();
    assert.equal(state.unique.length, 30 + accepted);
  });
});
