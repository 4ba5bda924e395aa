import 'reflect-metadata';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { MacKey } from '../../src/crypto/index.ts';
import {
  ACCESS_TOKEN_HARD_MAX_SECONDS,
  AuthorizationServer,
  certificateSpkiSha256,
  CLIENT_ASSERTION_TYPE,
  InvalidIdentityRequestError,
  KmsTokenKeys,
  OAuthError,
} from '../../src/identity/index.ts';
import type { OAuthRequest } from '../../src/identity/index.ts';
import { ADMIN, bearer, fixture, ISSUER } from './support.ts';
import type { Fixture } from './support.ts';

const IP = '192.0.2.10';

function basic(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

function req(form: Record<string, string>, extra: Partial<OAuthRequest> = {}): OAuthRequest {
  return { form, sourceIp: IP, ...extra };
}

async function rejects(promise: Promise<unknown>, error: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof OAuthError && err.error === error);
}

async function selfSigned(cn: string): Promise<Buffer> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${cn}, O=Warden Test`,
    notBefore: new Date(Date.UTC(2025, 0, 1)),
    notAfter: new Date(Date.UTC(2027, 0, 1)),
    keys: keys,
    signingAlgorithm: alg,
  });
  return Buffer.from(cert.rawData);
}

describe('token service (ES256 through the KMS)', () => {
  let f: Fixture;
  let secret: string;
  before(async () => {
    f = await fixture();
    const created = await f.identity.createServiceAccount(ADMIN, {
      clientId: 'trainer',
      authMethod: 'client_secret',
      roles: ['key-user', 'auditor'],
    });
    secret = created.clientSecret ?? '';
  });
  after(() => f.close());

  const ccToken = async (extra: Record<string, string> = {}) =>
    f.identity.oauth.token(
      req({ grant_type: 'client_credentials', ...extra }, { authorization: basic('trainer', secret) }),
    );

  it('issues an RFC 9068 access token that authenticate accepts', async () => {
    const response = await ccToken();
    assert.equal(response.token_type, 'Bearer');
    assert.equal(response.expires_in, 3600);
    assert.equal(response.scope, 'auditor key-user');
    assert.equal(response.refresh_token, undefined);
    const header = decodeProtectedHeader(response.access_token);
    assert.deepEqual(header, { typ: 'at+jwt', alg: 'ES256', kid: 'identity-tokens:1' });
    const claims = decodeJwt(response.access_token);
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud, ISSUER);
    assert.equal(claims.sub, 'service:trainer');
    assert.equal(claims['client_id'], 'trainer');
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 3600);
    assert.equal(typeof claims.jti, 'string');
    assert.equal(claims['auth_method'], 'client_secret_basic');
    const principal = await f.identity.authenticate({
      authorization: bearer(response.access_token),
      sourceIp: IP,
    });
    assert.equal(principal?.id, 'service:trainer');
    assert.equal(principal.kind, 'service');
    assert.equal(principal.authMethod, 'jwt');
    assert.deepEqual(principal.roles, ['auditor', 'key-user']);
    assert.equal(principal.mfaAt, undefined);
  });

  it('narrows to a requested scope and refuses roles the client lacks', async () => {
    const narrowed = await ccToken({ scope: 'auditor' });
    assert.equal(narrowed.scope, 'auditor');
    const p = await f.identity.authenticate({ authorization: bearer(narrowed.access_token), sourceIp: IP });
    assert.deepEqual(p?.roles, ['auditor']);
    await rejects(ccToken({ scope: 'admin' }), 'invalid_scope');
  });

  it('client_secret_post works; a wrong secret, two methods at once, or an unknown client do not', async () => {
    const post = await f.identity.oauth.token(
      req({ grant_type: 'client_credentials', client_id: 'trainer', client_secret: secret }),
    );
    assert.equal(decodeJwt(post.access_token)['auth_method'], 'client_secret_post');
    await rejects(
      f.identity.oauth.token(
        req({ grant_type: 'client_credentials' }, { authorization: basic('trainer', `${secret}x`) }),
      ),
      'invalid_client',
    );
    await rejects(
      f.identity.oauth.token(
        req({ grant_type: 'client_credentials' }, { authorization: basic('nobody', secret) }),
      ),
      'invalid_client',
    );
    await rejects(
      f.identity.oauth.token(
        req(
          { grant_type: 'client_credentials', client_secret: secret },
          { authorization: basic('trainer', secret) },
        ),
      ),
      'invalid_request',
    );
    await rejects(
      f.identity.oauth.token(req({ grant_type: 'password', username: 'a', password: 'b' })),
      'unsupported_grant_type',
    );
    const failures = f.audit.of('identity.oauth.client_authentication');
    assert.ok(failures.length >= 2);
    assert.ok(failures.every((e) => !JSON.stringify(e).includes(secret)));
  });

  it('expires tokens, with 30 s of leeway', async () => {
    const { access_token } = await ccToken();
    const start = f.clock.now;
    try {
      f.clock.now = start + 3600_000 + 20_000;
      assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }));
      f.clock.now = start + 3600_000 + 31_000;
      const result = await f.identity.oauth.verifyAccessToken(access_token);
      assert.deepEqual(result, { ok: false, reason: 'expired' });
    } finally {
      f.clock.now = start;
    }
  });

  it('enforces the hard maximum lifetime, the issuer, the audience and typ', async () => {
    assert.throws(
      () =>
        new AuthorizationServer({
          directory: f.identity.directory,
          keys: new KmsTokenKeys({ kms: f.kms, keyName: 'identity-tokens' }),
          macKey: MacKey.generate(),
          audit: f.audit,
          throttle: f.identity.throttle,
          issuer: ISSUER,
          accessTokenTtlSeconds: ACCESS_TOKEN_HARD_MAX_SECONDS + 1,
        }),
      RangeError,
    );
    const keys = new KmsTokenKeys({ kms: f.kms, keyName: 'identity-tokens', now: () => f.clock.now });
    const { access_token } = await ccToken();
    const good = decodeJwt(access_token);
    const forge = (patch: Record<string, unknown>, typ = 'at+jwt') =>
      keys.sign({ typ }, { ...good, ...patch });
    // Sanity: re-signing the same claims verifies.
    assert.equal((await f.identity.oauth.verifyAccessToken(await forge({}))).ok, true);
    const iat = good.iat ?? 0;
    for (const token of [
      await forge({ exp: iat + ACCESS_TOKEN_HARD_MAX_SECONDS + 1 }),
      await forge({ iss: 'https://evil.example' }),
      await forge({ aud: 'https://other-api.example' }),
      await forge({}, 'JWT'),
      await forge({ wdn_epoch: 99 }),
    ]) {
      assert.equal((await f.identity.oauth.verifyAccessToken(token)).ok, false);
      assert.equal(
        await f.identity.authenticate({ authorization: bearer(token), sourceIp: '198.51.100.1' }),
        undefined,
      );
    }
    // A token whose signature does not verify.
    const tampered = access_token.slice(0, -4) + (access_token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.equal((await f.identity.oauth.verifyAccessToken(tampered)).ok, false);
  });

  it('rotating the KMS key rotates the signing key, old tokens stay valid until they expire', async () => {
    const before = await ccToken();
    await f.kms.rotateKey(ADMIN, 'identity-tokens');
    f.clock.now += 61_000; // past the key-set cache
    const afterRotation = await ccToken();
    assert.equal(decodeProtectedHeader(before.access_token).kid, 'identity-tokens:1');
    assert.equal(decodeProtectedHeader(afterRotation.access_token).kid, 'identity-tokens:2');
    assert.ok(await f.identity.authenticate({ authorization: bearer(before.access_token), sourceIp: IP }));
    assert.ok(
      await f.identity.authenticate({ authorization: bearer(afterRotation.access_token), sourceIp: IP }),
    );
    const jwks = await f.identity.oauth.jwks();
    assert.deepEqual(
      jwks.keys.map((k) => (k as { kid: string }).kid),
      ['identity-tokens:1', 'identity-tokens:2'],
    );
    // Disabling the old version withdraws it from the JWKS and its tokens stop verifying.
    await f.kms.disable(ADMIN, 'identity-tokens', 1);
    f.clock.now += 61_000;
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(before.access_token), sourceIp: IP }),
      undefined,
    );
    assert.ok(
      await f.identity.authenticate({ authorization: bearer(afterRotation.access_token), sourceIp: IP }),
    );
  });

  it('disabling a principal kills its live tokens at once; re-enabling does not revive them', async () => {
    const { access_token } = await ccToken();
    assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }));
    await f.identity.updateServiceAccount(ADMIN, 'trainer', { disabled: true });
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }),
      undefined,
    );
    await rejects(ccToken(), 'invalid_client');
    await f.identity.updateServiceAccount(ADMIN, 'trainer', { disabled: false });
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }),
      undefined,
    );
    assert.ok(
      await f.identity.authenticate({ authorization: bearer((await ccToken()).access_token), sourceIp: IP }),
    );
  });

  it('deleting a service account kills its tokens; re-creating the same client id does not revive them', async () => {
    const first = await f.identity.createServiceAccount(ADMIN, {
      clientId: 'recreated',
      authMethod: 'client_secret',
      roles: ['key-user'],
    });
    const token = async (clientSecret: string) =>
      (
        await f.identity.oauth.token(
          req({ grant_type: 'client_credentials' }, { authorization: basic('recreated', clientSecret) }),
        )
      ).access_token;
    const old = await token(first.clientSecret ?? '');
    assert.ok(await f.identity.authenticate({ authorization: bearer(old), sourceIp: IP }));
    await f.identity.deleteServiceAccount(ADMIN, 'recreated');
    assert.equal(await f.identity.authenticate({ authorization: bearer(old), sourceIp: IP }), undefined);
    // Another account under the same id, same roles, same clock: the old account's tokens are not its own.
    const second = await f.identity.createServiceAccount(ADMIN, {
      clientId: 'recreated',
      authMethod: 'client_secret',
      roles: ['key-user'],
    });
    f.identity.oauth.invalidate();
    assert.equal(await f.identity.authenticate({ authorization: bearer(old), sourceIp: IP }), undefined);
    const fresh = await token(second.clientSecret ?? '');
    assert.ok(await f.identity.authenticate({ authorization: bearer(fresh), sourceIp: IP }));
  });

  it('a token verified before is remembered only by its exact text: a tampered copy is verified afresh and refused', async () => {
    const { access_token } = await ccToken();
    assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }));
    assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }), 'cached');
    const [header, payload, signature = ''] = access_token.split('.');
    const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BA' : 'AA'}`;
    for (const tampered of [
      `${header}.${payload}.${flipped}`,
      `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()), scope: 'admin' })).toString('base64url')}.${signature}`,
    ]) {
      assert.equal(
        await f.identity.authenticate({ authorization: bearer(tampered), sourceIp: IP }),
        undefined,
      );
    }
  });

  it('a disable made by another process is seen within the one-second status cache', async () => {
    const { access_token } = await ccToken();
    assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }));
    // Straight to the store, as another Warden process would.
    await f.identity.directory.updateServiceAccount('trainer', { disabled: true });
    f.clock.now += 1000;
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }),
      undefined,
    );
    await f.identity.updateServiceAccount(ADMIN, 'trainer', { disabled: false });
  });

  it('revocation (RFC 7009) and introspection (RFC 7662)', async () => {
    const other = await f.identity.createServiceAccount(ADMIN, {
      clientId: 'other',
      authMethod: 'client_secret',
      roles: [],
    });
    const otherAuth = basic('other', other.clientSecret ?? '');
    const { access_token } = await ccToken();
    const introspect = (authorization: string) =>
      f.identity.oauth.introspect(req({ token: access_token }, { authorization }));
    const active = await introspect(basic('trainer', secret));
    assert.equal(active['active'], true);
    assert.equal(active['sub'], 'service:trainer');
    assert.equal(active['client_id'], 'trainer');
    // Another client does not learn about it.
    assert.deepEqual(await introspect(otherAuth), { active: false });
    await rejects(f.identity.oauth.introspect(req({ token: access_token })), 'invalid_client');
    // Another client's revocation is silently ignored.
    await f.identity.oauth.revoke(req({ token: access_token }, { authorization: otherAuth }));
    assert.ok(await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }));
    await f.identity.oauth.revoke(
      req(
        { token: access_token, token_type_hint: 'access_token' },
        { authorization: basic('trainer', secret) },
      ),
    );
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(access_token), sourceIp: IP }),
      undefined,
    );
    assert.deepEqual(await introspect(basic('trainer', secret)), { active: false });
    // Unknown tokens: still 200 (no error).
    await f.identity.oauth.revoke(req({ token: 'not-a-token' }, { authorization: basic('trainer', secret) }));
  });
});

