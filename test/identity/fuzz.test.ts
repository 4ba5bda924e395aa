import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CLIENT_ASSERTION_TYPE,
  OAuthError,
  parseBasicCredentials,
  parseOAuthForm,
  ThrottledError,
} from '../../src/identity/index.ts';
import { ADMIN, bearer, fixture } from './support.ts';
import type { Fixture } from './support.ts';

const RUNS = 150;
let ipCounter = 0;
/** A fresh address per attempt, so the per-address throttle does not turn the fuzz into throttle tests. */
const ip = () => `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}`;

describe('malformed input never authenticates and never throws anything but the typed error', () => {
  let f: Fixture;
  let validToken: string;
  let secret: string;
  before(async () => {
    f = await fixture();
    const created = await f.identity.createServiceAccount(ADMIN, {
      clientId: 'fuzz',
      authMethod: 'client_secret',
      roles: ['key-user'],
    });
    secret = created.clientSecret ?? '';
    const basic = `Basic ${Buffer.from(`fuzz:${secret}`).toString('base64')}`;
    validToken = (
      await f.identity.oauth.token({ form: { grant_type: 'client_credentials' }, authorization: basic })
    ).access_token;
  });
  after(() => f.close());

  it('parseOAuthForm and parseBasicCredentials', () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        try {
          const form = parseOAuthForm(body);
          for (const v of Object.values(form)) assert.equal(typeof v, 'string');
        } catch (err) {
          assert.ok(err instanceof OAuthError && err.error === 'invalid_request');
        }
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (header) => {
        const parsed = parseBasicCredentials(header);
        if (parsed !== undefined) assert.ok(parsed.clientId.length > 0 && parsed.secret.length > 0);
      }),
      { numRuns: 500 },
    );
  });

  it('authenticate: arbitrary headers and mutated tokens', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.string({ maxLength: 200 }).map((s) => `Bearer ${s}`),
          fc
            .tuple(fc.nat({ max: validToken.length - 1 }), fc.constantFrom('A', 'x', '.', '_', '-', ''))
            .map(([i, c]) => `Bearer ${validToken.slice(0, i)}${c}${validToken.slice(i + 1)}`),
          fc.string({ maxLength: 80 }).map((s) => `Bearer wdn_live_${s}`),
        ),
        async (authorization) => {
          // Non-canonical base64url (a changed padding bit in a last character) decodes to the same token.
          const canon = (t: string) =>
            t
              .split('.')
              .map((p) => Buffer.from(p, 'base64url').toString('base64url'))
              .join('.');
          if (canon(authorization.replace(/^Bearer /, '')) === canon(validToken)) return;
          try {
            assert.equal(await f.identity.authenticate({ authorization, sourceIp: ip() }), undefined);
          } catch (err) {
            assert.ok(err instanceof ThrottledError, String(err));
          }
        },
      ),
      { numRuns: RUNS },
    );
    assert.ok(await f.identity.authenticate({ authorization: bearer(validToken), sourceIp: ip() }));
  });

  it('token, revoke and introspect endpoints: arbitrary forms and assertions fail with OAuthError only', async () => {
    const field = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom('client_credentials', 'refresh_token', 'fuzz', 'warden', CLIENT_ASSERTION_TYPE),
    );
    const form = fc.record(
      {
        grant_type: field,
        client_id: field,
        client_secret: field,
        client_assertion_type: field,
        client_assertion: fc.oneof(
          field,
          fc
            .string({ maxLength: 100 })
            .map((s) => `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(s).toString('base64url')}.sig`),
        ),
        refresh_token: fc.oneof(
          field,
          fc.string({ minLength: 66, maxLength: 66 }).map((s) => `wrt_${s}`),
        ),
        token: field,
        scope: field,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(
        form,
        fc.option(fc.string({ maxLength: 80 }), { nil: undefined }),
        async (body, authorization) => {
          const form = parseOAuthForm(body);
          const request = { form, authorization, sourceIp: ip() };
          // RFC 7009 lets the public client (the CLI, no credentials) revoke, and answers an unknown token with
          // success: that is the one call a fuzzed request may pass. It must revoke nothing of another client's.
          const publicClient =
            authorization === undefined &&
            form['client_id'] === 'warden' &&
            form['client_secret'] === undefined &&
            form['client_assertion'] === undefined &&
            form['client_assertion_type'] === undefined;
          for (const [name, call] of [
            ['token', () => f.identity.oauth.token(request)],
            ['introspect', () => f.identity.oauth.introspect(request)],
            ['revoke', () => f.identity.oauth.revoke(request)],
          ] as const) {
            try {
              await call();
              assert.ok(name === 'revoke' && publicClient, `a fuzzed ${name} request succeeded`);
            } catch (err) {
              assert.ok(err instanceof OAuthError, String(err));
              assert.ok(!err.message.includes(secret));
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
    assert.ok(await f.identity.authenticate({ authorization: bearer(validToken), sourceIp: ip() }));
  });

  it('the public client revokes nothing that is not its own', async () => {
    const request = { form: { client_id: 'warden', token: validToken }, sourceIp: ip() };
    await f.identity.oauth.revoke(request);
    assert.ok(await f.identity.authenticate({ authorization: bearer(validToken), sourceIp: ip() }));
  });
});
