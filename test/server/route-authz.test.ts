// Every route of `warden server`, enumerated: each declares its Cedar action (or is public); without credentials
// each protected route answers 401; with valid credentials but no permission, 403; with permission, it is
// authorised (neither 401 nor 403). Requests are generated from the route schemas of the OpenAPI document, so a
// new route is covered the day it is registered.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import { BOOTSTRAP_PRINCIPAL, listRoutes } from '../../src/server/index.ts';
import type { RouteInfo } from '../../src/server/index.ts';
import { tempDir } from '../envelope/support.ts';

type Schema = Record<string, unknown>;

/** Routes whose public reachability is intended (discovery, OAuth, health, unseal, self-service with own auth). */
const PUBLIC = new Set([
  'GET /.well-known/jwks.json',
  'GET /.well-known/oauth-authorization-server',
  'POST /oauth/introspect',
  'POST /oauth/revoke',
  'POST /oauth/token',
  'GET /v1/audit/verifier-key',
  'GET /v1/auth/api-keys',
  'POST /v1/auth/api-keys',
  'DELETE /v1/auth/api-keys/:id',
  'POST /v1/auth/bootstrap',
  'POST /v1/auth/login',
  'POST /v1/auth/mfa/totp',
  'POST /v1/auth/mfa/totp/verify',
  'POST /v1/auth/webauthn/authenticate/options',
  'POST /v1/auth/webauthn/authenticate/verify',
  'POST /v1/auth/webauthn/register/options',
  'POST /v1/auth/webauthn/register/verify',
  'GET /v1/ca/certificates',
  'GET /v1/ca/crl',
  'GET /v1/health',
  'GET /v1/openapi.json',
  'GET /v1/operator/status',
  'POST /v1/operator/unseal',
]);

const CANDIDATES = [
  'app',
  'demo-chat',
  '1',
  '0',
  'AAAA',
  'x.bin',
  'a',
  `sha256:${'0'.repeat(64)}`,
  '0'.repeat(64),
  '00000000-0000-0000-0000-000000000000',
  'A'.repeat(16),
];

