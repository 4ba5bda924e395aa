import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { loadConfig, startWarden } from '../../src/app/index.ts';
import {
  IdentityFactorsConfigError,
  SecretText,
  identityFactorsConfigFrom,
  openIdentityFactors,
} from '../../src/app/identity-factors.ts';
import type { IdentityFactorsConfig } from '../../src/app/identity-factors.ts';
import { IdentityRuntime } from '../../src/app/identity.ts';
import { openAuditTrail } from '../../src/app/audit-trail.ts';
import { ensureDevTls } from '../../src/app/dev-tls.ts';
import { softwareOperator } from '../../src/app/operator.ts';
import { KmsClientError, WardenHttp } from '../../src/client/index.ts';
import type { IdentityDB } from '../../src/identity/index.ts';
import { SoftwareRootOfTrust, openKmsRuntime } from '../../src/kms/index.ts';
import { PolicyEngine, PolicyStore, cedarKmsAuthorizer } from '../../src/policy/index.ts';
import {
  auditRoutes,
  bootstrapTokenAuthenticator,
  createKmsServer,
  identitiesRoutes,
  selfServiceAuthorizer,
  oauthRoutes,
} from '../../src/server/index.ts';
import type { Authenticate } from '../../src/server/index.ts';
import { openStore } from '../../src/store/index.ts';
import { tempDir } from '../envelope/support.ts';
import { CLIENT_ID, CLIENT_SECRET, TestProvider, authorize } from '../identity/oidc/provider-harness.ts';
import { SoftwareAuthenticator } from '../identity/webauthn/authenticator.ts';
import { startPostgres } from '../support/postgres.ts';

interface Session {
  access_token: string;
  scope: string;
  refresh_token?: string;
  mfa_enrolment_required?: boolean;
}

interface Running {
  url: string;
  ca: Buffer;
  bootstrapToken: string;
  close(): Promise<void>;
}

/** A step-up guardrail: reading the audit log needs MFA in the last 5 minutes. */
const STEP_UP_POLICY = `forbid (principal is Warden::User, action == Warden::Action::"audit.read", resource)
unless { context has mfaAgeSeconds && context.mfaAgeSeconds < 300 };`;

const REDIRECT = 'http://127.0.0.1/callback';

/**
 * Warden with OIDC login and security keys: `startWarden` once warden.ts opens the identity factors, otherwise
 * the same composition (KMS on a dev root, Merkle audit log, Cedar with the policy directory, identity service,
 * TLS) built here around `createKmsServer`.
 */
