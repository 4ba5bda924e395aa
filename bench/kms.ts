/**
 * KMS benchmark: in-process operations, batches, the HTTPS API under autocannon and the SDK, and data keys from
 * a SoftHSM2-backed root, each printed next to a baseline measured in the same run (raw node:crypto, a durable append,
 * bare TLS 1.3 HTTP servers, the software root) as a ratio. Every KMS operation is durably audited (the real
 * `JsonLinesAuditRecorder`, group commit) as in production.
 *
 * Each part runs in processes of its own: bench/kms-inproc.ts (in-process KMS, one per root of trust),
 * bench/kms-server.ts (the Warden server from `startWarden` plus the baseline servers), and the load generators
 * bench/kms-cannon.js (autocannon) and bench/kms-sdk.ts (`KmsClient`), which share the machine's cores with the
 * server. Configurations are measured in interleaved rounds; each figure is the best round (its latencies are
 * those of that round).
 *
 * Environment: BENCH_RUNS (rounds, default 3), BENCH_SECONDS (per HTTP run, default 2), BENCH_INPROC_SECONDS (per
 * in-process run, default 1), BENCH_HSM=0 (skip SoftHSM), BENCH_ONLY (regex over configuration names),
 * BENCH_CPU_PROF=<dir> (write V8 CPU profiles of the in-process and server processes there).
 */
import { spawn, fork, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KmsClient } from '../src/client/index.ts';
import { envNumber, interleaved } from './kms-measure.ts';
import type { Sample } from './kms-measure.ts';

