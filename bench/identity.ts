/**
 * Identity and authorisation benchmark: what authenticating and authorising a request costs, each figure next to
 * a baseline measured in the same run.
 *
 *   node bench/identity.ts            (npm run bench:identity)
 *
 * 1. Cedar decisions (PolicyEngine, built-in roles + the three ABAC guardrails): p50/p99 per decision, uncached
 *    and cached, against two baselines: `Map.get` of a JSON key (what any decision cache costs at least) and
 *    HMAC-SHA256 of the same JSON (a cheap per-request cryptographic operation).
 * 2. Credentials, in-process on a real `startWarden` (temporary data directory, SQLite stores): access-token
 *    verification through `AuthorizationServer.verifyAccessToken` (signature, claims, revocation list, status and
 *    epoch) on a token's first presentation (300 distinct tokens), on later ones (the verified-token cache), and
 *    after `invalidate()` (status and revocation list read from the store, as once a second in service), then
 *    `IdentityService.authenticate` (the per-request call) alone and followed by the Cedar decision of the route
 *    benchmarked below; against `jose.jwtVerify` of the same token with the same key and node:crypto's ECDSA
 *    verify of its signature. API-key authentication against HMAC-SHA256 of the key.
 * 3. HTTPS, against a real `startWarden` in a child process: `GET /v1/policies/role.admin` with an access token
 *    (authenticated, authorised by Cedar, handler a Map lookup) against the same server's public
 *    `GET /v1/operator/status` (handler: the root's status). A sequential loop over one keep-alive connection
 *    (requests interleaved) gives p50/p99 at low load; autocannon gives throughput, and the server's CPU time
 *    per request (process.cpuUsage around each run) the cost independent of the machine's other load. On a
 *    shared machine the p99s and the throughput follow the other jobs; the CPU time per request does not.
 *
 * Environment: BENCH_SECONDS (autocannon run length, default 3), BENCH_CONNECTIONS (default 8), BENCH_N (samples
 * per sequential measurement, default 3000), BENCH_CPU_PROF=<dir> (the server child writes a V8 CPU profile
 * there on exit).
 */
