import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KmsClientError } from '../../client/index.ts';
import { constantTimeEqual } from '../../crypto/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';

/** The slice of `WardenHttp` the login needs (so that any transport to the server fits). */
export interface OidcLoginTransport {
  request(
    method: string,
    path: string,
    body?: unknown,
    options?: { anonymous?: boolean },
  ): Promise<{ status: number; body: unknown }>;
}

/** The server's token response (`POST /v1/auth/oidc/callback`). */
export interface OidcLoginSession {
  readonly access_token: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope: string;
  readonly refresh_token?: string;
  readonly mfa_enrolment_required?: boolean;
}

export interface OidcLoginOptions {
  /** A `WardenHttp` to the Warden server. */
  readonly http: OidcLoginTransport;
  /** Shows the authorization URL to the user (default: a line on stderr). */
  readonly print?: (line: string) => void;
  /** Opens the URL in a browser (default: the system's opener, best effort; `false`: only print). */
  readonly openBrowser?: ((url: string) => void | Promise<void>) | false;
  /** How long to wait for the browser to come back (default 5 minutes). */
  readonly timeoutMs?: number;
  /** Path of the loopback redirect; the server must allow it (default `/callback`). */
  readonly callbackPath?: string;
  readonly signal?: AbortSignal;
}

const PAGE_DONE = '<!doctype html><title>Warden</title><p>Signed in. You can close this window.</p>';
const PAGE_FAILED = '<!doctype html><title>Warden</title><p>Sign-in failed. Return to the terminal.</p>';

function answer(res: ServerResponse, status: number, page: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
  });
  res.end(page);
}

/** The platform's URL opener, without a shell (the URL is one argument, never interpreted). */
function systemOpen(url: string): void {
  const [command, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['rundll32', ['url.dll,FileProtocolHandler', url]]
        : ['xdg-open', [url]];
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener: the printed URL is enough.
  }
}

function unexpected(): never {
  throw new CliError(
    'oidc_login_unexpected_response',
    'the server answered with an unexpected response',
    ExitCode.internal,
  );
}

function startedLogin(body: unknown): { authorizationUrl: string; state: string } {
  if (typeof body !== 'object' || body === null) return unexpected();
  const { authorizationUrl, state } = body as Record<string, unknown>;
  if (typeof state !== 'string' || typeof authorizationUrl !== 'string') return unexpected();
  // Only a web URL is shown or handed to the system opener (never a file: or custom-scheme URL).
  if (!/^https?:\/\//.test(authorizationUrl)) return unexpected();
  return { authorizationUrl, state };
}

function loginSession(body: unknown): OidcLoginSession {
  if (typeof body !== 'object' || body === null) return unexpected();
  const session = body as Record<string, unknown>;
  if (typeof session['access_token'] !== 'string' || session['token_type'] !== 'Bearer') return unexpected();
  return session as unknown as OidcLoginSession;
}

/**
 * `warden login --oidc`: login through the enterprise identity provider with an RFC 8252 loopback redirect.
 * Listens on 127.0.0.1 on an ephemeral port, asks the server to start a login for that redirect URI (the
 * server keeps state, nonce and PKCE verifier), shows/opens the authorization URL, waits for the browser's
 * redirect carrying the same `state`, then hands code and state to the server, which exchanges the code and
 * returns the session. The code never leaves this machine except to the Warden server.
 */
export async function oidcLogin(options: OidcLoginOptions): Promise<OidcLoginSession> {
  const callbackPath = options.callbackPath ?? '/callback';
  const print =
    options.print ??
    ((line: string) => {
      process.stderr.write(`${line}\n`);
    });
  const server = createServer();
  const stop = new AbortController();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  try {
    const { port } = server.address() as AddressInfo;
    const redirectUri = `http://127.0.0.1:${port}${callbackPath}`;
    const started = await options.http
      .request('GET', `/v1/auth/oidc/start?redirectUri=${encodeURIComponent(redirectUri)}`, undefined, {
        anonymous: true,
      })
      .catch((err: unknown) => {
        // The routes exist only when an identity provider is configured: "no such route" would mislead.
        if (err instanceof KmsClientError && err.status === 404 && err.code === 'not_found') {
          throw new CliError(
            'oidc_not_configured',
            'this server does not offer OIDC login (no identity provider is configured)',
            ExitCode.usage,
          );
        }
        throw err;
      });
    const { authorizationUrl, state } = startedLogin(started.body);
    const redirect = waitForRedirect(server, callbackPath, state, options, stop.signal);
    // Settled later by the await below; a rejection while the browser opener still runs is not unhandled.
    redirect.catch(() => undefined);
    print(`Open this URL in a browser to sign in:\n  ${authorizationUrl}`);
    if (options.openBrowser !== false) await (options.openBrowser ?? systemOpen)(authorizationUrl);
    const { code, iss } = await redirect;
    const session = await options.http.request(
      'POST',
      '/v1/auth/oidc/callback',
      { code, state, ...(iss === undefined ? {} : { iss }) },
      { anonymous: true },
    );
    return loginSession(session.body);
  } finally {
    stop.abort();
    server.closeAllConnections();
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  }
}

function waitForRedirect(
  server: ReturnType<typeof createServer>,
  callbackPath: string,
  state: string,
  options: OidcLoginOptions,
  stop: AbortSignal,
): Promise<{ code: string; iss: string | undefined }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      finish();
      reject(
        new CliError('oidc_login_timeout', 'no answer from the browser in time', ExitCode.unauthenticated),
      );
    }, options.timeoutMs ?? 300_000);
    const onAbort = () => {
      finish();
      reject(new CliError('oidc_login_aborted', 'login aborted', ExitCode.unauthenticated));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    stop.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      stop.removeEventListener('abort', onAbort);
      server.off('request', onRequest);
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (req.method !== 'GET' || url.pathname !== callbackPath) {
        answer(res, 404, PAGE_FAILED);
        return;
      }
      const returned = url.searchParams.get('state') ?? '';
      // Another page (or a stale tab) hitting the port is ignored: only our own state ends the wait.
      if (!constantTimeEqual(Buffer.from(returned), Buffer.from(state))) {
        answer(res, 400, PAGE_FAILED);
        return;
      }
      finish();
      const error = url.searchParams.get('error');
      const code = url.searchParams.get('code');
      if (error !== null || code === null || code === '') {
        answer(res, 400, PAGE_FAILED);
        const safe = error !== null && /^[a-z_]{1,64}$/.test(error) ? error : 'no_code';
        reject(
          new CliError(
            'oidc_idp_error',
            `the identity provider refused the login (${safe})`,
            ExitCode.unauthenticated,
          ),
        );
        return;
      }
      answer(res, 200, PAGE_DONE);
      resolve({ code, iss: url.searchParams.get('iss') ?? undefined });
    };
    server.on('request', onRequest);
  });
}