async function start(dataDir: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const config = loadConfig(env);
  const wired = readFileSync(new URL('../../src/app/warden.ts', import.meta.url), 'utf8').includes(
    'openIdentityFactors',
  );
  if (wired) {
    const warden = await startWarden(config, { log: () => undefined, requestLog: devNull() });
    return {
      url: warden.url,
      ca: readFileSync(warden.caPath),
      bootstrapToken: readFileSync(warden.tokenPath, 'utf8').trim(),
      close: () => warden.close(),
    };
  }
  const file = (name: string) => path.join(dataDir, name);
  const factorsConfig = identityFactorsConfigFrom(readIdentityFactorsSection(env), env);
  const root = await SoftwareRootOfTrust.openDevMode(file('dev-root.key'));
  const audit = await openAuditTrail({
    store: { kind: 'sqlite', path: file('audit.db') },
    origin: 'warden.local/audit',
    retentionDays: 365,
    sinks: [],
    log: () => undefined,
  });
  const policyStore = new PolicyStore({ guardrails: config.policies.guardrails });
  for (const [name, text] of config.policies.files) policyStore.add(`file.${name}`, text);
  const policy = new PolicyEngine({ store: policyStore });
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: file('warden.db') },
    keystore: { kind: 'sqlite', path: file('keystore.db') },
    root,
    audit: audit.recorder,
    authorizer: cedarKmsAuthorizer(policy),
  });
  audit.attach(kms.service);
  await audit.signer.load();
  const bootstrapToken = 'wdn_boot_test_' + Buffer.from(dataDir).toString('base64url').slice(-24);
  const identityStore = await openStore<IdentityDB>({ kind: 'sqlite', path: file('identity.db') });
  const identity = new IdentityRuntime({
    store: identityStore,
    kms: kms.service,
    audit: audit.recorder,
    bootstrapToken,
  });
  const bootstrap = bootstrapTokenAuthenticator(bootstrapToken);
  const authenticate: Authenticate = async (input) => {
    const service = identity.ready;
    if ((await bootstrap(input)) !== undefined) {
      return service !== undefined && (await service.isBootstrapRedeemed()) ? undefined : bootstrap(input);
    }
    return service?.authenticate(input);
  };
  const authorizeSelf = selfServiceAuthorizer(policy, 'dev', audit.recorder);
  let url = '';
  const factors = await openIdentityFactors({
    identity,
    config: factorsConfig,
    store: { kind: 'sqlite', path: file('webauthn.db') },
    audit: audit.recorder,
    hasher: () => audit.hasher(),
    publicUrl: () => url,
    log: () => undefined,
    authorizeSelf,
  });
  const operator = softwareOperator(root, kms.service);
  const tls = await ensureDevTls(file('tls'));
  const server = await createKmsServer({
    kms: kms.service,
    operator: {
      status: () => operator.status(),
      init: (r) => operator.init(r),
      seal: () => operator.seal(),
      unseal: (s) => operator.unseal(s),
    },
    authenticate,
    policy,
    tls,
    audit: audit.recorder,
    routes: [
      (app) => {
        auditRoutes(app, {
          log: audit.log,
          hasher: () => audit.hasher(),
          verifierKey: () => audit.signer.verifierKey,
        });
        oauthRoutes(app, { identity: identity.proxy() });
        identitiesRoutes(app, {
          identity: identity.proxy(),
          authorizeSelf,
        });
      },
      ...factors.routes,
    ],
  });
  await server.listen({ host: '127.0.0.1', port: 0 });
  const address = server.server.address();
  url = `https://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  await identity.open(url);
  return {
    url,
    ca: readFileSync(tls.caPath),
    bootstrapToken,
    async close() {
      await server.close();
      await factors.close();
      await audit.close();
      await identityStore.close();
      await kms.close();
      await root.close();
    },
  };
}

function readIdentityFactorsSection(env: NodeJS.ProcessEnv): unknown {
  if (env['WARDEN_CONFIG'] === undefined) return undefined;
  return (JSON.parse(readFileSync(env['WARDEN_CONFIG'], 'utf8')) as { identityFactors?: unknown })
    .identityFactors;
}

function devNull(): NodeJS.WritableStream {
  const stream = new PassThrough();
  stream.resume();
  return stream;
}

function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

describe('warden server with OIDC login and security keys', async () => {
  const dataDir = tempDir('warden-factors-');
  const idp = await TestProvider.start();
  const secretFile = path.join(dataDir, 'oidc-secret');
  writeFileSync(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });
  const policyDir = path.join(dataDir, 'policies');
  mkdirSync(policyDir);
  writeFileSync(path.join(policyDir, 'step-up.cedar'), STEP_UP_POLICY);
  const configFile = path.join(dataDir, 'warden.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      identityFactors: {
        oidc: {
          issuer: idp.issuer,
          clientId: CLIENT_ID,
          clientSecretFile: secretFile,
          redirectUris: [REDIRECT],
          scopes: ['email', 'profile', 'groups'],
          roleMappings: { engineering: ['auditor'], 'warden-admins': ['key-user'] },
        },
      },
    }),
  );
  const warden = await start(dataDir, {
    WARDEN_DATA_DIR: dataDir,
    WARDEN_LISTEN: '127.0.0.1:0',
    WARDEN_CONFIG: configFile,
    WARDEN_POLICY_DIR: policyDir,
  });
  after(async () => {
    await warden.close();
    await idp.stop();
  });
  const http = (token?: string) =>
    new WardenHttp({ address: warden.url, ca: warden.ca, ...(token === undefined ? {} : { token }) });
  const anonymous = http();
  const status = async (token: string, method: string, url: string, body?: unknown): Promise<number> =>
    (await http(token).request(method, url, body, { acceptedErrors: [401, 403] })).status;
  const errorCode = async (promise: Promise<unknown>): Promise<string> => {
    try {
      await promise;
    } catch (err) {
      if (err instanceof KmsClientError) return err.code;
      throw err;
    }
    return 'no error';
  };

  const oidcLogin = async (account: string, amr?: string[]): Promise<Session> => {
    idp.nextLogin = { accountId: account, ...(amr === undefined ? {} : { amr }) };
    const started = await anonymous.request<{ authorizationUrl: string; state: string }>(
      'GET',
      '/v1/auth/oidc/start',
    );
    const redirect = await authorize(started.body.authorizationUrl, REDIRECT);
    const callback = await anonymous.request<Session>('POST', '/v1/auth/oidc/callback', {
      code: redirect.searchParams.get('code'),
      state: redirect.searchParams.get('state'),
      ...(redirect.searchParams.get('iss') === null ? {} : { iss: redirect.searchParams.get('iss') }),
    });
    return callback.body;
  };

  const admin = { username: 'root-admin', password: 'correct horse battery staple' };
  await anonymous.request('POST', '/v1/auth/bootstrap', { token: warden.bootstrapToken, ...admin });
  const password = (username: string, pw: string) =>
    anonymous.request<Session>('POST', '/v1/auth/login', { username, password: pw }).then((r) => r.body);

  const key = new SoftwareAuthenticator({ origin: warden.url, rpId: '127.0.0.1' });
  const register = async (token: string, authenticator: SoftwareAuthenticator) => {
    const options = await http(token).request<{ challenge: string; rp: { id: string } }>(
      'POST',
      '/v1/auth/webauthn/register/options',
      {},
    );
    assert.equal(options.body.rp.id, '127.0.0.1', 'rpId defaults to the public URL host');
    return http(token).request<{ id: string }>('POST', '/v1/auth/webauthn/register/verify', {
      response: authenticator.register(options.body.challenge),
      name: 'test key',
    });
  };
  const stepUp = async (ticket: string, authenticator: SoftwareAuthenticator): Promise<Session> => {
    const options = await anonymous.request<{ challenge: string }>(
      'POST',
      '/v1/auth/webauthn/authenticate/options',
      {
        ticket,
      },
    );
    const done = await anonymous.request<Session>('POST', '/v1/auth/webauthn/authenticate/verify', {
      ticket,
      response: authenticator.authenticate(options.body.challenge),
    });
    return done.body;
  };

  it('keeps security keys in their own store file (webauthn.db)', () => {
    assert.ok(existsSync(path.join(dataDir, 'webauthn.db')));
  });

  it('logs in through the OIDC provider: a session with the mapped roles, authorised and denied by Cedar', async () => {
    const session = await oidcLogin('alice', ['pwd', 'mfa']);
    assert.equal(session.mfa_enrolment_required, false);
    assert.deepEqual(session.scope.split(' ').sort(), ['auditor', 'key-user']);
    const claims = claimsOf(session.access_token);
    assert.equal(claims['auth_method'], 'oidc');
    assert.ok((claims['amr'] as string[]).includes('mfa'), 'the provider reported a second factor');
    assert.equal(typeof claims['auth_time'], 'number');
    // auditor: identity.read; nobody mapped here may manage identities.
    assert.equal(await status(session.access_token, 'GET', '/v1/identities/users'), 200);
    assert.equal(
      await status(session.access_token, 'POST', '/v1/identities/users', {
        username: 'mallory',
        roles: ['admin'],
      }),
      403,
    );
    // MFA at the provider (recent auth_time) passes the step-up guardrail.
    assert.equal(await status(session.access_token, 'GET', '/v1/audit/checkpoint'), 200);
    const users = (
      await http(session.access_token).request<{
        items: { username: string; source: string; roles: string[] }[];
      }>('GET', '/v1/identities/users')
    ).body.items;
    const alice = users.find((u) => u.source === 'federated');
    assert.deepEqual(alice, { ...alice, username: 'alice@example.test', roles: ['auditor', 'key-user'] });
  });

  it('gives a provider login without a second factor no MFA, and refuses users without a mapped role', async () => {
    const session = await oidcLogin('alice', ['pwd']);
    const claims = claimsOf(session.access_token);
    assert.equal((claims['amr'] as string[]).includes('mfa'), false);
    assert.equal(await status(session.access_token, 'GET', '/v1/identities/users'), 200);
    assert.equal(await status(session.access_token, 'GET', '/v1/audit/checkpoint'), 403, 'step-up guardrail');
    assert.equal(await errorCode(oidcLogin('bob')), 'oidc_no_role');
  });

  it('lets a privileged user without MFA register a key from the enrolment-only session, then step up', async () => {
    const first = await password(admin.username, admin.password);
    assert.equal(first.mfa_enrolment_required, true);
    assert.equal(await status(first.access_token, 'GET', '/v1/identities/users'), 403, 'enrolment only');
    const registered = await register(first.access_token, key);
    assert.equal(registered.body.id, key.id);
    const stepped = await stepUp(first.access_token, key);
    assert.equal(stepped.mfa_enrolment_required, false);
    assert.equal(stepped.scope, 'admin');
    const claims = claimsOf(stepped.access_token);
    assert.deepEqual(claims['amr'], ['pwd', 'hwk', 'mfa']);
    assert.equal(claims['auth_method'], 'webauthn');
    assert.equal(await status(stepped.access_token, 'GET', '/v1/identities/users'), 200);
    assert.equal(await status(stepped.access_token, 'GET', '/v1/audit/checkpoint'), 200, 'passes step-up');
  });

  it('a step-up session passes the guardrail that the password-only session fails', async () => {
    const step = await password(admin.username, admin.password);
    const adminSession = await stepUp(step.access_token, key);
    await http(adminSession.access_token).request('POST', '/v1/identities/users', {
      username: 'carol',
      password: 'carol has a long password',
      roles: ['auditor'],
    });
    const plain = await password('carol', 'carol has a long password');
    assert.equal(plain.mfa_enrolment_required, false, 'auditor is not privileged');
    assert.equal(await status(plain.access_token, 'GET', '/v1/identities/users'), 200);
    assert.equal(await status(plain.access_token, 'GET', '/v1/audit/checkpoint'), 403);
    const carolKey = new SoftwareAuthenticator({ origin: warden.url, rpId: '127.0.0.1' });
    await register(plain.access_token, carolKey);
    const stepped = await stepUp(plain.access_token, carolKey);
    assert.equal(await status(stepped.access_token, 'GET', '/v1/audit/checkpoint'), 200);
    // A second key needs a session that passed MFA: a stolen password alone cannot add one.
    const another = new SoftwareAuthenticator({ origin: warden.url, rpId: '127.0.0.1' });
    assert.equal(await errorCode(register(plain.access_token, another)), 'mfa_step_up_required');
    assert.equal((await register(stepped.access_token, another)).body.id, another.id);
    // Nor an authenticator app: TOTP enrolment next to a security key needs the step-up too.
    assert.equal(
      await errorCode(http(plain.access_token).request('POST', '/v1/auth/mfa/totp', {})),
      'mfa_step_up_required',
    );
    const enrol = await http(stepped.access_token).request<{ uri: string }>('POST', '/v1/auth/mfa/totp', {});
    assert.match(enrol.body.uri, /^otpauth:\/\/totp\//);
  });

  it('refuses bad tickets, foreign keys and unauthenticated registration', async () => {
    assert.equal(
      await errorCode(
        anonymous.request('POST', '/v1/auth/webauthn/authenticate/options', { ticket: 'x'.repeat(40) }),
      ),
      'invalid_login_ticket',
    );
    assert.equal(
      await errorCode(anonymous.request('POST', '/v1/auth/webauthn/register/options', {})),
      'unauthenticated',
    );
    // carol's ticket with the administrator's key: the key is not carol's.
    const carol = await password('carol', 'carol has a long password');
    assert.notEqual(await errorCode(stepUp(carol.access_token, key)), 'no error');
    // A malformed response never yields a session.
    const options = await anonymous.request<{ challenge: string }>(
      'POST',
      '/v1/auth/webauthn/authenticate/options',
      {
        ticket: carol.access_token,
      },
    );
    const response = key.authenticate(options.body.challenge);
    assert.equal(
      await errorCode(
        anonymous.request('POST', '/v1/auth/webauthn/authenticate/verify', {
          ticket: carol.access_token,
          response: { ...response, response: { ...response.response, signature: '' } },
        }),
      ),
      'webauthn_response_malformed',
    );
  });
});

describe('identityFactorsConfigFrom', () => {
  it('defaults: OIDC off, security keys on with rpId and origin from the public URL', () => {
    assert.deepEqual(identityFactorsConfigFrom(undefined, {}), {
      webauthn: { rpName: 'Warden', addKeyMfaMaxAgeSeconds: 900 },
    });
    assert.deepEqual(identityFactorsConfigFrom({ webauthn: false }, {}), {});
    assert.deepEqual(identityFactorsConfigFrom(undefined, { WARDEN_WEBAUTHN: 'off' }), {});
  });

  it('reads OIDC from the file and the environment, keeping the secret out of any printout', () => {
    const config = identityFactorsConfigFrom(
      {
        oidc: {
          clientId: 'warden',
          redirectUris: ['https://warden.example.com/cb'],
          groupsClaim: 'realm_access.roles',
        },
      },
      {
        WARDEN_OIDC_ISSUER: 'https://idp.example.com',
        WARDEN_OIDC_CLIENT_SECRET: 'super-secret-value',
        WARDEN_OIDC_ROLE_MAPPINGS: '{"ops":["key-user","auditor"]}',
        WARDEN_OIDC_SCOPES: 'email, groups',
      },
    );
    const oidc = config.oidc;
    assert.ok(oidc !== undefined);
    assert.equal(oidc.issuer, 'https://idp.example.com');
    assert.deepEqual(oidc.scopes, ['email', 'groups']);
    assert.deepEqual(oidc.roleMappings['ops'], ['key-user', 'auditor']);
    assert.deepEqual(oidc.mfaAmrValues, ['mfa', 'hwk', 'otp', 'sms', 'sc']);
    assert.equal(JSON.stringify(config).includes('super-secret-value'), false);
    assert.equal(inspect(config, { depth: 10 }).includes('super-secret-value'), false);
    assert.ok(oidc.clientSecret instanceof SecretText);
    assert.equal(String(oidc.clientSecret), '[redacted]');
    assert.equal(oidc.clientSecret.reveal(), 'super-secret-value');
  });

  it('refuses invalid configurations with config_error', () => {
    const oidc = {
      issuer: 'https://idp.example.com',
      clientId: 'warden',
      clientSecretFile: '/etc/warden/oidc-secret',
      redirectUris: ['https://warden.example.com/cb'],
      roleMappings: { ops: ['auditor'] },
    };
    const bad: [unknown, NodeJS.ProcessEnv][] = [
      [{ oidc: { ...oidc, issuer: 'http://idp.example.com' } }, {}],
      [{ oidc: { ...oidc, roleMappings: { ops: ['Not A Role'] } } }, {}],
      [{ oidc: { ...oidc, roleMappings: undefined } }, {}],
      [{ oidc: { ...oidc, extra: 1 } }, {}],
      [{ oidc: { ...oidc, clientSecretFile: undefined, tokenEndpointAuthMethod: 'client_secret_post' } }, {}],
      [{ oidc }, { WARDEN_OIDC_CLIENT_SECRET: 'also' }],
      [{ oidc: { ...oidc, issuer: undefined } }, {}],
      [undefined, { WARDEN_OIDC_CLIENT_ID: 'orphan' }],
      [undefined, { WARDEN_OIDC_ISSUER: 'https://idp.example.com', WARDEN_OIDC_ROLE_MAPPINGS: '{' }],
      [{ oidc: { ...oidc, redirectUris: [] } }, {}],
      [{ webauthn: { rpId: 'warden.example.com', origins: ['https://evil.example.net'] } }, {}],
      [{ webauthn: { userVerification: 'always' } }, {}],
      [{ webauthn: { challengeTtlMs: 5 } }, {}],
      [undefined, { WARDEN_WEBAUTHN: 'maybe' }],
      ['not an object', {}],
      [{ unknown: {} }, {}],
    ];
    for (const [file, env] of bad) {
      assert.throws(
        () => identityFactorsConfigFrom(file, env),
        (e: unknown) =>
          e instanceof IdentityFactorsConfigError && (e as { code: string }).code === 'config_error',
        JSON.stringify(file) + JSON.stringify(env),
      );
    }
    const ok = identityFactorsConfigFrom(
      { oidc: { ...oidc, clientSecretFile: undefined, tokenEndpointAuthMethod: 'none' } },
      {},
    );
    assert.equal(ok.oidc?.clientSecret, undefined);
  });

  it('property: any JSON section either parses or fails with config_error', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.record({ oidc: fc.jsonValue(), webauthn: fc.jsonValue() }, { requiredKeys: [] }),
          fc.record({
            oidc: fc.record(
              {
                issuer: fc.oneof(fc.string(), fc.constant('https://idp.example.com')),
                clientId: fc.string(),
                redirectUris: fc.array(fc.oneof(fc.string(), fc.webUrl())),
                roleMappings: fc.dictionary(fc.string(), fc.array(fc.string())),
                tokenEndpointAuthMethod: fc.constant('none'),
              },
              { requiredKeys: [] },
            ),
          }),
        ),
        fc.dictionary(
          fc.constantFrom(
            'WARDEN_OIDC_ISSUER',
            'WARDEN_OIDC_ROLE_MAPPINGS',
            'WARDEN_WEBAUTHN',
            'WARDEN_OIDC_SCOPES',
          ),
          fc.string(),
        ),
        (file, env) => {
          try {
            identityFactorsConfigFrom(file, env);
          } catch (err) {
            assert.ok(err instanceof IdentityFactorsConfigError, String(err));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('openIdentityFactors on PostgreSQL', () => {
  it('keeps security keys in the same PostgreSQL database', async () => {
    const pg = await startPostgres();
    try {
      const config: IdentityFactorsConfig = identityFactorsConfigFrom(
        { webauthn: { rpId: 'warden.example.com', origins: ['https://warden.example.com'] } },
        {},
      );
      const noAudit = { record: () => Promise.resolve(), close: () => Promise.resolve() };
      const factors = await openIdentityFactors({
        identity: undefined as unknown as IdentityRuntime,
        config,
        store: { kind: 'postgres', url: pg.url },
        audit: noAudit,
        hasher: () => Promise.reject(new Error('unused')),
        publicUrl: () => 'https://warden.example.com',
        log: () => undefined,
        authorizeSelf: () => Promise.resolve(),
      });
      assert.equal(factors.routes.length, 1);
      await factors.close();
      const store = await openStore<Record<string, never>>({ kind: 'postgres', url: pg.url });
      try {
        const { sql } = await import('kysely');
        const rows = await sql<{ n: number }>`select count(*)::int as n from webauthn_credentials`.execute(
          store.db,
        );
        assert.equal(rows.rows[0]?.n, 0);
      } finally {
        await store.close();
      }
    } finally {
      await pg.stop();
    }
  });
});
