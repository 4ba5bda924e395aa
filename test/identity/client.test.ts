import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import * as OTPAuth from 'otpauth';
import fc from 'fast-check';
import type { Dispatcher } from 'undici';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import type { RunningWarden } from '../../src/app/index.ts';
import {
  IdentityClient,
  KmsClient,
  KmsClientError,
  TokenProviderError,
  WardenHttp,
  clientCredentialsTokenProvider,
  sessionFrom,
  sessionTokenProvider,
} from '../../src/client/index.ts';
import type { RequestOptions, Session } from '../../src/client/index.ts';
import { tempDir } from '../envelope/support.ts';

/**
 * The identity SDK against `warden server` as it runs (embedded defaults, TLS 1.3): bootstrap, login with MFA,
 * administration, client-credentials and session token providers driving KMS calls, API keys, revocation.
 */

const PASSWORD = 'correct horse battery staple';

/** A transport that counts token-endpoint calls (to observe single-flight renewal). */
class CountingHttp extends WardenHttp {
  tokenCalls = 0;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the overridden signature
  override request<T = Record<string, unknown>>(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<{ status: number; body: T }> {
    if (path === '/oauth/token') this.tokenCalls++;
    return super.request<T>(method, path, body, options);
  }
}

function totpOf(uri: string): OTPAuth.TOTP {
  const parsed = OTPAuth.URI.parse(uri);
  assert.ok(parsed instanceof OTPAuth.TOTP);
  return parsed;
}

async function rejectsWith(promise: Promise<unknown>, code: string, status?: number): Promise<unknown> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    assert.ok(err instanceof KmsClientError, String(err));
    assert.equal(err.code, code);
    if (status !== undefined) assert.equal(err.status, status);
    return true;
  });
  return caught;
}

let warden: RunningWarden;
let ca: Buffer;
let anonymous: WardenHttp;
let ids: IdentityClient;
let admin: IdentityClient;
let adminHttp: WardenHttp;
let adminKms: KmsClient;
let recoveryCodes: string[];
const closers: { close(): Promise<void> }[] = [];
const dataDir = tempDir('warden-identity-sdk-');

function http(token?: string | (() => Promise<string>)): WardenHttp {
  const h = new WardenHttp({ address: warden.url, ca, ...(token === undefined ? {} : { token }) });
  closers.push(h);
  return h;
}

before(async () => {
  warden = await startWarden(loadConfig({ WARDEN_DATA_DIR: dataDir, WARDEN_LISTEN: '127.0.0.1:0' }), {
    log: () => undefined,
    requestLog: devNull(),
  });
  ca = readFileSync(warden.caPath);
  anonymous = http();
  ids = new IdentityClient(anonymous);
});

after(async () => {
  for (const c of closers) await c.close();
  await warden.close();
});

function devNull(): PassThrough {
  const sink = new PassThrough();
  sink.resume();
  return sink;
}