import { createHmac, createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../src/app/index.ts';
import type { RunningWarden } from '../src/app/index.ts';
import { PolicyEngine, PolicyStore, kmsPrincipal, principalContext } from '../src/policy/index.ts';
import type { AuthzRequest } from '../src/policy/index.ts';
import type { UserRecord } from '../src/identity/index.ts';
import { BOOTSTRAP_PRINCIPAL } from '../src/server/index.ts';

/** The part of autocannon's API used here (the package ships no type declarations). */
interface CannonResult {
  readonly '2xx': number;
  readonly duration: number;
  readonly non2xx: number;
  readonly errors: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: {
  url: string;
  connections: number;
  duration: number;
  headers: Record<string, string>;
  tlsOptions: { ca: Buffer; minVersion: 'TLSv1.3' };
  sampleInt: number;
}) => Promise<CannonResult>;

const N = Number(process.env.BENCH_N ?? 3000);
const FRESH_TOKENS = 300;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const AUTHED_PATH = '/v1/policies/role.admin';
const PUBLIC_PATH = '/v1/operator/status';

interface Summary {
  readonly p50: number;
  readonly p99: number;
  readonly opsPerSecond: number;
}

/** p50/p99 in microseconds of per-call samples, and calls per second over the whole loop. */
function summarise(samples: Float64Array, totalMs: number): Summary {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number): number =>
    (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 1000;
  return { p50: at(0.5), p99: at(0.99), opsPerSecond: (samples.length / totalMs) * 1000 };
}

function timeSync(n: number, op: (i: number) => unknown): Summary {
  for (let i = 0; i < Math.min(n, 500); i++) op(i);
  const samples = new Float64Array(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    op(i);
    samples[i] = performance.now() - t;
  }
  return summarise(samples, performance.now() - start);
}

async function timeAsync(
  n: number,
  op: (i: number) => Promise<unknown>,
  warmup = Math.min(n, 300),
): Promise<Summary> {
  for (let i = 0; i < warmup; i++) await op(i);
  const samples = new Float64Array(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await op(i);
    samples[i] = performance.now() - t;
  }
  return summarise(samples, performance.now() - start);
}

const us = (v: number): string => `${v.toFixed(1).padStart(7)} µs`;
const ops = (v: number): string => `${Math.round(v).toLocaleString('en-US').padStart(9)}/s`;

function row(name: string, s: Summary, baseline?: Summary): void {
  const ratio = baseline === undefined ? '' : `  ×${(s.p50 / baseline.p50).toFixed(1)} p50 of baseline`;
  console.log(`  ${name.padEnd(50)} p50 ${us(s.p50)}  p99 ${us(s.p99)}  ${ops(s.opsPerSecond)}${ratio}`);
}

// ---- 1. Cedar decisions ----------------------------------------------------------------------------------------

/** Requests as the route authoriser builds them: principal from a token, ABAC context, route resource. */
function decisionRequest(i: number): AuthzRequest {
  const context = { authMethod: 'jwt', sourceIp: `10.1.${i % 8}.7`, environment: 'prod' };
  const user = `user:u${i % 64}`;
  switch (i % 5) {
    case 0:
      return {
        principal: { type: 'User', id: user, roles: ['auditor'], groups: ['staff'] },
        action: 'policy.read',
        resource: { type: 'Policy', id: `role.${['admin', 'auditor', 'key-user'][i % 3] ?? 'admin'}` },
        context,
      };
    case 1:
      return {
        principal: { type: 'User', id: user, roles: ['data-scientist'], groups: ['ml'] },
        action: 'dataset.read',
        resource: {
          type: 'Dataset',
          id: `ds-${i % 16}`,
          attrs: { sensitivity: i % 3 === 0 ? 'restricted' : 'internal' },
        },
        context,
      };
    case 2:
      return {
        principal: { type: 'User', id: user, roles: ['business-user'], groups: ['sales'] },
        action: 'endpoint.invoke',
        resource: { type: 'Endpoint', id: `ep-${i % 8}`, attrs: { environment: 'prod' } },
        context,
      };
    case 3:
      return {
        principal: { type: 'ServiceAccount', id: `service:app${i % 8}`, roles: ['key-user'] },
        action: 'kms.crypto.encrypt',
        resource: { type: 'Key', id: `app-key-${i % 8}` },
        context: { ...context, authMethod: 'api-key' },
      };
    default:
      return {
        principal: { type: 'User', id: user, roles: ['ml-engineer'], groups: ['ml'] },
        action: 'model.read',
        resource: { type: 'ModelVersion', id: `m${i % 4}@1.0.${i % 3}`, model: `m${i % 4}` },
        context,
      };
  }
}

function benchDecisions(): void {
  const store = new PolicyStore({
    guardrails: {
      restrictedDataBusinessHours: true,
      corporateCidrs: ['10.0.0.0/8', '192.168.0.0/16'],
      stepUpMfaMaxAgeSeconds: 900,
    },
  });
  const cached = new PolicyEngine({ store });
  const uncached = new PolicyEngine({ store, cache: { maxEntries: 0 } });
  // 1000 distinct requests: the cached engine holds them all after the warm-up, as a busy server would.
  const requests = Array.from({ length: 1000 }, (_, i) => decisionRequest(i));
  const at = (i: number): AuthzRequest => requests[i % requests.length] ?? decisionRequest(0);
  const map = new Map(requests.map((r) => [JSON.stringify(r), 'allow']));
  const hmacKey = randomBytes(32);
  console.log(
    `\nCedar decisions (built-in roles + 3 guardrails, ${requests.length} distinct requests, n=${N})`,
  );
  const mapBase = timeSync(N, (i) => map.get(JSON.stringify(at(i))));
  const hmacBase = timeSync(N, (i) =>
    createHmac('sha256', hmacKey)
      .update(JSON.stringify(at(i)))
      .digest(),
  );
  row('baseline: Map.get(JSON.stringify(request))', mapBase);
  row('baseline: HMAC-SHA256(JSON.stringify(request))', hmacBase);
  row(
    'uncached decision',
    timeSync(N, (i) => uncached.authorize(at(i))),
    mapBase,
  );
  for (const r of requests) cached.authorize(r);
  row(
    'cached decision (hit)',
    timeSync(N, (i) => cached.authorize(at(i))),
    mapBase,
  );
  // A session that passed MFA carries mfaAgeSeconds, which bypasses the cache (it changes every second).
  row(
    'decision with mfaAgeSeconds (bypasses the cache)',
    timeSync(N, (i) => {
      const r = at(i);
      return cached.authorize({ ...r, context: { ...r.context, mfaAgeSeconds: 120 } });
    }),
    mapBase,
  );
  const stats = cached.cacheStats();
  console.log(
    `  cache: ${stats.hits} hits, ${stats.misses} misses, ${stats.bypasses} bypasses, ${stats.size} entries`,
  );
}

// ---- shared: a Warden with a user, a token and an API key ----------------------------------------------------

interface Fixture {
  readonly warden: RunningWarden;
  readonly user: UserRecord;
  readonly environment: string;
  readonly token: string;
  readonly apiKey: string;
  stop(): Promise<void>;
}

/** `startWarden` on a fresh data directory; request logs on (the shipped default), written to a file. */
async function startFixture(): Promise<Fixture> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-identity-'));
  const logFd = openSync(path.join(dataDir, 'requests.log'), 'a');
  const requestLog = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writeSync(logFd, chunk);
      callback();
    },
  });
  const config = loadConfig({}, { dataDir, listen: '127.0.0.1:0' });
  const warden = await startWarden(config, { requestLog });
  const identity = warden.identity.current();
  // `auditor` holds policy.read and is not privileged, so a password session is a full session (no MFA due).
  const user = await identity.createUser(BOOTSTRAP_PRINCIPAL, {
    username: 'bench-auditor',
    roles: ['auditor'],
  });
  const session = await identity.issueSession(user, { amr: ['pwd'], authMethod: 'password' });
  const { key } = await identity.createApiKey(BOOTSTRAP_PRINCIPAL, {
    owner: user.principalId,
    scopes: ['auditor'],
  });
  return {
    warden,
    user,
    environment: config.environment,
    token: session.access_token,
    apiKey: key,
    async stop() {
      await warden.close();
      closeSync(logFd);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// ---- 2. credentials, in-process --------------------------------------------------------------------------------

async function benchCredentials(): Promise<void> {
  const fixture = await startFixture();
  try {
    const identity = fixture.warden.identity.current();
    const { token, apiKey } = fixture;
    const kid = decodeProtectedHeader(token).kid;
    const jwk = (await identity.oauth.jwks()).keys.find((k) => (k as { kid?: unknown }).kid === kid);
    if (jwk === undefined) throw new Error('signing key not in the JWKS');
    const publicKey: KeyObject = createPublicKey({ key: jwk as Record<string, string>, format: 'jwk' });
    const [header = '', payload = '', signature = ''] = token.split('.');
    const signingInput = Buffer.from(`${header}.${payload}`, 'ascii');
    const signatureBytes = Buffer.from(signature, 'base64url');
    const input = (authorization: string, i: number) => ({
      authorization,
      clientCertificate: undefined,
      sourceIp: '10.1.0.7',
      requestId: `r${i}`,
    });
    const hmacKey = randomBytes(32);

    // Distinct tokens of the same user, each verified once: the first presentation of a token.
    const fresh: string[] = [];
    for (let i = 0; i < FRESH_TOKENS; i++) {
      fresh.push(
        (await identity.issueSession(fixture.user, { amr: ['pwd'], authMethod: 'password' })).access_token,
      );
    }
    const route = {
      action: 'policy.read',
      resource: { type: 'Policy', id: 'role.admin' },
    } as const;
    const authorised = async (i: number): Promise<void> => {
      const principal = await identity.authenticate(input(`Bearer ${token}`, i));
      if (principal === undefined) throw new Error('not authenticated');
      const decision = fixture.warden.policy.authorize({
        principal: kmsPrincipal(principal),
        ...route,
        context: { ...principalContext(principal), environment: fixture.environment },
      });
      if (decision.decision !== 'allow') throw new Error('not authorised');
    };

    console.log(`\nCredentials, in-process on startWarden (SQLite), n=${N}`);
    const ecdsa = await timeAsync(N, () =>
      Promise.resolve(
        cryptoVerify('sha256', signingInput, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signatureBytes),
      ),
    );
    const joseOnly = await timeAsync(N, () =>
      jwtVerify(token, publicKey, {
        issuer: identity.oauth.issuer,
        audience: identity.oauth.audience,
        typ: 'at+jwt',
      }),
    );
    row('baseline: node:crypto ECDSA P-256 verify', ecdsa);
    row('baseline: jose.jwtVerify (same token and key)', joseOnly);
    row(
      `verifyAccessToken, first use (${FRESH_TOKENS} tokens)`,
      await timeAsync(FRESH_TOKENS, (i) => identity.oauth.verifyAccessToken(fresh[i] ?? ''), 0),
      joseOnly,
    );
    row(
      'verifyAccessToken, token seen before',
      await timeAsync(N, () => identity.oauth.verifyAccessToken(token)),
      joseOnly,
    );
    row(
      'verifyAccessToken after invalidate() (store reads)',
      await timeAsync(Math.min(N, 500), () => {
        identity.oauth.invalidate();
        return identity.oauth.verifyAccessToken(token);
      }),
      joseOnly,
    );
    row(
      'authenticate (JWT bearer, per request)',
      await timeAsync(N, (i) => identity.authenticate(input(`Bearer ${token}`, i))),
      joseOnly,
    );
    row('authenticate + Cedar (what a request adds)', await timeAsync(N, authorised), joseOnly);
    const hmac = await timeAsync(N, () =>
      Promise.resolve(createHmac('sha256', hmacKey).update(apiKey).digest()),
    );
    row('baseline: HMAC-SHA256 of the API key', hmac);
    row(
      'authenticate (API key bearer, per request)',
      await timeAsync(N, (i) => identity.authenticate(input(`Bearer ${apiKey}`, i))),
      hmac,
    );
    const ok = await identity.authenticate(input(`Bearer ${apiKey}`, 0));
    const okJwt = await identity.authenticate(input(`Bearer ${token}`, 0));
    if (ok === undefined || okJwt === undefined)
      throw new Error('the fixture credentials did not authenticate');
  } finally {
    await fixture.stop();
  }
}

// ---- 3. HTTPS ----------------------------------------------------------------------------------------------------

interface ServerInfo {
  readonly url: string;
  readonly caPath: string;
  readonly token: string;
}

/** The server child: a Warden with the fixture, serving until told 'stop'; answers 'cpu' with its CPU time. */
async function serve(): Promise<void> {
  const fixture = await startFixture();
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= fixture.stop());
  process.on('message', (message) => {
    if (message === 'cpu') process.send?.({ cpu: process.cpuUsage() });
    // Exiting (rather than waiting for the loop to drain) also writes the CPU profile when one was asked for.
    if (message === 'stop') void stop().then(() => process.exit(0));
  });
  process.on('disconnect', () => void stop().then(() => process.exit(0)));
  const info: ServerInfo = {
    url: fixture.warden.url,
    caPath: fixture.warden.caPath,
    token: fixture.token,
  };
  process.send?.(info);
}

function ask<T>(child: ChildProcess, message: string, pick: (m: unknown) => T | undefined): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown): void => {
      const value = pick(m);
      if (value === undefined) return;
      child.off('message', onMessage);
      resolve(value);
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

const cpuOf = (m: unknown): NodeJS.CpuUsage | undefined => (m as { cpu?: NodeJS.CpuUsage } | null)?.cpu;

async function benchHttp(): Promise<void> {
  const profileDir = process.env.BENCH_CPU_PROF;
  const child = fork(fileURLToPath(import.meta.url), ['server'], {
    execArgv: profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const info = await new Promise<ServerInfo>((resolve, reject) => {
    child.once('message', (m) => {
      resolve(m as ServerInfo);
    });
    child.once('exit', (code) => {
      reject(new Error(`server child exited (${String(code)})`));
    });
  });
  const ca = readFileSync(info.caPath);
  const authorization = `Bearer ${info.token}`;
  try {
    // Sequential, one keep-alive connection, the two routes interleaved so that drift affects both alike.
    const dispatcher = new Agent({ connections: 1, connect: { ca, minVersion: 'TLSv1.3' } });
    const call = async (pathname: string, headers: Record<string, string>): Promise<void> => {
      const { statusCode, body } = await request(`${info.url}${pathname}`, { dispatcher, headers });
      await body.dump();
      if (statusCode !== 200) throw new Error(`${pathname}: ${statusCode}`);
    };
    const authed = (): Promise<void> => call(AUTHED_PATH, { authorization });
    const open = (): Promise<void> => call(PUBLIC_PATH, {});
    for (let i = 0; i < 500; i++) {
      await authed();
      await open();
    }
    const a = new Float64Array(N);
    const p = new Float64Array(N);
    const start = performance.now();
    for (let i = 0; i < N; i++) {
      const first = i % 2 === 0;
      for (const [fn, into] of first
        ? ([
            [authed, a],
            [open, p],
          ] as const)
        : ([
            [open, p],
            [authed, a],
          ] as const)) {
        const t = performance.now();
        await fn();
        into[i] = performance.now() - t;
      }
    }
    const elapsed = performance.now() - start;
    await dispatcher.close();
    const sa = summarise(a, elapsed / 2);
    const sp = summarise(p, elapsed / 2);
    console.log(`\nHTTPS, sequential over one keep-alive TLS 1.3 connection, n=${N} each, interleaved`);
    row(`public ${PUBLIC_PATH}`, sp);
    row(`JWT + Cedar ${AUTHED_PATH}`, sa, sp);
    console.log(
      `  ${'added by authentication + authorisation'.padEnd(50)} p50 ${us(sa.p50 - sp.p50)}  p99 ${us(sa.p99 - sp.p99)}`,
    );

    console.log(
      `\nHTTPS, autocannon ${CONNECTIONS} connections, ${SECONDS} s per run (three runs per route, alternated; medians)`,
    );
    const cannon = async (pathname: string, headers: Record<string, string>) => {
      const before = await ask(child, 'cpu', cpuOf);
      const result = await autocannon({
        url: `${info.url}${pathname}`,
        connections: CONNECTIONS,
        duration: SECONDS,
        headers,
        tlsOptions: { ca, minVersion: 'TLSv1.3' },
        sampleInt: 100,
      });
      const after = await ask(child, 'cpu', cpuOf);
      const cpuUs = after.user + after.system - before.user - before.system;
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${pathname}: non-2xx or errors`);
      return { rps: result['2xx'] / result.duration, cpuPerRequest: cpuUs / result['2xx'] };
    };
    // Warm-up of both routes (JIT, lazily compiled serializers, caches) before anything is counted.
    await cannon(PUBLIC_PATH, {});
    await cannon(AUTHED_PATH, { authorization });
    const runs: { route: 'public' | 'authed'; rps: number; cpuPerRequest: number }[] = [];
    for (const route of ['public', 'authed', 'authed', 'public', 'public', 'authed'] as const) {
      const r =
        route === 'public' ? await cannon(PUBLIC_PATH, {}) : await cannon(AUTHED_PATH, { authorization });
      runs.push({ route, ...r });
    }
    // The median of three runs per route: other jobs on the machine come and go between runs.
    const median = (route: 'public' | 'authed', k: 'rps' | 'cpuPerRequest'): number =>
      runs
        .filter((r) => r.route === route)
        .map((r) => r[k])
        .sort((x, y) => x - y)[1] ?? 0;
    const pub = { rps: median('public', 'rps'), cpu: median('public', 'cpuPerRequest') };
    const auth = { rps: median('authed', 'rps'), cpu: median('authed', 'cpuPerRequest') };
    const line = (name: string, v: { rps: number; cpu: number }): void => {
      console.log(`  ${name.padEnd(50)} ${ops(v.rps)}  server CPU ${us(v.cpu)} per request`);
    };
    line(`public ${PUBLIC_PATH}`, pub);
    line(`JWT + Cedar ${AUTHED_PATH}`, auth);
    console.log(
      `  authenticated/public: ×${(auth.rps / pub.rps).toFixed(2)} throughput, ` +
        `+${(auth.cpu - pub.cpu).toFixed(1)} µs server CPU per request`,
    );
  } finally {
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null) resolve();
      else
        child.once('exit', () => {
          resolve();
        });
    });
    if (child.connected) child.send('stop');
    await exited;
  }
}

if (process.argv[2] === 'server') {
  await serve();
} else {
  const [one, five] = os.loadavg();
  console.log(
    `Identity and authorisation benchmark — node ${process.version}, ${os.cpus().length} CPUs, ` +
      `load average ${one?.toFixed(2)} / ${five?.toFixed(2)} (1 / 5 min)`,
  );
  benchDecisions();
  await benchCredentials();
  await benchHttp();
  const [endOne] = os.loadavg();
  console.log(`\nload average at the end: ${endOne?.toFixed(2)}`);
}