describe('sessions: refresh rotation and reuse detection', () => {
  let f: Fixture;
  before(async () => {
    f = await fixture({ keyType: 'ed25519' });
    await f.identity.createUser(ADMIN, {
      username: 'dana',
      password: 'correct horse battery',
      roles: ['key-user'],
    });
  });
  after(() => f.close());

  const session = async () => {
    const user = await f.identity.getUser('dana');
    return f.identity.issueSession(user, { amr: ['pwd'], authMethod: 'password' });
  };
  const refresh = (token: string) =>
    f.identity.oauth.token(req({ grant_type: 'refresh_token', client_id: 'warden', refresh_token: token }));

  it('signs EdDSA with an ed25519 KMS key', async () => {
    const s = await session();
    assert.equal(decodeProtectedHeader(s.access_token).alg, 'EdDSA');
    const p = await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP });
    assert.equal(p?.id, 'user:dana');
    assert.equal(p.kind, 'user');
    assert.deepEqual(p.roles, ['key-user']);
    assert.deepEqual(p.groups, []);
  });

  it('rotates the refresh token on every use; reuse revokes the whole family', async () => {
    const s = await session();
    const r1 = await refresh(s.refresh_token);
    assert.notEqual(r1.refresh_token, s.refresh_token);
    assert.ok(r1.refresh_token?.startsWith('wrt_'));
    const r2 = await refresh(r1.refresh_token ?? '');
    assert.ok(await f.identity.authenticate({ authorization: bearer(r2.access_token), sourceIp: IP }));
    // The first token again: a copy is in use somewhere.
    await rejects(refresh(s.refresh_token), 'invalid_grant');
    // The whole family is dead: the latest refresh token and the live access tokens.
    await rejects(refresh(r2.refresh_token ?? ''), 'invalid_grant');
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(r2.access_token), sourceIp: IP }),
      undefined,
    );
    assert.equal(
      await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP }),
      undefined,
    );
    assert.equal(f.audit.of('identity.oauth.refresh_token_reuse').length, 1);
    // Other sessions are unaffected.
    const other = await session();
    assert.ok(await refresh(other.refresh_token));
  });

  it('refuses a refresh token presented by another client, or with a wrong secret', async () => {
    const s = await session();
    await f.identity
      .createServiceAccount(ADMIN, { clientId: 'intruder', authMethod: 'client_secret', roles: [] })
      .then(async (c) => {
        await rejects(
          f.identity.oauth.token(
            req(
              { grant_type: 'refresh_token', refresh_token: s.refresh_token },
              { authorization: basic('intruder', c.clientSecret ?? '') },
            ),
          ),
          'invalid_grant',
        );
      });
    const forged = `${s.refresh_token.slice(0, -3)}${s.refresh_token.endsWith('AAA') ? 'BBB' : 'AAA'}`;
    await rejects(refresh(forged), 'invalid_grant');
    // A guessed secret does not revoke the family: the real token still works.
    assert.ok(await refresh(s.refresh_token));
  });

  it('revoking a refresh token ends the session; introspection reports it', async () => {
    await f.identity
      .createServiceAccount(ADMIN, {
        clientId: 'resource-server',
        authMethod: 'client_secret',
        roles: ['security-admin'],
      })
      .then(async (rs) => {
        const s = await session();
        const rsAuth = basic('resource-server', rs.clientSecret ?? '');
        const seen = await f.identity.oauth.introspect(
          req({ token: s.refresh_token }, { authorization: rsAuth }),
        );
        assert.equal(seen['active'], true);
        assert.equal(seen['token_type'], 'refresh_token');
        await f.identity.oauth.revoke(req({ token: s.refresh_token, client_id: 'warden' }));
        await rejects(refresh(s.refresh_token), 'invalid_grant');
        assert.equal(
          await f.identity.authenticate({ authorization: bearer(s.access_token), sourceIp: IP }),
          undefined,
        );
        assert.deepEqual(
          await f.identity.oauth.introspect(req({ token: s.refresh_token }, { authorization: rsAuth })),
          { active: false },
        );
      });
  });

  it('disabling the user ends refresh too', async () => {
    const s = await session();
    await f.identity.updateUser(ADMIN, 'dana', { disabled: true });
    await rejects(refresh(s.refresh_token), 'invalid_grant');
    await f.identity.updateUser(ADMIN, 'dana', { disabled: false });
    await rejects(refresh(s.refresh_token), 'invalid_grant');
  });

  it('the public client cannot use client_credentials', async () => {
    await rejects(
      f.identity.oauth.token(req({ grant_type: 'client_credentials', client_id: 'warden' })),
      'invalid_client',
    );
  });
});

