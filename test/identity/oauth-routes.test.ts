import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { oauthRoutes } from '../../src/server/routes/oauth.ts';
import { ADMIN, fixture, ISSUER } from './support.ts';
import type { Fixture } from './support.ts';

// The OAuth endpoints are public routes, so they run on a bare Fastify instance without the server's hooks.
describe('OAuth routes (form bodies, RFC 6749 errors)', () => {
  let f: Fixture;
  let app: FastifyInstance;
  let secret: string;
  before(async () => {
    f = await fixture();
    secret =
      (
        await f.identity.createServiceAccount(ADMIN, {
          clientId: 'svc',
          authMethod: 'client_secret',
          roles: ['key-user'],
        })
      ).clientSecret ?? '';
    app = Fastify();
    oauthRoutes(app, { identity: f.identity });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await f.close();
  });

  const form = (body: string, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/oauth/token',
      payload: body,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    });

  it('issues a token for a form-encoded client_credentials request', async () => {
    const res = await form(
      `grant_type=client_credentials&client_id=svc&client_secret=${encodeURIComponent(secret)}`,
    );
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = res.json<{ access_token: string; token_type: string }>();
    assert.equal(body.token_type, 'Bearer');
    assert.ok(
      await f.identity.authenticate({ authorization: `Bearer ${body.access_token}`, sourceIp: '127.0.0.1' }),
    );
  });

  it('answers errors as {error, error_description}', async () => {
    const bad = await form('grant_type=client_credentials&client_id=svc&client_secret=wrong', {});
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.json<{ error: string }>().error, 'invalid_client');
    const repeated = await form('grant_type=client_credentials&grant_type=refresh_token');
    assert.equal(repeated.statusCode, 400);
    assert.equal(repeated.json<{ error: string }>().error, 'invalid_request');
    const json = await app.inject({
      method: 'POST',
      url: '/oauth/token',
      payload: { grant_type: 'client_credentials' },
    });
    assert.equal(json.statusCode, 415);
    assert.equal(json.json<{ error: string }>().error, 'invalid_request');
    const unsupported = await form('grant_type=password&username=a&password=b');
    assert.deepEqual(Object.keys(unsupported.json<object>()).sort(), ['error', 'error_description']);
    assert.ok(!bad.body.includes(secret));
  });

  it('serves metadata and the JWKS', async () => {
    const meta = await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' });
    assert.equal(meta.json<{ issuer: string }>().issuer, ISSUER);
    const jwks = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' });
    const keys = jwks.json<{ keys: { kid: string; kty: string; alg: string }[] }>().keys;
    assert.equal(keys[0]?.kid, 'identity-tokens:1');
    assert.equal(keys[0].alg, 'ES256');
    assert.equal(keys[0].kty, 'EC');
  });

  it('revocation answers 200 for unknown tokens; introspection needs client authentication', async () => {
    const basic = `Basic ${Buffer.from(`svc:${secret}`).toString('base64')}`;
    const revoke = await app.inject({
      method: 'POST',
      url: '/oauth/revoke',
      payload: 'token=whatever',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
    });
    assert.equal(revoke.statusCode, 200);
    const introspect = await app.inject({
      method: 'POST',
      url: '/oauth/introspect',
      payload: 'token=whatever',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(introspect.statusCode, 401);
  });
});