const here = import.meta.dirname;
const runs = envNumber('BENCH_RUNS', 3);
const httpSeconds = envNumber('BENCH_SECONDS', 2);
const inprocSeconds = envNumber('BENCH_INPROC_SECONDS', 1);
const withHsm = process.env.BENCH_HSM !== '0';
const profDir = process.env.BENCH_CPU_PROF;
const profArgs = profDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`];
const started = performance.now();
const BATCH = 100;

type Results = Partial<Record<string, Sample>>;
const loads: string[] = [];
/** Load average, and the share of the last 10 s in which some task stalled on CPU / on I/O (Linux PSI). */
const load = (when: string): void => {
  const psi = (kind: string) => {
    try {
      return /avg10=([\d.]+)/.exec(readFileSync(`/proc/pressure/${kind}`, 'utf8'))?.[1] ?? '?';
    } catch {
      return '?';
    }
  };
  loads.push(
    `${when} ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (stall cpu ${psi('cpu')}% io ${psi('io')}%)`,
  );
};

function fsType(dir: string): string {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Runs a Node process to completion and parses the JSON line it prints. */
function runJson(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`${args.join(' ')} exited with ${String(code)}`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as unknown);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

async function inProcess(mode: 'software' | 'softhsm'): Promise<Results> {
  load(`before in-process ${mode}:`);
  return (await runJson([...profArgs, path.join(here, 'kms-inproc.ts'), mode], {
    BENCH_RUNS: String(runs),
    BENCH_INPROC_SECONDS: String(inprocSeconds),
  })) as Results;
}

interface ServerInfo {
  url: string;
  tmpfsUrl?: string;
  tokenPath: string;
  accessToken: string;
  tmpfsAccessToken?: string;
  caPath: string;
  https: string;
  fastify: string;
}

async function startServer(): Promise<{ info: ServerInfo; child: ChildProcess }> {
  const child = fork(path.join(here, 'kms-server.ts'), [], { execArgv: profArgs, stdio: 'inherit' });
  const info = await new Promise<ServerInfo>((resolve, reject) => {
    child.once('message', (m) => {
      resolve(m as ServerInfo);
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      reject(new Error(`server exited with ${String(code)}`));
    });
  });
  return { info, child };
}

async function overHttp(): Promise<Results> {
  load('before HTTP:');
  const { info, child } = await startServer();
  const work = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-kms-load-'));
  try {
    // The bootstrap admin sets up; measured calls use the pipeline's OAuth2 access token (key-user role).
    const admin = readFileSync(info.tokenPath, 'utf8').trim();
    const ca = readFileSync(info.caPath);
    const plaintext = randomBytes(256);
    // Set up, and check that the server does what is measured (the SDK verifies the dev CA).
    for (const address of [info.url, info.tmpfsUrl]) {
      if (address === undefined) continue;
      const setup = new KmsClient({ address, token: admin, ca });
      await setup.createKey({ name: 'bench', type: 'aes256-gcm' });
      await setup.close();
      const token = address === info.url ? info.accessToken : (info.tmpfsAccessToken ?? '');
      const client = new KmsClient({ address, token, ca });
      const ciphertext = await client.encrypt('bench', plaintext);
      if (!(await client.decrypt(ciphertext)).equals(plaintext)) throw new Error('round trip failed');
      const batch = await client.encryptBatch(
        'bench',
        Array.from({ length: BATCH }, () => ({ plaintext })),
      );
      if (batch.length !== BATCH || !batch.every((r) => r.ok)) throw new Error('batch encrypt failed');
      await client.close();
    }

    const single = path.join(work, 'single.json');
    const batchBody = path.join(work, 'batch.json');
    writeFileSync(single, JSON.stringify({ plaintext: plaintext.toString('base64') }));
    writeFileSync(
      batchBody,
      JSON.stringify({
        items: Array.from({ length: BATCH }, () => ({ plaintext: plaintext.toString('base64') })),
      }),
    );
    const serverCpu = () =>
      new Promise<number>((resolve) => {
        const onMessage = (m: unknown) => {
          const cpu = (m as { cpu?: NodeJS.CpuUsage }).cpu;
          if (cpu === undefined) return;
          child.off('message', onMessage);
          resolve(cpu.user + cpu.system);
        };
        child.on('message', onMessage);
        child.send('cpu');
      });
    const cannon =
      (url: string, body: string, connections: number, items = 1, token = info.accessToken) =>
      async (s: number) => {
        const cpuBefore = await serverCpu();
        const r = (await runJson([path.join(here, 'kms-cannon.js')], {
          BENCH_URL: `${url}/v1/kms/encrypt/bench`,
          BENCH_TOKEN: token,
          BENCH_CA: info.caPath,
          BENCH_BODY_FILE: body,
          BENCH_CONNECTIONS: String(connections),
          BENCH_SECONDS: String(s),
        })) as Sample & { non2xx: number; errors: number; timeouts: number; statusCodeStats: unknown };
        if (r.non2xx + r.errors + r.timeouts > 0) {
          throw new Error(
            `${url} c=${connections}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts, status codes ${JSON.stringify(r.statusCodeStats)}`,
          );
        }
        // Server CPU per request (per item for batches), load generator excluded; no warm-up inside the run.
        const cpuUsPerOp = ((await serverCpu()) - cpuBefore) / Math.max(1, r.ops * items);
        return { ...r, perSecond: r.perSecond * items, cpuUsPerOp };
      };
    const sdk = (connections: number) => async (s: number) => {
      const cpuBefore = await serverCpu();
      const r = (await runJson([path.join(here, 'kms-sdk.ts')], {
        BENCH_URL: info.url,
        BENCH_TOKEN: info.accessToken,
        BENCH_CA: info.caPath,
        BENCH_CONNECTIONS: String(connections),
        BENCH_SECONDS: String(s),
      })) as Sample;
      return { ...r, cpuUsPerOp: ((await serverCpu()) - cpuBefore) / Math.max(1, r.ops) };
    };
    return await interleaved(
      {
        'https.c1': cannon(info.https, single, 1),
        'https.c64': cannon(info.https, single, 64),
        'fastify.c1': cannon(info.fastify, single, 1),
        'fastify.c64': cannon(info.fastify, single, 64),
        'http.encrypt.c1': cannon(info.url, single, 1),
        'http.encrypt.c64': cannon(info.url, single, 64),
        'http.batch.c1': cannon(info.url, batchBody, 1, BATCH),
        'http.batch.c8': cannon(info.url, batchBody, 8, BATCH),
        'sdk.c1': sdk(1),
        'sdk.c64': sdk(64),
        ...(info.tmpfsUrl === undefined
          ? {}
          : { 'http.tmpfs.encrypt.c64': cannon(info.tmpfsUrl, single, 64, 1, info.tmpfsAccessToken) }),
      },
      runs,
      httpSeconds,
      1,
    );
  } finally {
    child.send('stop');
    await new Promise((resolve) => child.once('exit', resolve));
    rmSync(work, { recursive: true, force: true });
  }
}

// ---- run --------------------------------------------------------------------------------------------------

const software = await inProcess('software');
const hsm = withHsm ? await inProcess('softhsm') : {};
const http = await overHttp();
load('end:');

// ---- table ------------------------------------------------------------------------------------------------

const all: Results = { ...software, ...hsm, ...http };
const int = (n: number) => Math.round(n).toLocaleString('en-US');
// NaN (not measured) arrives from the JSON of a child process as null.
const ms = (n: number | null | undefined) =>
  n === undefined || n === null || Number.isNaN(n)
    ? ''
    : n >= 10
      ? n.toFixed(0)
      : n >= 1
        ? n.toFixed(1)
        : n.toFixed(2);
const whole = (n: number) => (n < 1 ? '<1' : n.toFixed(0));
const lat = (s: Sample) =>
  ms(s.p50Ms) === ''
    ? ''
    : s.wholeMs === true
      ? `${whole(s.p50Ms)} / ${whole(s.p99Ms)}`
      : `${ms(s.p50Ms)} / ${ms(s.p99Ms)}`;

type Row = [string, string, string, string, string, string] | string;
const rows: Row[] = [];
function row(label: string, key: string, base?: { label: string; key: string }, note = ''): void {
  const s = all[key];
  if (s === undefined) return;
  const b = base === undefined ? undefined : all[base.key];
  const notes = [
    s.cpuUsPerOp === undefined ? '' : `${s.cpuUsPerOp.toFixed(1)} µs CPU/op`,
    s.eventsPerSync === undefined ? '' : `${s.eventsPerSync.toFixed(0)} ev/write`,
    note,
  ];
  rows.push([
    label,
    int(s.perSecond),
    lat(s),
    b === undefined || base === undefined ? '' : `${base.label} ${int(b.perSecond)}`,
    b === undefined ? '' : (s.perSecond / b.perSecond).toFixed(3),
    notes.filter((n) => n !== '').join('; '),
  ]);
}
const target = (key: string, min: number, maxP99?: number): string => {
  const s = all[key];
  if (s === undefined) return '';
  const met = s.perSecond >= min && (maxP99 === undefined || s.p99Ms < maxP99);
  return `target >= ${int(min)}/s${maxP99 === undefined ? '' : `, p99 < ${maxP99} ms`}: ${met ? 'met' : 'MISSED'}`;
};
const ratioTarget = (key: string, baseKey: string, min: number): string => {
  const s = all[key];
  const b = all[baseKey];
  if (s === undefined || b === undefined) return '';
  return `target >= ${min}x: ${s.perSecond / b.perSecond >= min ? 'met' : 'MISSED'}`;
};

const tmpDir = os.tmpdir();
rows.push(
  `1. In-process KmsService: software dev root, SQLite stores, JsonLinesAuditRecorder on ${tmpDir} (${fsType(tmpDir)}): every op's audit event is appended durably (O_DSYNC, group commit) before its result returns`,
);
row(
  'raw AES-256-GCM encrypt 256 B',
  'raw.encrypt',
  undefined,
  'baseline: node:crypto, cached KeyObject, random IV',
);
row('raw AES-256-GCM decrypt 256 B', 'raw.decrypt', undefined, 'baseline');
row('raw data key (32 random B + encrypt)', 'raw.datakey', undefined, 'baseline');
row('raw durable append 300 B (O_DSYNC)', 'raw.append', undefined, 'baseline: one append at a time');
const rawEnc = { label: 'raw enc', key: 'raw.encrypt' };
const rawDec = { label: 'raw dec', key: 'raw.decrypt' };
const rawDk = { label: 'raw dk', key: 'raw.datakey' };
row('encrypt 256 B, 1 caller', 'encrypt.c1', rawEnc);
row('encrypt 256 B, 64 callers', 'encrypt.c64', rawEnc, target('encrypt.c64', 100_000));
row('decrypt 256 B, 1 caller', 'decrypt.c1', rawDec);
row('decrypt 256 B, 64 callers', 'decrypt.c64', rawDec, target('decrypt.c64', 100_000));
row('generate-data-key, 1 caller', 'datakey.c1', rawDk);
row('generate-data-key, 16 callers', 'datakey.c16', rawDk);
row('generate-data-key, 64 callers', 'datakey.c64', rawDk, target('datakey.c64', 100_000));
row('diag: encrypt, 1 caller, audit on tmpfs', 'tmpfs.encrypt.c1', rawEnc, 'NOT durable: fsync free');
row('diag: encrypt, 64 callers, audit on tmpfs', 'tmpfs.encrypt.c64', rawEnc, 'NOT durable: fsync free');