describe('private_key_jwt (RFC 7523)', () => {
  let f: Fixture;
  let privateKey: webcrypto.CryptoKey;
  before(async () => {
    f = await fixture();
    const pair = await generateKeyPair('ES256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = await exportJWK(pair.publicKey);
    await f.identity.createServiceAccount(ADMIN, {
      clientId: 'pipeline',
      authMethod: 'private_key_jwt',
      roles: ['key-user'],
      jwks: { keys: [{ ...jwk, kid: 'k1', alg: 'ES256' }] },
    });
  });
  after(() => f.close());

  const assertion = (claims: Record<string, unknown> = {}, lifetime = 120) =>
    new SignJWT({ jti: crypto.randomUUID(), ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer((claims['iss'] as string | undefined) ?? 'pipeline')
      .setSubject((claims['sub'] as string | undefined) ?? 'pipeline')
      .setAudience((claims['aud'] as string | undefined) ?? `${ISSUER}/oauth/token`)
      .setIssuedAt(Math.floor(f.clock.now / 1000))
      .setExpirationTime(Math.floor(f.clock.now / 1000) + lifetime)
      .sign(privateKey);
  const grant = (jwt: string, extra: Record<string, string> = {}) =>
    f.identity.oauth.token(
      req({
        grant_type: 'client_credentials',
        client_assertion_type: CLIENT_ASSERTION_TYPE,
        client_assertion: jwt,
        ...extra,
      }),
    );

  it('issues a token for a valid assertion, once', async () => {
    const jwt = await assertion();
    const response = await grant(jwt);
    assert.equal(decodeJwt(response.access_token)['auth_method'], 'private_key_jwt');
    assert.equal(decodeJwt(response.access_token).sub, 'service:pipeline');
    await rejects(grant(jwt), 'invalid_client');
    assert.ok(
      f.audit.of('identity.oauth.client_authentication').some((e) => e.reason === 'assertion_replayed'),
    );
  });

  it('refuses a private key given as the public key PEM instead of deriving its public half', async () => {
    const { privateKey: pem } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (const format of ['pkcs8', 'sec1'] as const) {
      const text = pem.export({ type: format, format: 'pem' }).toString();
      await assert.rejects(
        f.identity.createServiceAccount(ADMIN, {
          clientId: `leaky-${format}`,
          authMethod: 'private_key_jwt',
          publicKeyPem: text,
        }),
        (err: unknown) => err instanceof InvalidIdentityRequestError && /private key/.test(err.message),
      );
      assert.equal(await f.identity.directory.getServiceAccount(`leaky-${format}`), undefined);
    }
  });

  it('refuses a wrong audience, iss != sub, expiry, an over-long lifetime, a foreign key and a client_id mismatch', async () => {
    await rejects(grant(await assertion({ aud: 'https://elsewhere.example/token' })), 'invalid_client');
    await rejects(grant(await assertion({ sub: 'someone-else' })), 'invalid_client');
    await rejects(grant(await assertion({}, -60)), 'invalid_client');
    await rejects(grant(await assertion({}, 3600)), 'invalid_client');
    const stranger = await generateKeyPair('ES256');
    const foreign = await new SignJWT({ jti: 'x' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('pipeline')
      .setSubject('pipeline')
      .setAudience(`${ISSUER}/oauth/token`)
      .setExpirationTime(Math.floor(f.clock.now / 1000) + 60)
      .sign(stranger.privateKey);
    await rejects(grant(foreign), 'invalid_client');
    await rejects(grant(await assertion(), { client_id: 'someone-else' }), 'invalid_client');
    await rejects(
      f.identity.oauth.token(
        req({
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:other',
          client_assertion: await assertion(),
        }),
      ),
      'invalid_request',
    );
    // Six failures: the client is throttled, whatever it presents, until the delay has passed.
    const valid = await assertion({ aud: ISSUER });
    await assert.rejects(
      grant(valid),
      (err: unknown) => err instanceof OAuthError && /too many/.test(err.description),
    );
    f.clock.now += 16 * 60_000;
    // The issuer itself is an accepted audience (RFC 7523 §3).
    assert.ok(await grant(await assertion({ aud: ISSUER })));
  });
});

describe('tls_client_auth (RFC 8705): certificate-bound tokens', () => {
  let f: Fixture;
  let cert: Buffer;
  let otherCert: Buffer;
  before(async () => {
    f = await fixture();
    cert = await selfSigned('edge-gateway');
    otherCert = await selfSigned('edge-gateway');
    await f.identity.createServiceAccount(ADMIN, {
      clientId: 'gateway',
      authMethod: 'tls_client_auth',
      roles: ['key-user'],
      tlsSpkiSha256: certificateSpkiSha256(cert),
    });
    await f.identity.createServiceAccount(ADMIN, {
      clientId: 'gateway-dn',
      authMethod: 'tls_client_auth',
      roles: ['key-user'],
      tlsSubjectDn: 'CN=edge-gateway,O=Warden Test',
    });
  });
  after(() => f.close());

  it('binds the token to the certificate and refuses it without that certificate', async () => {
    const response = await f.identity.oauth.token(
      req({ grant_type: 'client_credentials', client_id: 'gateway' }, { clientCertificate: cert }),
    );
    const claims = decodeJwt(response.access_token) as { cnf?: Record<string, string> };
    assert.equal(typeof claims.cnf?.['x5t#S256'], 'string');
    const authorization = bearer(response.access_token);
    assert.equal(await f.identity.authenticate({ authorization, sourceIp: IP }), undefined);
    assert.equal(
      await f.identity.authenticate({ authorization, clientCertificate: otherCert, sourceIp: IP }),
      undefined,
    );
    const p = await f.identity.authenticate({ authorization, clientCertificate: cert, sourceIp: IP });
    assert.equal(p?.id, 'service:gateway');
  });

  it('refuses a certificate with another key for an SPKI-bound client; accepts a matching DN', async () => {
    await rejects(
      f.identity.oauth.token(
        req({ grant_type: 'client_credentials', client_id: 'gateway' }, { clientCertificate: otherCert }),
      ),
      'invalid_client',
    );
    await rejects(
      f.identity.oauth.token(req({ grant_type: 'client_credentials', client_id: 'gateway' })),
      'invalid_client',
    );
    // A DN binding needs a chain the TLS layer verified: a self-signed certificate with the right DN is not enough.
    await rejects(
      f.identity.oauth.token(
        req({ grant_type: 'client_credentials', client_id: 'gateway-dn' }, { clientCertificate: otherCert }),
      ),
      'invalid_client',
    );
    const viaDn = await f.identity.oauth.token(
      req(
        { grant_type: 'client_credentials', client_id: 'gateway-dn' },
        { clientCertificate: otherCert, clientCertificateTrusted: true },
      ),
    );
    assert.equal(decodeJwt(viaDn.access_token).sub, 'service:gateway-dn');
  });
});

it('metadata (RFC 8414) names the endpoints under the issuer', async () => {
  const f = await fixture();
  try {
    const m = f.identity.oauth.metadata();
    assert.equal(m['issuer'], ISSUER);
    assert.equal(m['token_endpoint'], `${ISSUER}/oauth/token`);
    assert.equal(m['jwks_uri'], `${ISSUER}/.well-known/jwks.json`);
    assert.equal(m['tls_client_certificate_bound_access_tokens'], true);
  } finally {
    await f.close();
  }
});
