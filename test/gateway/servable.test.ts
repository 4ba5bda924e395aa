import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { ServableCache } from '../../src/gateway/index.ts';
import { chatBody, endpoint, post, startGateway, startUpstream, TestRegistry } from './support.ts';

describe('servable gating', () => {
  it('a quarantine takes effect at the next 1 s refresh; the request path only reads the cache', async () => {
    mock.timers.enable({ apis: ['setInterval', 'Date'] });
    try {
      const registry = new TestRegistry();
      const cache = new ServableCache(registry);
      assert.equal(cache.refreshMs, 1000);
      await cache.start();
      assert.equal(await cache.check('m', '1'), true);
      assert.equal(await cache.check('m', '2'), true);
      const polls = registry.epochCalls;
      registry.quarantine('m', '1');
      // Until the next poll the cached answer stands; no registry round trip per request.
      assert.equal(await cache.check('m', '1'), true);
      assert.equal(registry.epochCalls, polls);
      mock.timers.tick(1000);
      await cache.refresh();
      assert.equal(registry.epochCalls, polls + 1);
      assert.equal(await cache.check('m', '1'), false);
      assert.equal(await cache.check('m', '2'), true);
      cache.stop();
    } finally {
      mock.timers.reset();
    }
  });

  it('fails closed when the registry cannot be read for longer than the staleness bound', async () => {
    let now = 0;
    let broken = false;
    const cache = new ServableCache(
      {
        epoch: () => {
          if (broken) throw new Error('registry down');
          return 1;
        },
        servable: () => true,
      },
      { refreshMs: 1000, now: () => now },
    );
    await cache.refresh();
    assert.equal(await cache.check('m', '1'), true);
    broken = true;
    now = 2500;
    assert.equal(await cache.check('m', '1'), true, 'still within 3 refresh intervals');
    now = 3500;
    assert.equal(await cache.check('m', '1'), false);
    broken = false;
    assert.equal(await cache.check('m', '1'), true);
  });

  it('a source that throws on a version means not servable', async () => {
    const cache = new ServableCache({ epoch: () => 1, servable: () => Promise.reject(new Error('x')) });
    assert.equal(await cache.check('m', '1'), false);
  });

  it('end to end: the gateway answers 503 model_unavailable once the version is quarantined', async () => {
    const upstream = await startUpstream();
    const gw = await startGateway([endpoint('chat', upstream.url, { model: 'fraud', version: '7' })], {
      servableRefreshMs: 50,
    });
    try {
      assert.equal((await post(`${gw.url}/v1/chat/completions`, chatBody('x'))).status, 200);
      gw.registry.quarantine('fraud', '7');
      let status = 200;
      let code: string | undefined;
      for (let i = 0; i < 200 && status === 200; i++) {
        await new Promise((r) => setTimeout(r, 10));
        const res = await post(`${gw.url}/v1/chat/completions`, chatBody('x'));
        status = res.status;
        code = res.json.error?.code;
      }
      assert.equal(status, 503);
      assert.equal(code, 'model_unavailable');
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