rows.push(`2. Batches of ${BATCH} encrypts (items/s; latency is per batch call)`);
row(`in-process batch x${BATCH}, 1 caller`, 'batch.c1', { label: 'single 1c', key: 'encrypt.c1' });
row(`in-process batch x${BATCH}, 8 callers`, 'batch.c8', { label: 'single 64c', key: 'encrypt.c64' });
row(
  `HTTP batch x${BATCH}, 1 connection`,
  'http.batch.c1',
  { label: 'single 64c', key: 'http.encrypt.c64' },
  ratioTarget('http.batch.c1', 'http.encrypt.c64', 10),
);
row(
  `HTTP batch x${BATCH}, 8 connections`,
  'http.batch.c8',
  { label: 'single 64c', key: 'http.encrypt.c64' },
  ratioTarget('http.batch.c8', 'http.encrypt.c64', 10),
);

rows.push(
  '3. HTTPS API (startWarden, TLS 1.3, keep-alive), encrypt 256 B; load from autocannon in a separate process on the same 2 cores',
);
row('baseline node:https, fixed JSON, 1 conn', 'https.c1');
row('baseline node:https, fixed JSON, 64 conn', 'https.c64');
row('baseline Fastify, fixed JSON, 1 conn', 'fastify.c1');
row('baseline Fastify, fixed JSON, 64 conn', 'fastify.c64');
row('KMS encrypt, 1 connection', 'http.encrypt.c1', { label: 'https', key: 'https.c1' });
row(
  'KMS encrypt, 64 connections',
  'http.encrypt.c64',
  { label: 'https', key: 'https.c64' },
  target('http.encrypt.c64', 10_000, 10),
);
row('KMS encrypt, 64 conn, vs Fastify', 'http.encrypt.c64', { label: 'fastify', key: 'fastify.c64' });
row('SDK KmsClient loop, 1 connection', 'sdk.c1', { label: 'autocannon', key: 'http.encrypt.c1' });
row('SDK KmsClient, 64 loops/connections', 'sdk.c64', { label: 'autocannon', key: 'http.encrypt.c64' });
row(
  'diag: KMS encrypt, 64 conn, data on tmpfs',
  'http.tmpfs.encrypt.c64',
  { label: 'https', key: 'https.c64' },
  'NOT durable: fsync free',
);

