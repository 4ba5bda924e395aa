import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { importJWK, SignJWT } from 'jose';
import type { JWK } from 'jose';
import { AuditHasher, JsonLinesAuditRecorder } from '../../../src/audit/index.ts';
import {
  loadOidcClientSecret,
  MemoryPendingLoginStore,
  OidcError,
  OidcRelyingParty,
  resolveOidcConfig,
} from '../../../src/identity/oidc/index.ts';
import type { OidcConfig, PendingLogin, PendingLoginStore } from '../../../src/identity/oidc/index.ts';
import {
  API_AUDIENCE,
  authorize,
  CLIENT_ID,
  CLIENT_SECRET,
  PUBLIC_CLIENT_ID,
  signingJwk,
  TestProvider,
} from './provider-harness.ts';

const REDIRECT = 'http://127.0.0.1:5555/callback';

/** A real pending store that also lets the test see what was stored (to exchange codes itself). */
class RecordingPendingStore implements PendingLoginStore {
  readonly inner = new MemoryPendingLoginStore({ maxEntries: 100 });
  readonly seen = new Map<string, PendingLogin>();
  async put(state: string, login: PendingLogin): Promise<void> {
    this.seen.set(state, login);
    await this.inner.put(state, login);
  }
  take(state: string, now: number): Promise<PendingLogin | undefined> {
    return this.inner.take(state, now);
  }
}

let idp: TestProvider;
let dir: string;
let audit: JsonLinesAuditRecorder;
const hasher = new AuditHasher(Buffer.alloc(32, 7));

function config(overrides: Partial<OidcConfig> = {}): OidcConfig {
  return {
    issuer: idp.issuer,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUris: [],
    loopbackRedirectPaths: ['/callback'],
    scopes: ['email', 'profile', 'groups'],
    roleMapping: { 'warden-admins': ['admin'], engineering: ['ml-engineer', 'data-scientist'] },
    jwksCooldownMs: 0,
    ...overrides,
  };
}

function relyingParty(overrides: Partial<OidcConfig> = {}, now?: () => number) {
  const pending = new RecordingPendingStore();
  const rp = new OidcRelyingParty(config(overrides), {
    audit,
    auditHasher: hasher,
    pending,
    ...(now === undefined ? {} : { now }),
  });
  return { rp, pending };
}

async function browse(rp: OidcRelyingParty, redirectUri = REDIRECT) {
  const started = await rp.startLogin({ redirectUri });
  const callback = await authorize(started.authorizationUrl, redirectUri);
  return {
    started,
    code: callback.searchParams.get('code') ?? '',
    state: callback.searchParams.get('state') ?? '',
    iss: callback.searchParams.get('iss') ?? undefined,
  };
}

/** The token endpoint, called directly (as the relying party would), to get raw tokens to validate. */
async function exchange(code: string, verifier: string, clientId = CLIENT_ID) {
  const tokenEndpoint = `${idp.issuer}/token`;
  const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT });
  body.set('code_verifier', verifier);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (clientId === CLIENT_ID) {
    headers['authorization'] = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
  } else body.set('client_id', clientId);
  const response = await fetch(tokenEndpoint, { method: 'POST', headers, body });
  return { status: response.status, json: (await response.json()) as Record<string, string> };
}

async function tokensFor(rp: OidcRelyingParty, pending: RecordingPendingStore) {
  const { code, state } = await browse(rp);
  const stored = pending.seen.get(state)!;
  const { status, json } = await exchange(code, stored.codeVerifier);
  assert.equal(status, 200);
  return { idToken: json['id_token']!, accessToken: json['access_token']!, nonce: stored.nonce };
}

async function rejects(promise: Promise<unknown>, code: string, reason?: RegExp): Promise<OidcError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OidcError, `expected OidcError, got ${String(err)}`);
    assert.equal(err.code, code, `reason: ${err.reason}`);
    if (reason !== undefined) assert.match(err.reason, reason);
    return err;
  }
  assert.fail(`expected ${code}`);
}

