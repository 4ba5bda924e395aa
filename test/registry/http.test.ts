import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { KmsClientError } from '../../src/client/index.ts';
import { RegistryClient, WardenHttp } from '../../src/client/index.ts';
import { registryRoutes } from '../../src/server/routes/registry.ts';
import { bootstrapTokenAuthenticator, createKmsServer, firstOf } from '../../src/server/index.ts';
import { TestOperator, TestRoot } from '../server/fixture.ts';
import { fixture, makeDataset, makeModel, workDir, type Fixture } from './support.ts';

describe('registry over HTTP (routes + SDK)', () => {
  let f: Fixture;
  let app: FastifyInstance;
  let alice: RegistryClient;
  let bob: RegistryClient;
  let nobody: RegistryClient;
  const https: WardenHttp[] = [];
  let work: { dir: string; cleanup: () => void };
  let address: string;
  let aliceToken: string;

  before(async () => {
    f = await fixture('sqlite', { limits: { maxFileBytes: 4 * 1024 * 1024, maxFiles: 100 } });
    work = workDir();
    const tokens = [0, 1, 2].map(() => randomBytes(24).toString('base64url'));
    app = await createKmsServer({
      kms: f.kms,
      operator: new TestOperator(new TestRoot()),
      authenticate: firstOf(
        bootstrapTokenAuthenticator(tokens[0]!, { id: 'user:alice', roles: ['admin'], authMethod: 'token' }),
        bootstrapTokenAuthenticator(tokens[1]!, { id: 'user:bob', roles: ['admin'], authMethod: 'token' }),
        bootstrapTokenAuthenticator(tokens[2]!, { id: 'user:nobody', roles: [], authMethod: 'token' }),
      ),
      routes: [
        (a) => {
          registryRoutes(a, { registry: f.registry });
        },
      ],
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    address = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    aliceToken = tokens[0]!;
    const client = (token: string): RegistryClient => {
      const http = new WardenHttp({ address, token });
      https.push(http);
      return new RegistryClient(http);
    };
    [alice, bob, nobody] = tokens.map(client) as [RegistryClient, RegistryClient, RegistryClient];
  });
  after(async () => {
    await app.close();
    await f.close();
    work.cleanup();
  });

  it('uploads, finalizes, signs, verifies, promotes with approval, serves a BOM and downloads', async () => {
    const data = makeDataset(work.dir, 100);
    const d = await alice.registerDataset('reviews', '1', data, {
      sensitivity: 'internal',
      owner: 'team-nlp',
    });
    assert.equal(d.sensitivity, 'internal');
    await alice.signDataset('reviews', '1');
    assert.equal((await alice.verifyDataset('reviews', '1', { deep: true })).filesChecked, 2);

    const dir = makeModel(work.dir, { seed: 2 });
    const progress: number[] = [];
    const v = await alice.registerModel('chat', '1.0', dir, {
      metadata: { framework: 'pytorch' },
      lineage: { datasets: [{ name: 'reviews', version: '1' }], parameters: { lr: 0.01 } },
      onProgress: (done) => progress.push(done),
    });
    assert.equal(v.fileCount, 3);
    assert.equal(progress.at(-1), v.size);
    const sig = await alice.sign('chat', '1.0');
    assert.equal(sig.verifiedWith, 'registry-signing');
    assert.equal((await alice.verify('chat', '1.0', { deep: true })).filesChecked, 3);
    assert.equal((await alice.promote('chat', '1.0', 'staging')).status, 'promoted');
    const pending = await alice.promote('chat', '1.0', 'prod');
    assert.ok(pending.status === 'pending_approval');
    await assert.rejects(
      alice.approve('chat', pending.approvalId),
      (err: KmsClientError) => err.code === 'self_approval' && err.status === 403,
    );
    assert.equal((await bob.approve('chat', pending.approvalId)).status, 'promoted');
    assert.deepEqual((await alice.servable('chat', '1.0', 'prod')).servable, true);

    const { epoch } = await alice.epoch();
    const q = await bob.quarantine('chat', 'incident', '1.0');
    assert.ok(q.epoch > epoch);
    assert.deepEqual((await alice.servable('chat', '1.0')).reasons, ['quarantined']);
    assert.deepEqual(
      (await alice.epoch(epoch)).changes?.map((c) => c.kind),
      ['quarantine'],
    );
    await bob.release('chat', '1.0');

    const bom = await alice.bom('chat', '1.0');
    assert.equal(bom['specVersion'], '1.6');
    assert.deepEqual(
      (await alice.trainedOn({ dataset: 'reviews', version: '1' })).map((m) => m.version),
      ['1.0'],
    );
    assert.deepEqual(
      (await alice.trainedOn({ digest: d.digest })).map((m) => m.model),
      ['chat'],
    );

    const out = path.join(work.dir, 'out');
    const got = await alice.downloadModel('chat', '1.0', out);
    assert.equal(got.files, 3);
    assert.deepEqual(
      readFileSync(path.join(out, 'weights.pkl')),
      readFileSync(path.join(dir, 'weights.pkl')),
    );
    assert.deepEqual(
      readFileSync(path.join(out, 'tokenizer/vocab.txt')),
      readFileSync(path.join(dir, 'tokenizer/vocab.txt')),
    );
  });

  it("approves a request only under its own model's URL", async () => {
    await alice.registerModel('approved-here', '1', makeModel(work.dir, { seed: 61 }));
    await alice.sign('approved-here', '1');
    const pending = await alice.promote('approved-here', '1', 'prod');
    assert.ok(pending.status === 'pending_approval');
    await alice.registerModel('elsewhere', '1', makeModel(work.dir, { seed: 62 }));
    await assert.rejects(
      bob.approve('elsewhere', pending.approvalId),
      (err: KmsClientError) => err.status === 404 && err.code === 'not_found',
    );
    assert.equal((await alice.servable('approved-here', '1', 'prod')).servable, false);
    assert.equal((await bob.approve('approved-here', pending.approvalId)).status, 'promoted');
  });

  it('maps registry errors to typed HTTP errors', async () => {
    await assert.rejects(
      alice.getVersion('chat', 'missing'),
      (err: KmsClientError) => err.status === 404 && err.code === 'not_found',
    );
    await assert.rejects(alice.promote('nope', '1', 'dev'), (err: KmsClientError) => err.status === 404);
    await assert.rejects(nobody.listModels(), (err: KmsClientError) => err.status === 403);
    const big = makeModel(work.dir);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(big, 'huge.bin'), Buffer.alloc(4 * 1024 * 1024 + 1));
    await assert.rejects(
      alice.registerModel('big', '1', big),
      (err: KmsClientError) => err.status === 413 && err.code === 'too_large',
    );
    const http = https[0]!;
    for (const bad of ['..%2F..%2Fetc%2Fpasswd', 'a/..%2F..%2Fx', '%2Fabs']) {
      await assert.rejects(
        http.upload(
          'PUT',
          `/v1/models/trav/versions/1/files/${bad}`,
          (await import('node:stream')).Readable.from([Buffer.from('x')]),
        ),
        (err: KmsClientError) => err.status === 400,
        bad,
      );
    }
  });

  it('answers an upload sent with another content-type 415, naming application/octet-stream (not "must be JSON")', async () => {
    const r = await fetch(`${address}/v1/models/typed/versions/1/files/a`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'text/plain' },
      body: 'x',
    });
    assert.equal(r.status, 415);
    const { error } = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, 'unsupported_media_type');
    assert.match(error.message, /application\/octet-stream/);
    assert.doesNotMatch(error.message, /must be application\/json/);
  });
});
