// A custom policy that denies one of Warden's own principals stops the registry and gateway at the next start. The
// server says why and keeps serving the rest of its API, so that the policy can be removed without touching the
// database; the listener is never left open by a start that failed.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { tempDir } from '../envelope/support.ts';

const quiet = { requestLog: { write: () => true } as unknown as NodeJS.WritableStream };

describe('a custom policy denying Warden its own keys', () => {
  it('leaves the API up with a message naming the cause, and the next start is whole once it is removed', async () => {
    const dir = tempDir('warden-policy-denies-');
    const config = loadConfig({ WARDEN_DATA_DIR: dir, WARDEN_LISTEN: '127.0.0.1:0' });
    const first = await startWarden(config, quiet);
    const token = readFileSync(first.tokenPath, 'utf8').trim();
    const agent = new Agent({ connect: { ca: readFileSync(first.caPath) } });
    const call = async (url: string, method: 'GET' | 'PUT' | 'DELETE', body?: unknown) => {
      const res = await request(url, {
        method,
        dispatcher: agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
    };
    try {
      assert.ok(first.registry);
      const put = await call(`${first.url}/v1/policies/no-registry`, 'PUT', {
        text: 'forbid (principal == Warden::ServiceAccount::"service:registry", action, resource);',
      });
      assert.equal(put.status, 200, JSON.stringify(put.json));
    } finally {
      await first.close();
    }

    const lines: string[] = [];
    const second = await startWarden(config, { ...quiet, log: (line) => lines.push(line) });
    try {
      assert.equal(second.registry, undefined);
      assert.ok(
        lines.some((l) => /^registry and gateway not started: not allowed to .*warden policies list/.test(l)),
        lines.join('\n'),
      );
      const removed = await call(`${second.url}/v1/policies/no-registry`, 'DELETE');
      assert.deepEqual(removed, { status: 200, json: { removed: true } }, JSON.stringify(removed.json));
    } finally {
      await second.close();
    }

    const third = await startWarden(config, quiet);
    try {
      assert.ok(third.registry);
      assert.ok(third.gateway);
    } finally {
      await third.close();
      await agent.close();
    }
  });
});