describe('identity SDK against warden server', () => {
  it('bootstraps the first administrator, who must enrol MFA before anything else', async () => {
    const bootstrapToken = readFileSync(warden.tokenPath, 'utf8').trim();
    await rejectsWith(
      ids.redeemBootstrap({ token: 'wdn_boot_wrong', username: 'admin', password: PASSWORD }),
      'bootstrap_unavailable',
      409,
    );
    await rejectsWith(ids.login({ username: 'admin', password: PASSWORD }), 'invalid_credentials', 401);
    const user = await ids.redeemBootstrap({ token: bootstrapToken, username: 'admin', password: PASSWORD });
    assert.equal(user.username, 'admin');
    assert.deepEqual(user.roles, ['admin']);
    await rejectsWith(
      ids.redeemBootstrap({ token: bootstrapToken, username: 'admin2', password: PASSWORD }),
      'bootstrap_unavailable',
      409,
    );

    const first = await ids.login({ username: 'admin', password: PASSWORD });
    assert.equal(first.mfa_enrolment_required, true);
    assert.equal(first.scope, 'warden:mfa-enrolment');
    const enrolling = new IdentityClient(http(first.access_token));
    await rejectsWith(enrolling.listUsers(), 'forbidden', 403);
    await rejectsWith(enrolling.createOwnApiKey({ scopes: ['admin'] }), 'mfa_enrolment_required', 403);
    const { secret, uri } = await enrolling.beginTotpEnrolment();
    assert.match(uri, /^otpauth:\/\/totp\//);
    assert.ok(uri.includes(secret));
    const totp = totpOf(uri);
    const wrongCode = String((Number(totp.generate()) + 500_000) % 1_000_000).padStart(6, '0');
    await rejectsWith(enrolling.confirmTotpEnrolment(wrongCode), 'invalid_totp_code', 400);
    ({ recoveryCodes } = await enrolling.confirmTotpEnrolment(totp.generate()));
    assert.equal(recoveryCodes.length, 10);

    await rejectsWith(ids.login({ username: 'admin', password: PASSWORD }), 'mfa_required', 401);
    await rejectsWith(
      ids.login({ username: 'admin', password: 'wrong password!!', totpCode: totp.generate() }),
      'invalid_credentials',
      401,
    );
    // The enrolment code's step is spent: the next step's code (within the ±1 window) logs in.
    const session = await ids.login({
      username: 'admin',
      password: PASSWORD,
      totpCode: totp.generate({ timestamp: Date.now() + 30_000 }),
    });
    assert.equal(session.mfa_enrolment_required, false);
    assert.equal(session.scope, 'admin');
    adminHttp = http(session.access_token);
    admin = new IdentityClient(adminHttp);
    adminKms = new KmsClient(adminHttp);
    await adminKms.createKey({ name: 'app', type: 'aes256-gcm' });
  });

  it('administers users, role mappings and MFA resets', async () => {
    const bob = await admin.createUser({
      username: 'bob',
      password: PASSWORD,
      displayName: 'Bob',
      roles: ['auditor'],
      groups: ['analysts'],
    });
    assert.equal(bob.principalId, 'user:bob');
    assert.equal(bob.hasPassword, true);
    assert.deepEqual(
      (await admin.listUsers()).map((u) => u.username),
      ['admin', 'bob'],
    );
    assert.equal((await admin.getUser('bob')).displayName, 'Bob');
    assert.deepEqual((await admin.updateUser('bob', { roles: ['key-user'] })).roles, ['key-user']);

    const bobSession = await ids.login({ username: 'bob', password: PASSWORD });
    assert.equal(bobSession.scope, 'key-user');
    const bobHttp = http(bobSession.access_token);
    await new KmsClient(bobHttp).encrypt('app', Buffer.from('x'));
    // Disabling ends live tokens at once; re-enabling does not revive them.
    assert.equal((await admin.updateUser('bob', { disabled: true })).disabled, true);
    await rejectsWith(new KmsClient(bobHttp).encrypt('app', Buffer.from('x')), 'unauthenticated', 401);
    await admin.updateUser('bob', { disabled: false });
    await rejectsWith(new KmsClient(bobHttp).encrypt('app', Buffer.from('x')), 'unauthenticated', 401);

    await admin.setPassword('bob', 'another long password');
    await rejectsWith(ids.login({ username: 'bob', password: PASSWORD }), 'invalid_credentials', 401);
    await admin.resetMfa('bob');

    await admin.putRoleMapping('ml-team', ['ml-engineer', 'data-scientist']);
    assert.deepEqual(await admin.listRoleMappings(), [
      { group: 'ml-team', roles: ['data-scientist', 'ml-engineer'] },
    ]);
    await admin.deleteRoleMapping('ml-team');
    assert.deepEqual(await admin.listRoleMappings(), []);

    await admin.deleteUser('bob');
    await rejectsWith(admin.getUser('bob'), 'identity_not_found', 404);
    // Malformed input is refused by the server's schema, not half-applied.
    await assert.rejects(admin.createUser({ username: 'Not Valid!' }), (err: unknown) => {
      assert.ok(err instanceof KmsClientError);
      assert.equal(err.status, 400);
      return true;
    });
  });

  it('client credentials: a provider fetches a token, renews it before expiry (single flight), and the SDK uses it', async () => {
    const created = await admin.createServiceAccount({
      clientId: 'etl',
      authMethod: 'client_secret',
      roles: ['key-user'],
    });
    assert.ok(created.clientSecret?.startsWith('wcs_'));
    assert.equal(created.account.hasSecret, true);
    assert.equal((await admin.getServiceAccount('etl')).roles[0], 'key-user');
    assert.ok((await admin.listServiceAccounts()).some((s) => s.clientId === 'etl'));

    let clock = Date.now();
    const tokenHttp = new CountingHttp({ address: warden.url, ca });
    closers.push(tokenHttp);
    const provider = clientCredentialsTokenProvider({
      http: tokenHttp,
      clientId: 'etl',
      clientSecret: created.clientSecret ?? '',
      now: () => clock,
    });
    const kms = new KmsClient(http(provider));
    const ciphertext = await kms.encrypt('app', Buffer.from('payload'));
    assert.deepEqual(await kms.decrypt(ciphertext), Buffer.from('payload'));
    assert.equal(tokenHttp.tokenCalls, 1, 'one token for both calls');
    const first = await provider();

    // Still well before expiry: the cached token.
    clock += 3_000_000;
    assert.equal(await provider(), first);
    assert.equal(tokenHttp.tokenCalls, 1);
    // Within 60 s of the 1 h expiry: one renewal shared by concurrent callers.
    clock += 3600_000 - 3_000_000 - 30_000;
    const renewed = await Promise.all(Array.from({ length: 8 }, () => provider()));
    assert.equal(tokenHttp.tokenCalls, 2);
    assert.equal(new Set(renewed).size, 1);
    assert.notEqual(renewed[0], first);
    assert.deepEqual(await kms.decrypt(ciphertext), Buffer.from('payload'));

    // The account's own introspection sees its token; revoked, it is inactive.
    const credentials = { clientId: 'etl', clientSecret: created.clientSecret ?? '' };
    const live = await ids.introspect(renewed[0] ?? '', credentials);
    assert.equal(live.active, true);
    assert.equal(live.sub, 'service:etl');
    await ids.revoke(renewed[0] ?? '', { credentials, hint: 'access_token' });
    assert.equal((await ids.introspect(renewed[0] ?? '', credentials)).active, false);
    await rejectsWith(kms.decrypt(ciphertext), 'unauthenticated', 401);
    provider.invalidate();
    assert.deepEqual(await kms.decrypt(ciphertext), Buffer.from('payload'));

    // A scope narrower than the account's roles; an unknown one is refused.
    assert.equal((await ids.clientCredentials(credentials, ['key-user'])).scope, 'key-user');
    await rejectsWith(ids.clientCredentials(credentials, 'admin'), 'invalid_scope', 400);

    // Rotating the secret: the old one is refused with a typed error.
    const { clientSecret: rotated } = await admin.rotateClientSecret('etl');
    assert.notEqual(rotated, created.clientSecret);
    provider.invalidate();
    const failure = await rejectsWith(kms.decrypt(ciphertext), 'invalid_client', 401);
    assert.ok(failure instanceof TokenProviderError);
    const fresh = clientCredentialsTokenProvider({ http: tokenHttp, clientId: 'etl', clientSecret: rotated });
    const freshKms = new KmsClient(http(fresh));
    assert.deepEqual(await freshKms.decrypt(ciphertext), Buffer.from('payload'));

    // Disabled: live tokens die at once and the provider fails with a typed error.
    await admin.updateServiceAccount('etl', { disabled: true });
    await rejectsWith(freshKms.decrypt(ciphertext), 'unauthenticated', 401);
    fresh.invalidate();
    const disabled = await rejectsWith(fresh(), 'invalid_client', 401);
    assert.ok(disabled instanceof TokenProviderError);
    await admin.updateServiceAccount('etl', { disabled: false });
    fresh.invalidate();
    assert.deepEqual(await freshKms.decrypt(ciphertext), Buffer.from('payload'));
    await admin.deleteServiceAccount('etl');
    fresh.invalidate();
    assert.ok((await rejectsWith(fresh(), 'invalid_client', 401)) instanceof TokenProviderError);
  });

  it('private_key_jwt: the provider signs a one-time assertion for the token endpoint', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await admin.createServiceAccount({
      clientId: 'signer',
      authMethod: 'private_key_jwt',
      roles: ['key-user'],
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    let clock = Date.now();
    const provider = clientCredentialsTokenProvider({
      http: anonymous,
      clientId: 'signer',
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      now: () => clock,
    });
    const kms = new KmsClient(http(provider));
    const sealed = await kms.encrypt('app', Buffer.from('jwt'));
    const first = await provider();
    clock += 3600_000;
    const second = await provider();
    assert.notEqual(second, first, 'renewed with a fresh assertion (jti is single use)');
    assert.deepEqual(await kms.decrypt(sealed), Buffer.from('jwt'));

    // Another key: refused with a typed error.
    const other = generateKeyPairSync('ed25519').privateKey;
    const wrong = clientCredentialsTokenProvider({ http: anonymous, clientId: 'signer', privateKey: other });
    assert.ok((await rejectsWith(wrong(), 'invalid_client', 401)) instanceof TokenProviderError);
    await admin.deleteServiceAccount('signer');
  });

  it('session provider: refreshes with the rotating refresh token, and a spent one revokes the session', async () => {
    const code = recoveryCodes.shift() ?? '';
    const tokens = await ids.login({ username: 'admin', password: PASSWORD, recoveryCode: code });
    await rejectsWith(
      ids.login({ username: 'admin', password: PASSWORD, recoveryCode: code }),
      'invalid_credentials',
      401,
    );
    const initial = sessionFrom(tokens);
    let clock = Date.now();
    const saved: Session[] = [];
    const provider = sessionTokenProvider(initial, {
      http: anonymous,
      now: () => clock,
      onRefresh: (s) => {
        saved.push(s);
      },
    });
    const client = new IdentityClient(http(provider));
    assert.ok((await client.listUsers()).length >= 1);
    assert.equal(saved.length, 0);
    clock = initial.expiresAt - 10_000;
    await client.listUsers();
    assert.equal(saved.length, 1);
    const renewed = saved[0];
    assert.ok(renewed !== undefined);
    assert.notEqual(renewed.refreshToken, initial.refreshToken);
    assert.notEqual(renewed.accessToken, initial.accessToken);
    clock = renewed.expiresAt - 10_000;
    await client.listUsers();
    assert.equal(saved.length, 2);

    // Presenting the spent first refresh token revokes the whole session, live access tokens included.
    await rejectsWith(ids.refresh(initial.refreshToken), 'invalid_grant', 400);
    await rejectsWith(client.listUsers(), 'unauthenticated', 401);
    clock = (saved[1]?.expiresAt ?? 0) - 10_000;
    const ended = await rejectsWith(client.listUsers(), 'invalid_grant', 400);
    assert.ok(ended instanceof TokenProviderError);
  });

  it('logout revokes the session: its refresh token and access tokens stop working', async () => {
    const tokens = await ids.login({
      username: 'admin',
      password: PASSWORD,
      recoveryCode: recoveryCodes.shift() ?? '',
    });
    const client = new IdentityClient(http(tokens.access_token));
    await client.listUsers();
    await ids.revoke(tokens.refresh_token, { hint: 'refresh_token' });
    await rejectsWith(client.listUsers(), 'unauthenticated', 401);
    await rejectsWith(ids.refresh(tokens.refresh_token), 'invalid_grant', 400);
    // Revocation answers the same for a token it does not know (RFC 7009).
    await ids.revoke('wrt_unknown.token');
  });

  it('API keys: created (shown once), used, listed without the key, revoked', async () => {
    const own = await admin.createOwnApiKey({ name: 'ci', scopes: ['admin'], ttlSeconds: 86_400 });
    assert.match(own.key, /^wdn_live_/);
    assert.equal(own.info.owner, 'user:admin');
    const keyKms = new KmsClient(http(own.key));
    assert.ok((await keyKms.listKeys()).some((k) => k.name === 'app'));
    const listed = await admin.listOwnApiKeys();
    assert.ok(listed.some((k) => k.id === own.info.id));
    assert.ok(!JSON.stringify(listed).includes(own.key));
    // An API key cannot mint API keys.
    await rejectsWith(
      new IdentityClient(http(own.key)).createOwnApiKey({ scopes: ['admin'] }),
      'forbidden',
      403,
    );
    await admin.revokeOwnApiKey(own.info.id);
    await rejectsWith(keyKms.listKeys(), 'unauthenticated', 401);

    await admin.createServiceAccount({ clientId: 'batch', authMethod: 'client_secret', roles: ['key-user'] });
    const forService = await admin.createApiKey({ owner: 'service:batch', scopes: ['key-user'] });
    assert.equal((await admin.getApiKey(forService.info.id)).owner, 'service:batch');
    assert.deepEqual(
      (await admin.listApiKeys('service:batch')).map((k) => k.id),
      [forService.info.id],
    );
    const serviceKms = new KmsClient(http(forService.key));
    await serviceKms.encrypt('app', Buffer.from('k'));
    await admin.revokeApiKey(forService.info.id);
    await rejectsWith(serviceKms.encrypt('app', Buffer.from('k')), 'unauthenticated', 401);
    assert.notEqual((await admin.getApiKey(forService.info.id)).revokedAt, null);
  });

  it('serves discovery and the JWKS to anonymous callers', async () => {
    const metadata = await ids.metadata();
    assert.equal(metadata.token_endpoint, `${warden.url}/oauth/token`);
    assert.equal(await ids.tokenEndpoint(), `${warden.url}/oauth/token`);
    const { keys } = await ids.jwks();
    assert.ok(keys.length >= 1);
    assert.ok(keys.every((k) => k.d === undefined));
  });
});

describe('token providers: options and failures', () => {
  it('refuses ambiguous or malformed client credentials before any request', () => {
    const h = new WardenHttp({ address: 'https://127.0.0.1:1' });
    closers.push(h);
    assert.throws(
      () => clientCredentialsTokenProvider({ http: h, clientId: 'x' }),
      (err: unknown) => err instanceof KmsClientError && err.code === 'invalid_options',
    );
    assert.throws(
      () =>
        clientCredentialsTokenProvider({
          http: h,
          clientId: 'x',
          clientSecret: 's',
          privateKey: generateKeyPairSync('ed25519').privateKey,
        }),
      (err: unknown) => err instanceof KmsClientError && err.code === 'invalid_options',
    );
  });

  it('a malformed private key fails typed, whatever its text', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (text) => {
        const provider = clientCredentialsTokenProvider({ http: anonymous, clientId: 'x', privateKey: text });
        await assert.rejects(provider(), (err: unknown) => {
          assert.ok(err instanceof TokenProviderError);
          assert.equal(err.code, 'invalid_options');
          assert.ok(!err.message.includes(text) || text.length < 8);
          return true;
        });
      }),
      { numRuns: 25 },
    );
  });

  it('a transient failure keeps serving the still-valid token; an unreachable server with no token fails typed', async () => {
    const down = new WardenHttp({ address: 'https://127.0.0.1:1', ca });
    closers.push(down);
    let clock = Date.now();
    const session: Session = {
      accessToken: 'still-valid-access-token',
      refreshToken: 'wrt_x.y',
      expiresAt: clock + 120_000,
      scope: 'admin',
    };
    const provider = sessionTokenProvider(session, { http: down, now: () => clock });
    assert.equal(await provider(), 'still-valid-access-token');
    clock += 90_000; // inside the renewal window, not yet expired: renewal fails, the token still serves
    assert.equal(await provider(), 'still-valid-access-token');
    clock += 60_000; // expired: nothing to fall back on
    const err = await rejectsWith(provider(), 'connection_failed', 0);
    assert.ok(err instanceof TokenProviderError);
  });
});