/** A token signed with one of the provider's own keys (to build claims the provider would never issue). */
async function forge(
  claims: Record<string, unknown>,
  jwk: JWK = idp.keys[0]!,
  header: Record<string, unknown> = {},
) {
  const key = await importJWK(jwk, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: now, exp: now + 300, iss: idp.issuer, aud: CLIENT_ID, sub: 'alice', ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid!, ...header })
    .sign(key);
}

async function auditEvents(): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dir, 'audit.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

before(async () => {
  idp = await TestProvider.start();
  dir = await mkdtemp(join(tmpdir(), 'warden-oidc-'));
  audit = await JsonLinesAuditRecorder.open(join(dir, 'audit.jsonl'));
});

after(async () => {
  await idp.stop();
  await audit.close();
  await rm(dir, { recursive: true, force: true });
});

describe('OIDC relying party against oidc-provider', () => {
  it('logs in: code flow with PKCE, state and nonce; identity with groups, roles, amr, auth_time', async () => {
    const { rp } = relyingParty();
    const { started, code, state, iss } = await browse(rp);
    const url = new URL(started.authorizationUrl);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('redirect_uri'), REDIRECT);
    assert.ok(url.searchParams.get('nonce'));
    assert.equal(state, started.state);
    const identity = await rp.completeLogin(
      { code, state, iss },
      { requestId: 'req-1', sourceIp: '127.0.0.1' },
    );
    assert.equal(identity.issuer, idp.issuer);
    assert.equal(identity.subject, 'alice');
    assert.equal(identity.email, 'alice@example.test');
    assert.equal(identity.emailVerified, true);
    assert.equal(identity.name, 'Alice');
    assert.deepEqual(identity.groups, ['warden-admins', 'engineering']);
    assert.deepEqual(identity.roles, ['admin', 'data-scientist', 'ml-engineer']);
    assert.deepEqual(identity.amr, ['pwd', 'mfa']);
    assert.ok(identity.authTime !== undefined && Math.abs(identity.authTime - Date.now()) < 60_000);
    const event = (await auditEvents()).find((e) => e['requestId'] === 'req-1')!;
    assert.equal(event['outcome'], 'success');
    assert.equal(event['action'], 'identity.oidc.login');
    assert.doesNotMatch(JSON.stringify(event), /alice/);
  });

  it('works as a public client (no secret, PKCE only)', async () => {
    const { rp } = relyingParty({ clientId: PUBLIC_CLIENT_ID, clientSecret: undefined });
    assert.equal(rp.config.tokenEndpointAuthMethod, 'none');
    const { code, state } = await browse(rp);
    assert.equal((await rp.completeLogin({ code, state })).subject, 'alice');
  });

  it('refuses an unknown or malformed state, and leaves the real login usable', async () => {
    const { rp } = relyingParty();
    const { code, state } = await browse(rp);
    await rejects(rp.completeLogin({ code, state: 'A'.repeat(43) }), 'oidc_login_state_invalid');
    await rejects(rp.completeLogin({ code, state: 'short' }), 'oidc_login_state_invalid');
    await rejects(rp.completeLogin({ code, state: `${state}x` }), 'oidc_login_state_invalid');
    assert.equal((await rp.completeLogin({ code, state })).subject, 'alice');
  });

  it('a state is single use, and a used code is refused by the provider', async () => {
    const { rp } = relyingParty();
    const first = await browse(rp);
    await rp.completeLogin(first);
    await rejects(rp.completeLogin(first), 'oidc_login_state_invalid');
    const second = await rp.startLogin({ redirectUri: REDIRECT });
    await rejects(
      rp.completeLogin({ code: first.code, state: second.state }),
      'oidc_token_exchange_failed',
      /invalid_grant/,
    );
    // The failed attempt consumed the second state too.
    await rejects(rp.completeLogin({ code: first.code, state: second.state }), 'oidc_login_state_invalid');
  });

  it('the provider refuses a code with another login’s PKCE verifier', async () => {
    const { rp, pending } = relyingParty();
    const a = await browse(rp);
    const b = await rp.startLogin({ redirectUri: REDIRECT });
    const direct = await exchange(a.code, pending.seen.get(b.state)!.codeVerifier);
    assert.equal(direct.status, 400);
    assert.equal(direct.json['error'], 'invalid_grant');
    // The same code with its own verifier is accepted: the verifier, nothing else, was the problem.
    assert.equal((await exchange(a.code, pending.seen.get(a.state)!.codeVerifier)).status, 200);
    const c = await browse(rp);
    const d = await rp.startLogin({ redirectUri: REDIRECT });
    await rejects(
      rp.completeLogin({ code: c.code, state: d.state }),
      'oidc_token_exchange_failed',
      /invalid_grant/,
    );
  });

  it('refuses an RFC 9207 iss parameter naming another provider', async () => {
    const { rp } = relyingParty();
    const { code, state } = await browse(rp);
    await rejects(rp.completeLogin({ code, state, iss: 'https://evil.example' }), 'oidc_idp_error');
  });

  it('refuses an expired login', async () => {
    let clock = Date.now();
    const { rp } = relyingParty({ loginTtlSeconds: 60 }, () => clock);
    const { code, state } = await browse(rp);
    clock += 61_000;
    await rejects(rp.completeLogin({ code, state }), 'oidc_login_state_invalid');
  });

  it('bounds logins in progress', async () => {
    const rp = new OidcRelyingParty(config({ maxPendingLogins: 2 }), { audit, auditHasher: hasher });
    await rp.startLogin({ redirectUri: REDIRECT });
    await rp.startLogin({ redirectUri: REDIRECT });
    await rejects(rp.startLogin({ redirectUri: REDIRECT }), 'oidc_login_pending_limit');
  });

  it('validates the ID token: nonce, expiry, audience, azp, at_hash, keys', async () => {
    const { rp, pending } = relyingParty();
    const { idToken, accessToken, nonce } = await tokensFor(rp, pending);
    const ok = await rp.validateIdToken(idToken, { nonce, accessToken });
    assert.equal(ok.sub, 'alice');

    await rejects(
      rp.validateIdToken(idToken, { nonce: 'another-nonce' }),
      'oidc_id_token_invalid',
      /^nonce$/,
    );

    const later = relyingParty({}, () => Date.now() + 2 * 3600_000).rp;
    await rejects(later.validateIdToken(idToken, { nonce }), 'oidc_id_token_invalid', /^exp$/);
    const earlier = relyingParty({}, () => Date.now() - 3600_000).rp;
    await rejects(earlier.validateIdToken(idToken, { nonce }), 'oidc_id_token_invalid');
    // Within the skew: accepted.
    const skewed = relyingParty({ clockSkewSeconds: 60 }, () => Date.now() - 30_000).rp;
    assert.equal((await skewed.validateIdToken(idToken, { nonce })).sub, 'alice');

    const other = relyingParty({ clientId: 'someone-else' }).rp;
    await rejects(other.validateIdToken(idToken, { nonce }), 'oidc_id_token_invalid', /aud/);

    const stranger = signingJwk('attacker');
    await rejects(
      rp.validateIdToken(await forge({ nonce }, stranger), { nonce }),
      'oidc_id_token_invalid',
      /unknown_key/,
    );
    const impostor = { ...signingJwk('key-1') };
    await rejects(
      rp.validateIdToken(await forge({ nonce }, impostor), { nonce }),
      'oidc_id_token_invalid',
      /signature/,
    );

    assert.equal((await rp.validateIdToken(await forge({ nonce }), { nonce })).sub, 'alice');
    await rejects(
      rp.validateIdToken(await forge({ nonce, aud: [CLIENT_ID, 'other'] }), { nonce }),
      'oidc_id_token_invalid',
      /azp/,
    );
    assert.ok(
      await rp.validateIdToken(await forge({ nonce, aud: [CLIENT_ID, 'other'], azp: CLIENT_ID }), { nonce }),
    );
    await rejects(
      rp.validateIdToken(await forge({ nonce, azp: 'other' }), { nonce }),
      'oidc_id_token_invalid',
      /azp/,
    );
    await rejects(
      rp.validateIdToken(await forge({ nonce, iss: 'https://evil.example' }), { nonce }),
      'oidc_id_token_invalid',
      /iss/,
    );

    const hashOf = (token: string) =>
      createHash('sha256').update(token).digest().subarray(0, 16).toString('base64url');
    await rejects(
      rp.validateIdToken(await forge({ nonce, at_hash: hashOf('other-token') }), { nonce, accessToken }),
      'oidc_id_token_invalid',
      /at_hash/,
    );
    assert.ok(
      await rp.validateIdToken(await forge({ nonce, at_hash: hashOf(accessToken) }), { nonce, accessToken }),
    );

    // A symmetric token keyed with the client secret, and an unsigned one.
    const hs = await new SignJWT({ nonce, sub: 'alice', iss: idp.issuer, aud: CLIENT_ID })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(Buffer.from(CLIENT_SECRET));
    await rejects(rp.validateIdToken(hs, { nonce }), 'oidc_id_token_invalid');
    const [, payload] = idToken.split('.');
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
    await rejects(rp.validateIdToken(unsigned, { nonce }), 'oidc_id_token_invalid');
  });

  it('requires auth_time within max_age when max_age is configured', async () => {
    const { rp } = relyingParty({ maxAgeSeconds: 300 });
    const nonce = 'n';
    await rejects(
      rp.validateIdToken(await forge({ nonce }), { nonce }),
      'oidc_id_token_invalid',
      /auth_time/,
    );
    const old = Math.floor(Date.now() / 1000) - 3600;
    await rejects(
      rp.validateIdToken(await forge({ nonce, auth_time: old }), { nonce }),
      'oidc_id_token_invalid',
      /max_age/,
    );
    const { code, state, started } = await browse(rp);
    assert.equal(new URL(started.authorizationUrl).searchParams.get('max_age'), '300');
    assert.ok((await rp.completeLogin({ code, state })).authTime !== undefined);
  });

  it('maps groups to roles and denies when none maps (audited as denied)', async () => {
    const { rp } = relyingParty();
    idp.nextLogin = { accountId: 'bob', amr: ['pwd'] };
    try {
      const { code, state } = await browse(rp);
      await rejects(rp.completeLogin({ code, state }, { requestId: 'req-bob' }), 'oidc_no_role');
      const event = (await auditEvents()).find((e) => e['requestId'] === 'req-bob')!;
      assert.equal(event['outcome'], 'denied');
      assert.match(String(event['reason']), /^oidc_no_role/);

      const lenient = relyingParty({ denyWhenNoRole: false }).rp;
      const again = await browse(lenient);
      const identity = await lenient.completeLogin(again);
      assert.deepEqual(identity.roles, []);
      assert.deepEqual(identity.groups, ['marketing']);
      assert.deepEqual(identity.amr, ['pwd']);
    } finally {
      idp.nextLogin = { accountId: 'alice', amr: ['pwd', 'mfa'] };
    }
  });

  it('reads groups from a nested claim and refuses malformed claims', () => {
    const { rp } = relyingParty({ groupsClaim: 'realm_access.roles', roleMapping: { ops: ['auditor'] } });
    const identity = rp.identityFromClaims({ sub: 's', realm_access: { roles: ['ops', 'ops'] } });
    assert.deepEqual(identity.groups, ['ops']);
    assert.deepEqual(identity.roles, ['auditor']);
    assert.deepEqual(rp.identityFromClaims({ sub: 's', realm_access: { roles: 'ops' } }).roles, ['auditor']);
    assert.throws(() => rp.identityFromClaims({ sub: 's', realm_access: { roles: [1] } }), {
      code: 'oidc_claims_invalid',
    });
    assert.throws(() => rp.identityFromClaims({ sub: 's', realm_access: { roles: {} } }), {
      code: 'oidc_claims_invalid',
    });
    assert.throws(() => rp.identityFromClaims({ sub: 's' }), { code: 'oidc_no_role' });
    assert.throws(() => rp.identityFromClaims({ sub: 's', realm_access: { roles: ['ops'] }, email: 5 }), {
      code: 'oidc_claims_invalid',
    });
    // Inherited properties are not claims.
    const proto = relyingParty({ groupsClaim: 'constructor', roleMapping: { x: ['auditor'] } }).rp;
    assert.throws(() => proto.identityFromClaims({ sub: 's' }), { code: 'oidc_no_role' });
  });

  it('merges UserInfo claims when configured', async () => {
    const { rp } = relyingParty({ useUserinfo: true });
    const { code, state } = await browse(rp);
    const identity = await rp.completeLogin({ code, state });
    assert.deepEqual(identity.roles, ['admin', 'data-scientist', 'ml-engineer']);
  });

  it('validates JWT access tokens (RFC 9068): typ, iss, aud, exp', async () => {
    idp.jwtAccessTokens = true;
    try {
      const { rp, pending } = relyingParty({ accessToken: { audience: API_AUDIENCE } });
      const { idToken, accessToken } = await tokensFor(rp, pending);
      const validated = await rp.validateAccessToken(accessToken);
      assert.equal(validated.subject, 'alice');
      assert.equal(validated.clientId, CLIENT_ID);
      assert.ok(Array.isArray(validated.scopes));
      assert.ok(validated.expiresAt > Date.now());

      await rejects(rp.validateAccessToken(idToken), 'oidc_access_token_invalid');
      const elsewhere = relyingParty({ accessToken: { audience: 'https://other.test/api' } }).rp;
      await rejects(elsewhere.validateAccessToken(accessToken), 'oidc_access_token_invalid', /aud/);
      const later = relyingParty(
        { accessToken: { audience: API_AUDIENCE } },
        () => Date.now() + 3 * 3600_000,
      ).rp;
      await rejects(later.validateAccessToken(accessToken), 'oidc_access_token_invalid', /exp/);
      const forged = await forge({ aud: API_AUDIENCE }, signingJwk('key-1'), { typ: 'at+jwt' });
      await rejects(rp.validateAccessToken(forged), 'oidc_access_token_invalid', /signature/);
      await rejects(relyingParty().rp.validateAccessToken(accessToken), 'oidc_config_invalid');
    } finally {
      idp.jwtAccessTokens = false;
    }
  });

  it('refuses redirect URIs that are neither registered nor loopback IP literals with a known path', async () => {
    const { rp } = relyingParty({ redirectUris: ['https://console.example/auth/callback'] });
    assert.match((await rp.startLogin()).authorizationUrl, /redirect_uri=https%3A%2F%2Fconsole\.example/);
    for (const uri of [
      'http://localhost:5555/callback',
      'http://127.0.0.1:5555/other',
      'http://127.0.0.1/callback',
      'http://127.0.0.1:5555/callback?x=1',
      'https://evil.example/callback',
      'http://10.0.0.1:5555/callback',
      'not a url',
    ]) {
      await rejects(rp.startLogin({ redirectUri: uri }), 'oidc_redirect_uri_not_allowed');
    }
    assert.ok(await rp.startLogin({ redirectUri: 'http://[::1]:4444/callback' }));
  });

  it('checks the discovery document names the configured issuer', async () => {
    const { rp } = relyingParty({ issuer: `${idp.issuer}/` });
    await rejects(rp.startLogin({ redirectUri: REDIRECT }), 'oidc_discovery_failed', /issuer/);
    const gone = relyingParty({ issuer: 'http://127.0.0.1:1' }).rp;
    await rejects(gone.discover(), 'oidc_provider_unavailable');
  });

  it('never succeeds on arbitrary callback input or token strings (property)', async () => {
    const { rp } = relyingParty();
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), fc.string({ maxLength: 60 }), async (code, state) => {
        const err = await rp.completeLogin({ code, state }).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof OidcError);
      }),
      { numRuns: 60 },
    );
    const segment = fc.oneof(fc.base64String({ maxLength: 80 }), fc.string({ maxLength: 40 }));
    await fc.assert(
      fc.asyncProperty(fc.tuple(segment, segment, segment), async ([h, p, s]) => {
        const err = await rp.validateIdToken(`${h}.${p}.${s}`, { nonce: 'n' }).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof OidcError && err.code === 'oidc_id_token_invalid');
      }),
      { numRuns: 100 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          rp.identityFromClaims({ sub: 'x', groups: value });
        } catch (err) {
          assert.ok(err instanceof OidcError);
        }
      }),
      { numRuns: 300 },
    );
  });

  // Last: replaces the provider instance (its logins in progress are gone).
  it('follows a key rotation: a token signed by a new key is verified after reloading the JWKS', async () => {
    const { rp } = relyingParty();
    await rp.completeLogin(await browse(rp));
    const rotated = signingJwk('key-2');
    idp.rotateKeys([rotated, idp.keys[0]!]);
    const { code, state } = await browse(rp);
    assert.equal((await rp.completeLogin({ code, state })).subject, 'alice');
  });
});

