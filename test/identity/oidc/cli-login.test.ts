import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditHasher, JsonLinesAuditRecorder } from '../../../src/audit/index.ts';
import { oidcLogin } from '../../../src/cli/commands/oidc-login.ts';
import type { OidcLoginTransport } from '../../../src/cli/commands/oidc-login.ts';
import { ExitCode } from '../../../src/cli/exit-codes.ts';
import { KmsClientError } from '../../../src/client/index.ts';
import { OidcRelyingParty } from '../../../src/identity/oidc/index.ts';
import { authorize, CLIENT_ID, CLIENT_SECRET, TestProvider } from './provider-harness.ts';

let idp: TestProvider;
let dir: string;
let audit: JsonLinesAuditRecorder;
let rp: OidcRelyingParty;

/**
 * The Warden server's two public OIDC routes, in process: the same calls `routes/auth-oidc.ts` makes, with a
 * session derived from the identity (issuing sessions is the identity service's job, not under test here).
 */
const server: OidcLoginTransport = {
  async request(method: string, path: string, body?: unknown) {
    const url = new URL(path, 'https://warden.test');
    if (method === 'GET' && url.pathname === '/v1/auth/oidc/start') {
      const started = await rp.startLogin({ redirectUri: url.searchParams.get('redirectUri')! });
      return { status: 200, body: started };
    }
    if (method === 'POST' && url.pathname === '/v1/auth/oidc/callback') {
      const identity = await rp.completeLogin(body as { code: string; state: string });
      const session = {
        access_token: `session:${identity.subject}:${identity.roles.join(',')}`,
        token_type: 'Bearer',
        expires_in: 900,
        scope: '',
      };
      return { status: 200, body: session };
    }
    throw new Error(`unexpected ${method} ${path}`);
  },
};

/** A browser: follows the provider's redirects, then loads the loopback redirect (the CLI's listener). */
async function browser(url: string, tamper?: (callback: URL) => URL): Promise<number> {
  const redirectUri = new URL(url).searchParams.get('redirect_uri')!;
  const callback = await authorize(url, redirectUri);
  const response = await fetch(tamper === undefined ? callback : tamper(callback));
  await response.arrayBuffer();
  return response.status;
}

before(async () => {
  idp = await TestProvider.start();
  dir = await mkdtemp(join(tmpdir(), 'warden-oidc-cli-'));
  audit = await JsonLinesAuditRecorder.open(join(dir, 'audit.jsonl'));
  rp = new OidcRelyingParty(
    {
      issuer: idp.issuer,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      redirectUris: [],
      loopbackRedirectPaths: ['/callback'],
      scopes: ['email', 'profile', 'groups'],
      roleMapping: { 'warden-admins': ['admin'] },
    },
    { audit, auditHasher: new AuditHasher(Buffer.alloc(32, 3)) },
  );
});

after(async () => {
  await idp.stop();
  await audit.close();
  await rm(dir, { recursive: true, force: true });
});

describe('warden login --oidc (oidcLogin)', () => {
  it('says so when the server has no identity provider configured (its OIDC routes do not exist)', async () => {
    const without: OidcLoginTransport = {
      request: () => Promise.reject(new KmsClientError('not_found', 404, 'no such route')),
    };
    await assert.rejects(oidcLogin({ http: without, print: () => undefined, openBrowser: false }), {
      code: 'oidc_not_configured',
      exitCode: ExitCode.usage,
      message: /does not offer OIDC login/,
    });
  });

  it('logs in through a loopback redirect on an ephemeral port', async () => {
    const lines: string[] = [];
    let status = 0;
    const session = await oidcLogin({
      http: server,
      print: (line) => lines.push(line),
      openBrowser: async (url) => {
        assert.match(new URL(url).searchParams.get('redirect_uri')!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
        status = await browser(url);
      },
    });
    assert.equal(session.access_token, 'session:alice:admin');
    assert.equal(status, 200);
    assert.match(lines.join('\n'), /http:\/\/127\.0\.0\.1:\d+\/auth\?/);
  });

  it('ignores a redirect with a foreign state and completes with the right one', async () => {
    const session = await oidcLogin({
      http: server,
      print: () => undefined,
      openBrowser: async (url) => {
        const redirectUri = new URL(url).searchParams.get('redirect_uri')!;
        const stray = await fetch(`${redirectUri}?code=x&state=${'B'.repeat(43)}`);
        assert.equal(stray.status, 400);
        await stray.arrayBuffer();
        assert.equal(await browser(url), 200);
      },
    });
    assert.equal(session.token_type, 'Bearer');
  });

  it('reports a provider error and a timeout as CLI errors: not authenticated (exit 8)', async () => {
    await assert.rejects(
      oidcLogin({
        http: server,
        print: () => undefined,
        openBrowser: async (url) => {
          await browser(url, (callback) => {
            const denied = new URL(callback.origin + callback.pathname);
            denied.searchParams.set('error', 'access_denied');
            denied.searchParams.set('state', callback.searchParams.get('state')!);
            return denied;
          });
        },
      }),
      { code: 'oidc_idp_error', exitCode: ExitCode.unauthenticated },
    );
    await assert.rejects(
      oidcLogin({ http: server, print: () => undefined, openBrowser: false, timeoutMs: 50 }),
      { code: 'oidc_login_timeout', exitCode: ExitCode.unauthenticated },
    );
  });
});
