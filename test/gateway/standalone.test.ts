import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import type { FastifyRequest } from 'fastify';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import {
  GatewayConfigError,
  loadStandaloneConfig,
  mirrorEntries,
  parseIntrospection,
  RemoteServableSource,
  startStandaloneGateway,
  RemoteAuthenticator,
  WardenLink,
} from '../../src/gateway/index.ts';
import type { RunningGateway } from '../../src/gateway/index.ts';
import { BOOTSTRAP_PRINCIPAL } from '../../src/server/index.ts';
import { tempDir } from '../envelope/support.ts';
import { GATEWAY_SERVICE_POLICY, chatBody, post, startUpstream } from './support.ts';
import type { TestUpstream } from './support.ts';
import { freePort } from '../support/net.ts';
import { alterChar } from '../support/tamper.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PASSWORD = 'correct horse battery staple 42';

/** Polls `probe` until it returns true (bounded): eventual effects without asserting a duration. */
async function eventually(probe: () => Promise<boolean>, what: string, tries = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return;
    await sleep(100);
  }
  assert.fail(`never happened: ${what}`);
}

/** The audit file once it holds a record matching each pattern. */
async function auditHolding(file: string, patterns: readonly RegExp[]): Promise<string> {
  let text = '';
  await eventually(
    async () => {
      text = await readFile(file, 'utf8').catch(() => '');
      return patterns.every((p) => p.test(text));
    },
    `audit records ${patterns.join(', ')}`,
  );
  return text;
}