function sample(schema: Schema | undefined, shared: Record<string, Schema>, depth = 0): unknown {
  if (schema === undefined || depth > 8) return {};
  const ref = schema.$ref;
  if (typeof ref === 'string')
    return sample(shared[ref.replace(/^#\/components\/schemas\//, '')], shared, depth + 1);
  const branches = (schema.oneOf ?? schema.anyOf) as Schema[] | undefined;
  if (branches !== undefined) {
    const [first] = branches;
    // A branch that only names required properties of the enclosing object (`oneOf: [{required: [...]}]`).
    if (schema.properties !== undefined && first?.properties === undefined) {
      const required = [...((schema.required ?? []) as string[]), ...((first?.required ?? []) as string[])];
      return sample({ ...schema, oneOf: undefined, anyOf: undefined, required }, shared, depth + 1);
    }
    return sample(first, shared, depth + 1);
  }
  if (Array.isArray(schema.enum)) return schema.enum[0];
  const type: unknown = Array.isArray(schema.type) ? (schema.type as unknown[])[0] : schema.type;
  switch (type) {
    case 'string': {
      const pattern = typeof schema.pattern === 'string' ? new RegExp(schema.pattern) : undefined;
      const min = typeof schema.minLength === 'number' ? schema.minLength : 0;
      const found = CANDIDATES.find((c) => (pattern === undefined || pattern.test(c)) && c.length >= min);
      return found ?? 'a'.repeat(Math.max(min, 1));
    }
    case 'integer':
    case 'number':
      return typeof schema.minimum === 'number' ? schema.minimum : 1;
    case 'boolean':
      return false;
    case 'array':
      return typeof schema.minItems === 'number' && schema.minItems > 0
        ? [sample(schema.items as Schema, shared, depth + 1)]
        : [];
    case 'object':
    case undefined: {
      const properties = (schema.properties ?? {}) as Record<string, Schema>;
      const required = (schema.required ?? []) as string[];
      const wanted = typeof schema.minProperties === 'number' ? schema.minProperties : 0;
      const names = [...required, ...Object.keys(properties).filter((k) => !required.includes(k))].slice(
        0,
        Math.max(required.length, wanted),
      );
      return Object.fromEntries(names.map((k) => [k, sample(properties[k], shared, depth + 1)]));
    }
    default:
      return null;
  }
}

describe('every route: declared, 401 without credentials, 403 without permission, authorised with it', async () => {
  const warden = await startWarden(
    loadConfig({ WARDEN_DATA_DIR: tempDir('warden-routes-'), WARDEN_LISTEN: '127.0.0.1:0' }),
    { requestLog: { write: () => true } as unknown as NodeJS.WritableStream },
  );
  after(() => warden.close());
  const dispatcher = new Agent({ connect: { ca: readFileSync(warden.caPath) } });
  const admin = readFileSync(warden.tokenPath, 'utf8').trim();
  const identity = warden.identity.current();
  const nobody = await identity.createUser(BOOTSTRAP_PRINCIPAL, { username: 'nobody', roles: [] });
  const { access_token: nobodyToken } = await identity.issueSession(nobody, {
    amr: ['pwd'],
    authMethod: 'password',
  });
  const openapi = warden.server.swagger() as {
    paths: Record<
      string,
      Record<
        string,
        { parameters?: Schema[]; requestBody?: { content?: Record<string, { schema?: Schema }> } }
      >
    >;
    components?: { schemas?: Record<string, Schema> };
  };
  const shared = openapi.components?.schemas ?? {};
  const routes = listRoutes(warden.server);

  const build = (route: RouteInfo) => {
    const openapiPath = route.url
      .replace(/:(\w+)\([^)]*\)::(\w+)/, '{$1}~~$2')
      .replace(/:(\w+)/g, '{$1}')
      .replace('~~', ':')
      .replace(/\*$/, '{*}');
    const operation = openapi.paths[openapiPath]?.[route.method.toLowerCase()];
    const params: Record<string, string> = {};
    const query: Record<string, string> = {};
    for (const p of operation?.parameters ?? []) {
      const value = String(sample(p.schema as Schema, shared));
      if (p.in === 'path') params[String(p.name)] = value;
      else if (p.in === 'query' && p.required === true) query[String(p.name)] = value;
    }
    let path = route.url
      .replace(/:(\w+)\([^)]*\)::(\w+)/, (_, n: string, s: string) => `{${n}}~~${s}`)
      .replace(/:(\w+)/g, (_, n: string) => encodeURIComponent(params[n] ?? 'app'))
      .replace(/\{(\w+)\}~~/, (_, n: string) => `${encodeURIComponent(params[n] ?? 'app')}:`)
      .replace(/\*$/, 'x.bin');
    if (Object.keys(query).length > 0) path += `?${new URLSearchParams(query).toString()}`;
    const content = operation?.requestBody?.content ?? {};
    const json = content['application/json']?.schema;
    const body =
      json !== undefined
        ? { type: 'application/json', data: JSON.stringify(sample(json, shared)) }
        : Object.keys(content).length > 0
          ? { type: Object.keys(content)[0] ?? 'application/octet-stream', data: 'x' }
          : route.method === 'GET' || route.method === 'DELETE'
            ? undefined
            : { type: 'application/json', data: '{}' };
    return { path, body };
  };

  const send = async (route: RouteInfo, token: string | undefined) => {
    const { path, body } = build(route);
    const r = await request(`${warden.url}${path}`, {
      method: route.method as 'GET',
      dispatcher,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': body.type }),
      },
      ...(body === undefined ? {} : { body: body.data }),
    });
    const text = await r.body.text();
    return { status: r.statusCode, text, path };
  };

  it('every route declares public or its Cedar action, and only the intended ones are public', () => {
    assert.ok(routes.length >= 100, `${routes.length} routes`);
    const publicOnes = routes.filter((r) => 'public' in r.authz).map((r) => `${r.method} ${r.url}`);
    assert.deepEqual(publicOnes.sort(), [...PUBLIC].sort());
    for (const r of routes) if (!('public' in r.authz)) assert.match(r.authz.action, /^[a-z]+(\.[a-z-]+)+$/);
  });

  const protectedRoutes = routes.filter((r) => !('public' in r.authz));
  it('answers 401 on every protected route without credentials', async () => {
    for (const route of protectedRoutes) {
      const r = await send(route, undefined);
      assert.equal(r.status, 401, `${route.method} ${r.path}: ${r.text.slice(0, 200)}`);
    }
  });

  it('answers 403 on every protected route to a principal without permission', async () => {
    const wrong: string[] = [];
    for (const route of protectedRoutes) {
      const r = await send(route, nobodyToken);
      if (r.status !== 403) wrong.push(`${route.method} ${r.path} -> ${r.status} ${r.text.slice(0, 160)}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('authorises the administrator on every protected route', async () => {
    const wrong: string[] = [];
    for (const route of protectedRoutes) {
      if (route.url === '/v1/operator/seal') continue; // would seal the server under the other checks
      const r = await send(route, admin);
      if (r.status === 401 || r.status === 403)
        wrong.push(`${route.method} ${r.path} -> ${r.status} ${r.text.slice(0, 160)}`);
    }
    assert.deepEqual(wrong, []);
  });
});
