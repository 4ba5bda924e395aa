// Self-service routes (a principal's own API keys and second factors) go through Cedar as `identity.self`: with
// the `reauthenticateOnNewNetwork` guardrail on, a session used from another network cannot mint an API key or
// enrol a factor there, which would otherwise outlive the guardrail (an API key carries no login network).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { tempDir } from '../envelope/support.ts';

describe('self-service under the reauthenticateOnNewNetwork guardrail', async () => {
  const dir = tempDir('warden-self-service-');
  const configFile = path.join(dir, 'config.json');
  writeFileSync(
    configFile,
    JSON.stringify({ policies: { guardrails: { reauthenticateOnNewNetwork: true } } }),
  );
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: dir, WARDEN_LISTEN: '127.0.0.1:0', WARDEN_CONFIG: configFile }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const ca = readFileSync(warden.caPath);
  // The whole of 127.0.0.0/8 reaches the server: from 127.0.1.1 is from another /24, a different network.
  const from = { login: '127.0.0.1', elsewhere: '127.0.1.1' };
  const call = (
    localAddress: string,
    method: 'GET' | 'POST',
    route: string,
    token: string | undefined,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        `${warden.url}${route}`,
        {
          method,
          ca,
          localAddress,
          agent: false,
          headers: {
            ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          });
        },
      );
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  const bootstrap = readFileSync(warden.tokenPath, 'utf8').trim();
  const created = await call(from.login, 'POST', '/v1/identities/users', bootstrap, {
    username: 'dana',
    password: 'a long enough password',
    roles: ['auditor'],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const login = await call(from.login, 'POST', '/v1/auth/login', undefined, {
    username: 'dana',
    password: 'a long enough password',
  });
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const session = login.body.access_token as string;

  it('refuses minting an API key or enrolling TOTP from another network, and allows both from the login one', async () => {
    for (const [method, route, body] of [
      ['POST', '/v1/auth/api-keys', { scopes: ['auditor'] }],
      ['GET', '/v1/auth/api-keys', undefined],
      ['POST', '/v1/auth/mfa/totp', {}],
    ] as const) {
      const refused = await call(from.elsewhere, method, route, session, body);
      assert.equal(refused.status, 403, `${method} ${route}: ${JSON.stringify(refused.body)}`);
    }
    const minted = await call(from.login, 'POST', '/v1/auth/api-keys', session, { scopes: ['auditor'] });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const listed = await call(from.login, 'GET', '/v1/auth/api-keys', session);
    assert.equal(listed.status, 200);
    assert.equal((listed.body.items as unknown[]).length, 1);
  });
});
