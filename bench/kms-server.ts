/**
 * Server process of the KMS HTTP benchmark (forked by bench/kms.ts, IPC channel): the full Warden server from
 * `startWarden` (dev root, SQLite stores, durable audit log, HTTPS TLS 1.3 API with the dev certificate and the
 * bootstrap token) in a temporary data directory on a free port, and two baselines on the same certificate:
 *
 *   https:   node:https (TLS 1.3 only), reads the request body, answers a fixed JSON document;
 *   fastify: Fastify over HTTPS (TLS 1.3 only), JSON body parsed, the same fixed JSON document.
 *
 * The fixed document has the length of a KMS encrypt response for 256 bytes, so the baselines move the same
 * bytes. Sends `{ url, tmpfsUrl, tokenPath, accessToken, tmpfsAccessToken, caPath, https, fastify }` to the
 * parent, stops on the message 'stop'; answers 'cpu' with its CPU time so far.
 *
 * Measured calls carry what a pipeline presents in production: an OAuth2 access token (client_credentials) of
 * a service account holding only the `key-user` role. The bootstrap token (admin until redeemed, looked up in
 * the identity store on every request) only sets the bench up.
 */
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../src/app/index.ts';
import type { RunningWarden } from '../src/app/index.ts';

/** Warden on `dataDir`, request logs on (the shipped default) written synchronously to a file, as stderr is. */
async function start(dataDir: string): Promise<{ warden: RunningWarden; stop(): Promise<void> }> {
  const logFd = openSync(path.join(dataDir, 'requests.log'), 'a');
  const requestLog = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writeSync(logFd, chunk);
      callback();
    },
  });
  const warden = await startWarden(loadConfig({}, { dataDir, listen: '127.0.0.1:0' }), { requestLog });
  return {
    warden,
    async stop() {
      await warden.close();
      closeSync(logFd);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A `key-user` service account on `warden` and an access token for it, as a pipeline would obtain one. */
async function pipelineToken(warden: RunningWarden): Promise<string> {
  const ca = readFileSync(warden.caPath);
  const agent = new Agent({ connect: { ca } });
  const bootstrap = readFileSync(warden.tokenPath, 'utf8').trim();
  try {
    const created = await request(`${warden.url}/v1/identities/service-accounts`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${bootstrap}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        clientId: 'bench-pipeline',
        authMethod: 'client_secret',
        roles: ['key-user'],
      }),
    });
    const answer = (await created.body.json()) as { clientSecret?: string };
    const clientSecret = answer.clientSecret;
    if (created.statusCode !== 201 || clientSecret === undefined) {
      throw new Error(`creating the service account: HTTP ${created.statusCode} ${JSON.stringify(answer)}`);
    }
    const issued = await request(`${warden.url}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: {
        authorization: `Basic ${Buffer.from(`bench-pipeline:${clientSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    });
    const { access_token: token } = (await issued.body.json()) as { access_token?: string };
    if (issued.statusCode !== 200 || token === undefined) {
      throw new Error(`client_credentials grant: HTTP ${issued.statusCode}`);
    }
    return token;
  } finally {
    await agent.close();
  }
}

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-kms-server-'));
const disk = await start(dataDir);
const warden = disk.warden;
// Diagnostic twin with its data directory (and so its audit log) on tmpfs, where fdatasync costs nothing: NOT
// durable. Same TLS identity and bootstrap token.
let shm: Awaited<ReturnType<typeof start>> | undefined;
if (existsSync('/dev/shm')) {
  const shmDir = mkdtempSync('/dev/shm/warden-bench-kms-server-');
  cpSync(path.join(dataDir, 'tls'), path.join(shmDir, 'tls'), { recursive: true });
  cpSync(warden.tokenPath, path.join(shmDir, 'bootstrap-token'));
  shm = await start(shmDir);
}
const tls = {
  key: readFileSync(path.join(dataDir, 'tls', 'server.key')),
  cert: readFileSync(path.join(dataDir, 'tls', 'server.pem')),
  minVersion: 'TLSv1.3' as const,
};
// `{"ciphertext":"warden:v1:bench:1:<379 base64url characters>"}`: the size of the KMS's answer.
const fixed = JSON.stringify({ ciphertext: `warden:v1:bench:1:${'A'.repeat(379)}` });

const https = createServer(tls, (request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(fixed),
    });
    response.end(fixed);
  });
});
await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));

const fastify = Fastify({ https: tls, logger: false });
fastify.post('/v1/kms/encrypt/:name', () => ({ ciphertext: `warden:v1:bench:1:${'A'.repeat(379)}` }));
await fastify.listen({ host: '127.0.0.1', port: 0 });

const portOf = (address: AddressInfo | string | null): number =>
  typeof address === 'object' && address !== null ? address.port : 0;

let stopping: Promise<void> | undefined;
const stop = (): Promise<void> =>
  (stopping ??= (async () => {
    https.close();
    https.closeAllConnections();
    await fastify.close();
    await disk.stop();
    await shm?.stop();
  })());
process.on('message', (message) => {
  // The parent reads this process's CPU time around each load run: server CPU per request.
  if (message === 'cpu') process.send?.({ cpu: process.cpuUsage() });
  if (message === 'stop') {
    void stop().then(() => {
      process.disconnect();
    });
  }
});
// The parent went away without saying stop (killed, crashed): clean up rather than keep serving.
process.on('disconnect', () => void stop());
process.send?.({
  url: warden.url,
  tmpfsUrl: shm?.warden.url,
  tokenPath: warden.tokenPath,
  accessToken: await pipelineToken(warden),
  tmpfsAccessToken: shm === undefined ? undefined : await pipelineToken(shm.warden),
  caPath: warden.caPath,
  https: `https://127.0.0.1:${portOf(https.address())}`,
  fastify: `https://127.0.0.1:${portOf(fastify.server.address())}`,
});
