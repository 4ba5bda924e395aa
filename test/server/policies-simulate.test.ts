// POST /v1/policies/simulate under arbitrary input: every body is answered 200 with a decision or 4xx with the
// error shape, never 5xx, and nothing about the policies in force changes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { ACTION_IDS, PRINCIPAL_TYPES, RESOURCE_TYPES } from '../../src/policy/index.ts';
import { tempDir } from '../envelope/support.ts';

describe('POST /v1/policies/simulate', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-simulate-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  const agent = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  after(async () => {
    await agent.close();
    await warden.close();
  });
  const token = readFileSync(warden.tokenPath, 'utf8').trim();
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown) => {
    const r = await request(`${warden.url}${path}`, {
      method,
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
  };

  /** Mostly well-formed values, sometimes anything: both the decisions and the refusals get exercised. */
  const mostly = <T, U>(valid: fc.Arbitrary<T>, anything: fc.Arbitrary<U>) =>
    fc.oneof({ arbitrary: valid, weight: 12 }, { arbitrary: anything, weight: 1 });
  const word = mostly(fc.constantFrom('alice', 'payments', 'key-user', 'admin', '*', 'a.b-c'), fc.string());
  const value = fc.oneof(
    fc.string(),
    fc.integer(),
    fc.boolean(),
    fc.array(fc.string(), { maxLength: 3 }),
    fc.double(),
  );
  const attrs = fc.dictionary(
    mostly(fc.constantFrom('sensitivity', 'owner', 'stage', 'environment', 'clearance'), fc.string()),
    value,
    { maxKeys: 2 },
  );
  const body = fc.record(
    {
      principal: fc.record(
        {
          type: mostly(fc.constantFrom(...PRINCIPAL_TYPES), fc.string()),
          id: word,
          roles: fc.array(word, { maxLength: 3 }),
          groups: fc.array(word, { maxLength: 3 }),
          attrs,
        },
        { requiredKeys: ['type', 'id'] },
      ),
      action: mostly(fc.constantFrom(...ACTION_IDS), fc.string()),
      resource: fc.record(
        { type: mostly(fc.constantFrom(...RESOURCE_TYPES), fc.string()), id: word, attrs, model: word },
        { requiredKeys: ['type', 'id'] },
      ),
      context: fc.record(
        {
          time: mostly(
            fc
              .date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true })
              .map((d) => d.toISOString()),
            fc.string(),
          ),
          sourceIp: mostly(fc.oneof(fc.ipV4(), fc.ipV6()), fc.string()),
          mfaAgeSeconds: mostly(fc.nat(), fc.oneof(fc.integer(), fc.double())),
          authMethod: word,
          environment: mostly(fc.constantFrom('dev', 'staging', 'prod'), fc.string()),
          purpose: mostly(fc.constantFrom('model-training', 'fraud.scoring'), fc.string()),
          networkChanged: mostly(fc.boolean(), fc.string()),
        },
        { requiredKeys: [] },
      ),
      change: fc.oneof(
        fc.record({
          put: fc.record({
            id: word,
            text: mostly(
              fc.constantFrom(
                'forbid (principal, action, resource);',
                'permit (principal, action, resource) when { context has purpose };',
              ),
              fc.string(),
            ),
          }),
        }),
        fc.record({ remove: word }),
      ),
    },
    { requiredKeys: ['principal', 'action', 'resource'] },
  );

  it('answers a decision or a 4xx error for any body, and changes no policy', async () => {
    const before = await call('GET', '/v1/policies');
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const r = await call('POST', '/v1/policies/simulate', b);
        seen.add(r.status);
        if (r.status === 200) {
          assert.ok(r.body.decision === 'allow' || r.body.decision === 'deny');
          assert.equal(r.body.changed, b.change !== undefined);
        } else {
          assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${JSON.stringify(r.body)}`);
          const error = r.body.error as { code?: unknown; message?: unknown };
          assert.equal(typeof error.code, 'string');
          assert.equal(typeof error.message, 'string');
        }
      }),
      { numRuns: 150 },
    );
    // Both paths were exercised: decisions and refusals.
    assert.ok(seen.has(200) && seen.has(400), [...seen].join(','));
    assert.deepEqual(await call('GET', '/v1/policies'), before);
  });

  it('decides as a real request would: the deployment environment unless given, the time given', async () => {
    const ask = (context: Record<string, unknown>, change?: unknown) =>
      call('POST', '/v1/policies/simulate', {
        principal: { type: 'User', id: 'alice', roles: ['key-user'] },
        action: 'kms.crypto.encrypt',
        resource: { type: 'Key', id: 'k' },
        context,
        ...(change === undefined ? {} : { change }),
      });
    const prodOnly = {
      put: {
        id: 'prod-only',
        text: 'forbid (principal, action, resource is Warden::Key) unless { context has environment && context.environment == "prod" };',
      },
    };
    // This server runs in dev.
    assert.equal((await ask({}, prodOnly)).body.decision, 'deny');
    assert.equal((await ask({ environment: 'prod' }, prodOnly)).body.decision, 'allow');
    const allowed = await ask({});
    assert.equal(allowed.body.decision, 'allow');
    assert.equal(allowed.body.changed, false);
  });
});
