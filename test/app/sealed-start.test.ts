// warden server with a Shamir-sealed root: it starts sealed, its KMS-dependent services (identity, registry,
// gateway, checkpoint signing) answer 503 `sealed` until an operator initialises and unseals it over the API, and
// then come up without a restart.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { tempDir } from '../envelope/support.ts';

describe('warden server with a sealed root', async () => {
  const warden = await startWarden(
    loadConfig({
      WARDEN_DATA_DIR: tempDir('warden-sealed-'),
      WARDEN_LISTEN: '127.0.0.1:0',
      WARDEN_ROOT: 'shamir',
    }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const dispatcher = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  const token = readFileSync(warden.tokenPath, 'utf8').trim();
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const r = await request(`${warden.url}${path}`, {
      method,
      dispatcher,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  };
  const score = {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 5], data: [[85, 0.2, 6, 0, 0.3]] }],
  };
  let shares: string[] = [];

  it('answers 503 sealed for the registry, the gateway and identities while sealed', async () => {
    for (const [method, path, body] of [
      ['GET', '/v1/models', undefined],
      ['POST', '/v2/models/credit-score/infer', score],
      ['GET', '/v1/identities/users', undefined],
    ] as const) {
      const r = await call(method, path, body);
      assert.equal(r.status, 503, `${path}: ${JSON.stringify(r.body)}`);
      assert.equal((r.body.error as { code: string }).code, 'sealed');
    }
  });

  it('comes up after init and unseal, without a restart', async () => {
    const init = await call('POST', '/v1/operator/init', { shares: 3, threshold: 2 });
    assert.equal(init.status, 200, JSON.stringify(init.body));
    shares = init.body.shares as string[];
    for (const share of shares.slice(0, 2))
      assert.equal((await call('POST', '/v1/operator/unseal', { share })).status, 200);
    let served: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 100; i++) {
      served = await call('POST', '/v2/models/credit-score/infer', score);
      if (served.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(served?.status, 200, JSON.stringify(served?.body));
    assert.equal((await call('GET', '/v1/identities/users')).status, 200);
    const cp = await call('GET', '/v1/audit/checkpoint');
    assert.equal(cp.status, 200, JSON.stringify(cp.body));
  });

  it('records init, every share given (a wrong one too) and seal in the audit log, never a share', async () => {
    assert.equal((await call('POST', '/v1/operator/seal', {})).status, 200);
    assert.ok((await call('POST', '/v1/operator/unseal', { share: 'not-a-share' })).status >= 400);
    for (const share of shares.slice(1, 3))
      assert.equal((await call('POST', '/v1/operator/unseal', { share })).status, 200);
    const { entries } = await warden.audit.log.query({ resource: 'system:warden', limit: 100 });
    const seen = entries.map((e) => {
      const event = e.entry as unknown as { action: string; outcome: string; principal: { id: string } };
      return `${event.action} ${event.outcome} ${event.principal.id}`;
    });
    assert.deepEqual(seen, [
      'operator.init success bootstrap-admin',
      'operator.unseal success anonymous',
      'operator.unseal success anonymous',
      'operator.seal success bootstrap-admin',
      'operator.unseal failure anonymous',
      'operator.unseal success anonymous',
      'operator.unseal success anonymous',
    ]);
    for (const share of shares) {
      const found = await warden.audit.log.query({ limit: 1000 });
      assert.ok(
        !JSON.stringify(found.entries.map((e) => e.entry)).includes(share),
        'a share reached the log',
      );
    }
  });
});

describe('a redeemed bootstrap token on a sealed restart', () => {
  const dataDir = tempDir('warden-sealed-redeemed-');
  const start = () =>
    startWarden(
      loadConfig({ WARDEN_DATA_DIR: dataDir, WARDEN_LISTEN: '127.0.0.1:0', WARDEN_ROOT: 'shamir' }),
      {
        requestLog: { write: () => true } as unknown as NodeJS.WritableStream,
      },
    );
  const call = async (
    warden: Awaited<ReturnType<typeof start>>,
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    body?: unknown,
  ) => {
    const token = readFileSync(warden.tokenPath, 'utf8').trim();
    const r = await request(`${warden.url}${path}`, {
      method,
      dispatcher: new Agent({ connect: { ca: readFileSync(warden.caPath) } }),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  };

  it('is refused while the root is sealed, not only once the identity service is open', async () => {
    const first = await start();
    let shares: string[];
    try {
      const init = await call(first, 'POST', '/v1/operator/init', { shares: 2, threshold: 2 });
      shares = init.body.shares as string[];
      for (const share of shares) await call(first, 'POST', '/v1/operator/unseal', { share });
      const token = readFileSync(first.tokenPath, 'utf8').trim();
      let redeemed: Awaited<ReturnType<typeof call>> | undefined;
      for (let i = 0; i < 100; i++) {
        redeemed = await call(first, 'POST', '/v1/auth/bootstrap', {
          token,
          username: 'root',
          password: 'correct horse battery',
        });
        if (redeemed.status !== 503) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(redeemed?.status, 201, JSON.stringify(redeemed?.body));
    } finally {
      await first.close();
    }

    const second = await start();
    try {
      assert.equal((await call(second, 'GET', '/v1/operator/status')).body.sealed, true);
      const listed = await call(second, 'GET', '/v1/policies');
      assert.equal(listed.status, 401, JSON.stringify(listed.body));
      const put = await call(second, 'PUT', '/v1/policies/open-all', {
        text: 'permit (principal, action, resource);',
      });
      assert.equal(put.status, 401, JSON.stringify(put.body));
      // After the unseal, as before: still refused.
      for (const share of shares) await call(second, 'POST', '/v1/operator/unseal', { share });
      assert.equal((await call(second, 'GET', '/v1/policies')).status, 401);
    } finally {
      await second.close();
    }
  });
});