describe('OIDC configuration', () => {
  const base: OidcConfig = {
    issuer: 'https://idp.example.com',
    clientId: 'warden',
    clientSecret: 's3cret',
    redirectUris: ['https://warden.example.com/auth/callback'],
    roleMapping: {},
  };

  it('refuses a non-https issuer except on loopback, and insecure or odd settings', () => {
    assert.equal(resolveOidcConfig(base).tokenEndpointAuthMethod, 'client_secret_basic');
    assert.ok(resolveOidcConfig({ ...base, issuer: 'http://127.0.0.1:8080' }));
    assert.ok(resolveOidcConfig({ ...base, issuer: 'http://localhost:8080/realms/x' }));
    for (const bad of [
      { issuer: 'http://idp.example.com' },
      { issuer: 'https://user:pw@idp.example.com' },
      { issuer: 'https://idp.example.com?x=1' },
      { issuer: 'ftp://idp.example.com' },
      { clientSecret: undefined, tokenEndpointAuthMethod: 'client_secret_basic' as const },
      { algorithms: ['HS256'] },
      { algorithms: ['none'] },
      { algorithms: [] },
      { redirectUris: ['http://warden.example.com/cb'] },
      { redirectUris: [] },
      { clockSkewSeconds: 3600 },
      { groupsClaim: 'a..b' },
      { roleMapping: { g: ['Not A Role'] } },
      { accessToken: { audience: '' } },
      { loginTtlSeconds: 0 },
    ]) {
      assert.throws(
        () => resolveOidcConfig({ ...base, ...bad }),
        { code: 'oidc_config_invalid' },
        JSON.stringify(bad),
      );
    }
  });

  it('loads the client secret from the environment or a private file, never a readable one', async () => {
    assert.equal(await loadOidcClientSecret({ env: 'S', environment: { S: 'abc' } }), 'abc');
    await assert.rejects(loadOidcClientSecret({ env: 'S', environment: {} }), {
      code: 'oidc_config_invalid',
    });
    await assert.rejects(loadOidcClientSecret({}), { code: 'oidc_config_invalid' });
    const tmp = await mkdtemp(join(tmpdir(), 'warden-oidc-secret-'));
    try {
      const file = join(tmp, 'secret');
      await writeFile(file, 'from-file\n', { mode: 0o600 });
      assert.equal(await loadOidcClientSecret({ file }), 'from-file');
      await chmod(file, 0o644);
      await assert.rejects(loadOidcClientSecret({ file }), { code: 'oidc_config_invalid' });
      await assert.rejects(loadOidcClientSecret({ file: join(tmp, 'missing') }), {
        code: 'oidc_config_invalid',
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('draws state, nonce and verifier itself: two logins share none', async () => {
    const { rp, pending } = relyingParty();
    const a = await rp.startLogin({ redirectUri: REDIRECT });
    const b = await rp.startLogin({ redirectUri: REDIRECT });
    const pa = pending.seen.get(a.state)!;
    const pb = pending.seen.get(b.state)!;
    assert.notEqual(a.state, b.state);
    assert.notEqual(pa.nonce, pb.nonce);
    assert.notEqual(pa.codeVerifier, pb.codeVerifier);
    const challenge = new URL(a.authorizationUrl).searchParams.get('code_challenge');
    assert.equal(challenge, createHash('sha256').update(pa.codeVerifier).digest('base64url'));
  });
});