if (withHsm) {
  rows.push('4. SoftHSM2-backed root (Pkcs11RootOfTrust): generate-data-key in-process, audit as in 1.');
  row(
    'C_GenerateRandom 32 B (root.randomBytes)',
    'hsm.random',
    undefined,
    'baseline: the HSM call per data key',
  );
  row('generate-data-key, SoftHSM root, 1 caller', 'hsm.datakey.c1', {
    label: 'software',
    key: 'datakey.c1',
  });
  row('generate-data-key, SoftHSM root, 16 callers', 'hsm.datakey.c16', {
    label: 'software',
    key: 'datakey.c16',
  });
}

const cpu = os.cpus();
console.log(
  `Warden KMS benchmark: ${cpu.length} cores (${cpu[0]?.model ?? 'unknown CPU'}), Node ${process.version}, ` +
    `best of ${runs} interleaved rounds (${inprocSeconds} s in-process, ${httpSeconds} s HTTP), wall ${((performance.now() - started) / 1000).toFixed(0)} s`,
);
console.log(`load average 1/5/15 min (PSI stall, last 10 s):\n  ${loads.join('\n  ')}`);
console.log(
  'ratio = figure / its baseline from this run. µs CPU/op = CPU time (user + system, all threads) per op (per item\n' +
    'for batches) of the process doing the work: the KMS process in-process, the server process for HTTP rows.\n' +
    'ev/write = audit events made durable per O_DSYNC append to the audit log (group commit).',
);
const header: Row = ['measurement', 'ops/s', 'p50 / p99 ms', 'baseline (same run)', 'ratio', 'notes'];
const width = [44, 10, 13, 22, 7];
for (const r of [header, ...rows]) {
  if (typeof r === 'string') {
    console.log(`\n${r}`);
    continue;
  }
  console.log(
    r
      .map((cell, i) => {
        const w = width[i];
        if (w === undefined) return cell;
        return i === 0 ? cell.padEnd(w) : cell.padStart(w);
      })
      .join('  ')
      .trimEnd(),
  );
}