describe('warden gateway as a member of a Warden deployment', async () => {
  const dir = tempDir('warden-gw-standalone-');
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: path.join(dir, 'server'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  let wardenOpen = true;
  after(async () => {
    if (wardenOpen) await warden.close();
  });
  const dispatcher = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  const admin = readFileSync(warden.tokenPath, 'utf8').trim();
  const api = async (method: 'PUT' | 'DELETE', url: string, body?: unknown) => {
    const r = await request(`${warden.url}${url}`, {
      method,
      dispatcher,
      headers: {
        authorization: `Bearer ${admin}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.body.text();
    assert.equal(r.statusCode, 200, text);
  };
  const identity = warden.identity.current();
  await api('PUT', '/v1/policies/gateway-reads', { text: GATEWAY_SERVICE_POLICY });
  const { clientSecret } = await identity.createServiceAccount(BOOTSTRAP_PRINCIPAL, {
    clientId: 'gateway',
    authMethod: 'client_secret',
    roles: ['resource-server'],
  });
  writeFileSync(path.join(dir, 'gateway.secret'), `${clientSecret ?? ''}\n`, { mode: 0o600 });
  for (const [username, roles] of [
    ['bea', ['business-user']],
    ['cleo', ['business-user']],
    ['dana', ['data-scientist']],
  ] as const) {
    await identity.createUser(BOOTSTRAP_PRINCIPAL, { username, password: PASSWORD, roles });
  }
  const login = async (username: string) =>
    (await identity.login({ username, password: PASSWORD, sourceIp: '127.0.0.1' })).access_token;
  const key = async (owner: string, scopes: string[]) =>
    (await identity.createApiKey(BOOTSTRAP_PRINCIPAL, { owner, scopes })).key;
  const beaKey = await key('user:bea', ['business-user']);
  const cleoKey = await key('user:cleo', ['business-user']);
  const danaKey = await key('user:dana', ['data-scientist']);
  writeFileSync(path.join(dir, 'audit.key'), randomBytes(32));
  writeFileSync(path.join(dir, 'warden-ca.pem'), readFileSync(warden.caPath));

  /** A connection to the server as the gateway's service account, for tests that drive one component alone. */
  const gatewayLink = () =>
    new WardenLink({
      url: warden.url,
      ca: readFileSync(warden.caPath),
      clientId: 'gateway',
      clientSecret: clientSecret ?? '',
    });

  let upstream: TestUpstream;
  let gw: RunningGateway;
  const chat = (token: string | undefined, content = 'hi') =>
    post(`${gw.url}/v1/chat/completions`, chatBody(content), { token: token ?? null });

  before(async () => {
    upstream = await startUpstream();
    writeFileSync(
      path.join(dir, 'gateway.json'),
      JSON.stringify({
        listen: '127.0.0.1:0',
        insecureHttp: true,
        environment: 'prod',
        metrics: { listen: '127.0.0.1:0' },
        audit: { file: 'audit.jsonl', keyFile: 'audit.key' },
        warden: {
          url: warden.url,
          caFile: 'warden-ca.pem',
          clientId: 'gateway',
          clientSecretFile: 'gateway.secret',
          graceMs: 2000,
        },
        outputPolicy: { defaultAction: 'mask' },
        endpoints: [
          {
            name: 'chat',
            protocol: 'openai',
            upstream: { url: upstream.url },
            // The demo chat model the server registered, signed and deployed at start-up.
            model: 'demo-chat',
            version: '1',
            environment: 'prod',
          },
        ],
      }),
    );
    gw = await startStandaloneGateway(loadStandaloneConfig(path.join(dir, 'gateway.json'), {}));
    assert.equal(gw.connected, true);
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  it('serves a caller with a Warden access token (JWT) and with an API key', async () => {
    const jwt = await login('bea');
    const byJwt = await chat(jwt, 'mail a.b@example.org');
    assert.equal(byJwt.status, 200, byJwt.text);
    assert.match(byJwt.text, /\*\.\*@\*{7}\.\*{3}/);
    const byKey = await chat(beaKey);
    assert.equal(byKey.status, 200, byKey.text);
    // Records may be committed just after the answer: wait for them, then check what they hold.
    const audit = await auditHolding(path.join(dir, 'audit.jsonl'), [
      /"id":"user:bea","authMethod":"jwt"/,
      /"id":"user:bea","authMethod":"api-key"/,
      // The extraction monitor runs here as in `warden server`: its action is in every served call's record.
      /"extractionAction":"none"/,
    ]);
    assert.ok(!audit.includes(jwt) && !audit.includes(beaKey) && !audit.includes('a.b@example.org'));
  });

  it('checks a token once, then trusts its verified claims only until it expires', async () => {
    let clock = Date.now();
    const link = gatewayLink();
    const auth = new RemoteAuthenticator({ link, now: () => clock });
    const asked = (bearer: string) =>
      auth.authenticate({
        headers: { authorization: `Bearer ${bearer}` },
        raw: { socket: undefined },
        id: 'req-1',
        ip: '127.0.0.1',
      } as unknown as FastifyRequest);
    const jwt = await login('bea');
    assert.equal((await asked(jwt))?.id, 'user:bea');
    assert.equal((await asked(jwt))?.id, 'user:bea'); // from the verified claims
    // Another signature is another cache entry: verified, and refused.
    assert.equal(await asked(alterChar(jwt, 2)), undefined);
    // The verified claims end at `exp`: past it the same token is verified again, and refused.
    const { exp } = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as {
      exp: number;
    };
    clock = exp * 1000 + 60_000;
    assert.equal(await asked(jwt), undefined);
  });

  it('refuses the unauthenticated (401) and a principal without endpoint.invoke (403)', async () => {
    assert.equal((await chat(undefined)).status, 401);
    const jwt = await login('bea');
    assert.equal((await chat(alterChar(jwt, 2))).status, 401);
    assert.equal((await chat(alterChar(beaKey, 1))).status, 401);
    assert.equal((await chat('wdn_live_notakey')).status, 401);
    const denied = await chat(danaKey);
    assert.equal(denied.status, 403);
    assert.equal(denied.json.error?.code, 'forbidden');
    assert.equal((await chat(await login('dana'))).status, 403);
  });

  it('a policy change on the server reaches the gateway', async () => {
    assert.equal((await chat(danaKey)).status, 403);
    await api('PUT', '/v1/policies/dana-may-chat', {
      text: `permit (principal == Warden::User::"user:dana", action == Warden::Action::"endpoint.invoke", resource == Warden::Endpoint::"chat");`,
    });
    await eventually(async () => (await chat(danaKey)).status === 200, 'the new permit applies');
    await api('DELETE', '/v1/policies/dana-may-chat');
    await eventually(async () => (await chat(danaKey)).status === 403, 'the removed permit stops applying');
  });

  it('a disabled user’s token and API key stop working within the status cache time', async () => {
    const jwt = await login('cleo');
    assert.equal((await chat(jwt)).status, 200);
    assert.equal((await chat(cleoKey)).status, 200);
    await identity.updateUser(BOOTSTRAP_PRINCIPAL, 'cleo', { disabled: true });
    // Documented bound: the server's status cache (1 s) plus the gateway's (statusCacheMs, 2 s).
    await sleep(3200);
    assert.equal((await chat(jwt)).status, 401);
    assert.equal((await chat(cleoKey)).status, 401);
    assert.equal((await chat(beaKey)).status, 200);
  });

  it('stops serving a version quarantined in the registry within a second', async () => {
    assert.equal((await chat(beaKey)).status, 200);
    await warden.registry?.registry.quarantine(BOOTSTRAP_PRINCIPAL, 'demo-chat', '1', 'suspected poisoning');
    await sleep(1500);
    const refused = await chat(beaKey);
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error?.code, 'model_unavailable');
    await warden.registry?.registry.release(BOOTSTRAP_PRINCIPAL, 'demo-chat', '1');
    await eventually(async () => (await chat(beaKey)).status === 200, 'the release applies');
  });

  it('a gateway whose server cannot be reached refuses everyone', async () => {
    const config = loadStandaloneConfig(path.join(dir, 'gateway.json'), {
      WARDEN_GATEWAY_SERVER_URL: `https://127.0.0.1:${await freePort()}`,
      WARDEN_GATEWAY_LISTEN: '127.0.0.1:0',
      WARDEN_GATEWAY_METRICS_LISTEN: '127.0.0.1:0',
    });
    const orphan = await startStandaloneGateway(config);
    try {
      assert.equal(orphan.connected, false);
      const jwt = await login('bea');
      for (const token of [jwt, beaKey]) {
        const r = await post(`${orphan.url}/v1/chat/completions`, chatBody('hi'), { token });
        assert.equal(r.status, 503);
        assert.equal(r.json.error?.code, 'identity_unavailable');
      }
    } finally {
      await orphan.close();
    }
  });

  it('authenticates client certificates of Warden’s CA (mTLS) and honours their revocation', async () => {
    const keyPair = () => {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return {
        publicKey: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
        privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      };
    };
    await warden.ca.init(BOOTSTRAP_PRINCIPAL);
    const serverKey = keyPair();
    const serverCert = await warden.ca.issue(BOOTSTRAP_PRINCIPAL, {
      profile: 'server',
      ipAddresses: ['127.0.0.1'],
      publicKey: serverKey.publicKey,
    });
    writeFileSync(path.join(dir, 'gw-tls.pem'), serverCert.chain);
    writeFileSync(path.join(dir, 'gw-tls.key'), serverKey.privateKey, { mode: 0o600 });
    const clientKey = keyPair();
    const clientCert = await warden.ca.issue(BOOTSTRAP_PRINCIPAL, {
      profile: 'client',
      identity: 'service:scorer',
      publicKey: clientKey.publicKey,
    });
    await api('PUT', '/v1/policies/scorer-may-chat', {
      text: `permit (principal == Warden::ServiceAccount::"service:scorer", action == Warden::Action::"endpoint.invoke", resource == Warden::Endpoint::"chat");`,
    });
    const file = path.join(dir, 'gateway-mtls.json');
    const base = JSON.parse(readFileSync(path.join(dir, 'gateway.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(
      file,
      JSON.stringify({
        ...base,
        insecureHttp: false,
        tls: { certFile: 'gw-tls.pem', keyFile: 'gw-tls.key', clientCertificates: 'request' },
        warden: { ...(base.warden as object), crlRefreshMs: 300 },
        audit: { file: 'audit-mtls.jsonl', keyFile: 'audit.key' },
      }),
    );
    const tlsGateway = await startStandaloneGateway(
      loadStandaloneConfig(file, { WARDEN_GATEWAY_METRICS_LISTEN: '127.0.0.1:0' }),
    );
    const trust = (await warden.ca.trustBundle()).pem;
    const withCert = new Agent({
      connect: { ca: trust, cert: clientCert.chain, key: clientKey.privateKey },
    });
    const withoutCert = new Agent({ connect: { ca: trust } });
    const call = (dispatcherOf: Agent, token: string | null = null) =>
      post(`${tlsGateway.url}/v1/chat/completions`, chatBody('hi'), { token, dispatcher: dispatcherOf });
    try {
      assert.equal((await call(withCert)).status, 200);
      assert.equal((await call(withoutCert)).status, 401);
      // Without a certificate, bearer credentials still work on a listener that only requests them.
      assert.equal((await call(withoutCert, beaKey)).status, 200);
      await auditHolding(path.join(dir, 'audit-mtls.jsonl'), [/"id":"service:scorer","authMethod":"mtls"/]);
      await warden.ca.revoke(BOOTSTRAP_PRINCIPAL, clientCert.serial, 'keyCompromise');
      await eventually(
        async () => (await call(withCert)).status === 401,
        'the revocation reaches the gateway',
      );
      // A revoked certificate taints the request: its bearer token does not rescue it.
      assert.equal((await call(withCert, beaKey)).status, 401);
    } finally {
      await tlsGateway.close();
      await withCert.close();
      await withoutCert.close();
      await api('DELETE', '/v1/policies/scorer-may-chat');
    }
  });

  it('refuses incomplete or malformed configurations without echoing secrets', () => {
    const write = (cfg: unknown) => {
      const f = path.join(dir, `bad-${randomBytes(4).toString('hex')}.json`);
      writeFileSync(f, JSON.stringify(cfg));
      return f;
    };
    const base = {
      insecureHttp: true,
      audit: { file: 'a', keyFile: 'audit.key' },
      warden: { url: warden.url, clientId: 'gateway', clientSecretFile: 'gateway.secret' },
      endpoints: [],
    };
    const refuses = (cfg: unknown, pattern: RegExp) => {
      assert.throws(
        () => loadStandaloneConfig(write(cfg), {}),
        (err: unknown) =>
          err instanceof GatewayConfigError &&
          pattern.test(err.message) &&
          !err.message.includes(clientSecret ?? '!'),
      );
    };
    refuses({ ...base, insecureHttp: false }, /tls/);
    refuses({ ...base, audit: {} }, /audit/);
    refuses(base, /endpoints/);
    refuses({ ...base, listen: 'nope' }, /host:port/);
    refuses({ ...base, redis: { url: 'redis://x' } }, /keyFile/);
    refuses({ ...base, warden: undefined }, /warden\.url/);
    refuses({ ...base, warden: { ...base.warden, url: 'ftp://x' } }, /warden\.url/);
    // The gateway sends its client secret and every caller's credential there: plain HTTP only to loopback.
    refuses({ ...base, warden: { ...base.warden, url: 'http://10.1.2.3:8443' } }, /warden\.url.*loopback/);
    refuses({ ...base, warden: { ...base.warden, url: 'http://warden.internal' } }, /warden\.url.*loopback/);

    refuses({ ...base, warden: { ...base.warden, clientId: 'no spaces' } }, /clientId/);
    refuses({ ...base, warden: { ...base.warden, clientSecretFile: 'missing' } }, /clientSecretFile/);
    refuses({ ...base, warden: { ...base.warden, statusCacheMs: 60_000 } }, /statusCacheMs/);
    refuses({ ...base, warden: { ...base.warden, graceMs: 'long' } }, /graceMs/);
    refuses({ ...base, environment: 'production' }, /environment/);
    refuses(
      { ...base, tls: { certFile: 'audit.key', keyFile: 'audit.key', clientCertificates: 'yes' } },
      /clientCert/,
    );
    writeFileSync(path.join(dir, 'short.key'), 'short');
    refuses({ ...base, audit: { file: 'a', keyFile: 'short.key' } }, /32 bytes/);
    writeFileSync(path.join(dir, 'two.secret'), 'a b');
    refuses({ ...base, warden: { ...base.warden, clientSecretFile: 'two.secret' } }, /one client secret/);
    refuses([], /JSON object/);
    // A misspelt setting would leave its default in place: refused, with the section's known names.
    refuses({ ...base, outputPolcy: {} }, /^unknown setting outputPolcy \(known in this section: listen, /);
    refuses({ ...base, warden: { ...base.warden, clientID: 'x' } }, /^unknown setting warden\.clientID /);
    refuses({ ...base, tls: 'on' }, /^tls must be an object/);
    const endpoints = [
      {
        name: 'chat',
        protocol: 'openai',
        upstream: { url: 'http://127.0.0.1:9' },
        model: 'demo-chat',
        version: '1',
        environment: 'prod',
      },
    ];
    refuses({ ...base, endpoints, extraction: 'on' }, /extraction must be an object/);
    refuses({ ...base, endpoints, extraction: { policy: { rules: [{ action: 'nuke' }] } } }, /^extraction: /);
    refuses({ ...base, endpoints, extraction: { polcy: {} } }, /polcy/);
    refuses({ ...base, endpoints: [{ ...endpoints[0], upstrem: {} }] }, /upstrem/);
    for (const url of ['http://127.0.0.1:8443', 'http://localhost:8443', 'http://[::1]:8443']) {
      const cfg = loadStandaloneConfig(write({ ...base, endpoints, warden: { ...base.warden, url } }), {});
      assert.equal(cfg.warden.url, url);
    }
    const monitorOnly = { policy: { rules: [{ action: 'alert' }] } };
    assert.deepEqual(
      loadStandaloneConfig(write({ ...base, endpoints, extraction: monitorOnly }), {}).extraction,
      monitorOnly,
    );
  });

  it('parses introspection answers fail-closed (property)', () => {
    assert.deepEqual(
      parseIntrospection({ active: true, sub: 'user:bea', roles: ['x'], groups: ['g'], exp: 5 }),
      {
        active: true,
        sub: 'user:bea',
        roles: ['x'],
        groups: ['g'],
        exp: 5,
      },
    );
    for (const bad of [
      null,
      'active',
      { active: 'true', sub: 'user:a', roles: [] },
      { active: true, roles: [] },
      { active: true, sub: 'bea', roles: [] },
      { active: true, sub: 'user:a' },
      { active: true, sub: 'user:a', roles: [1] },
      { active: true, sub: 'user:a', roles: [], groups: 'g' },
      { active: true, sub: 'user:a', roles: [], exp: '5' },
    ]) {
      assert.equal(parseIntrospection(bad).active, false);
    }
    fc.assert(
      fc.property(fc.anything(), (value) => {
        const status = parseIntrospection(value);
        if (!status.active) return status.roles.length === 0;
        const v = value as { active: unknown; sub: unknown; roles: unknown };
        return v.active === true && status.sub === v.sub && Array.isArray(v.roles);
      }),
    );
  });

  it('mirrors policy listings only when they split as the server says (property)', () => {
    const single = { id: 'p', source: 'custom', text: GATEWAY_SERVICE_POLICY, policyIds: ['p'] };
    assert.deepEqual(mirrorEntries([single])[0]?.parts, [GATEWAY_SERVICE_POLICY]);
    const double = {
      id: 'q',
      source: 'custom',
      text: `${GATEWAY_SERVICE_POLICY}\n${GATEWAY_SERVICE_POLICY}`,
      policyIds: ['q#0', 'q#1'],
    };
    assert.equal(mirrorEntries([double])[0]?.parts.length, 2);
    assert.throws(() => mirrorEntries([{ ...double, policyIds: ['q#0', 'q#1', 'q#2'] }]), /does not split/);
    assert.throws(() => mirrorEntries([{ ...single, source: 'other' }]), /malformed/);
    assert.throws(() => mirrorEntries({}), /array/);
    fc.assert(
      fc.property(fc.anything(), (value) => {
        try {
          const entries = mirrorEntries(value);
          return entries.every((e) => e.parts.length === e.policyIds.length);
        } catch (err) {
          return err instanceof Error && err.name === 'PolicyMirrorError';
        }
      }),
    );
  });

  it('servability: the last answers outlive a server outage for the grace period only', async () => {
    let clock = Date.now();
    const link = gatewayLink();
    const source = new RemoteServableSource(link, { graceMs: 5000, now: () => clock });
    try {
      const epoch = await source.epoch();
      assert.equal(await source.servable('credit-score', '1'), true);
      assert.equal(await source.servable('credit-score', '999'), false);
      await warden.close();
      wardenOpen = false;
      clock += 4000;
      assert.equal(await source.epoch(), epoch);
      assert.equal(await source.servable('credit-score', '1'), true);
      await assert.rejects(source.servable('never-asked', '1'));
      clock += 2000;
      await assert.rejects(source.epoch());
      await assert.rejects(source.servable('credit-score', '1'));
    } finally {
      await link.close();
    }
  });
});

describe('warden gateway start-up failures', () => {
  it('a metrics address already in use stops the start and releases the gateway listener', async () => {
    // The gateway listener was already open when the metrics listener failed; it stayed open, so
    // `warden gateway` printed the error and then kept running (serving, but never exiting).
    const dir = tempDir('warden-gw-start-');
    writeFileSync(path.join(dir, 'audit.key'), randomBytes(32));
    writeFileSync(path.join(dir, 'gateway.secret'), 'wcs_0123456789abcdef0123456789abcdef');
    const file = path.join(dir, 'gateway.json');
    writeFileSync(
      file,
      JSON.stringify({
        insecureHttp: true,
        audit: { file: 'audit.jsonl', keyFile: 'audit.key' },
        // Nothing listens there: the gateway starts anyway, refusing everyone until the server answers.
        warden: {
          url: `https://127.0.0.1:${await freePort()}`,
          clientId: 'gateway',
          clientSecretFile: 'gateway.secret',
          timeoutMs: 200,
        },
        endpoints: [
          {
            name: 'chat',
            protocol: 'openai',
            upstream: { url: 'http://127.0.0.1:9' },
            model: 'demo-chat',
            version: '1',
            environment: 'prod',
          },
        ],
      }),
    );
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const busyPort = (busy.address() as AddressInfo).port;
    const port = await freePort();
    try {
      const config = loadStandaloneConfig(file, {
        WARDEN_GATEWAY_LISTEN: `127.0.0.1:${port}`,
        WARDEN_GATEWAY_METRICS_LISTEN: `127.0.0.1:${busyPort}`,
      });
      await assert.rejects(startStandaloneGateway(config), { code: 'EADDRINUSE' });
      // Nothing of the failed start is left listening.
      const probe = createServer();
      await new Promise<void>((resolve, reject) => {
        probe.once('error', reject);
        probe.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => probe.close(resolve));
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});
