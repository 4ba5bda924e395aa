import { readFile, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { decodeJwt } from 'jose';
import {
  IdentityClient,
  KmsClientError,
  WardenHttp,
  sessionFrom,
  sessionTokenProvider,
} from '../../client/index.ts';
import type {
  ApiKeyInfo,
  ClientAuthMethod,
  CreateServiceAccountRequest,
  ServiceAccountInfo,
  Session,
  TokenResponse,
  UserInfo,
} from '../../client/index.ts';
import { constantTimeEqual } from '../../crypto/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import type { Output } from '../output.ts';
import {
  DEFAULT_ADDRESS,
  actionFor,
  connectHttp,
  kmsCliError,
  promptHidden,
  readToken,
  withConnectionOptions,
} from './kms.ts';
import type { ConnectionOptions, KmsCliIo } from './kms.ts';
import { makeDirectoryDurably, writeFileDurably } from '../../durable/index.ts';

/**
 * `warden login | logout | whoami | bootstrap | mfa | users | service-accounts | api-keys | roles`: Warden's
 * identity service through the SDK. The login session (access and refresh token, expiry, server address) lives
 * in `$XDG_CONFIG_HOME/warden/session.json` (default ~/.config/warden), mode 0600, replaced atomically; every
 * command of every group uses it when WARDEN_TOKEN / WARDEN_TOKEN_FILE are not set (see `sessionToken`).
 * Secrets never come from argv: passwords and codes are typed without echo on a terminal or read from stdin, one
 * per line. Secrets the server shows once (client secrets, API keys, TOTP seeds, recovery codes) are printed once,
 * on stdout; nothing else ever prints a secret.
 */

const SESSION_VERSION = 1;
/** An access token this close to expiry is renewed before a command uses it. */
const RENEW_BEFORE_SECONDS = 30;
const MAX_LINE = 64 * 1024;
const DAY_SECONDS = 86_400;

// ---- the session file ---------------------------------------------------------------------------------------

/** What `warden login` stores. */
export interface SavedSession {
  readonly version: 1;
  /** Origin of the server that issued the session; the token is sent nowhere else. */
  readonly address: string;
  /** `user:<name>` (the token's `sub`). */
  readonly principal: string;
  readonly accessToken: string;
  /** Absent for a login that returned none (then the session ends with its access token). */
  readonly refreshToken?: string;
  /** Epoch ms. */
  readonly expiresAt: number;
  readonly scope: string;
  readonly mfaEnrolmentRequired: boolean;
}

export function sessionPath(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CONFIG_HOME;
  // The XDG spec ignores a relative XDG_CONFIG_HOME.
  const base =
    xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(env.HOME ?? os.homedir(), '.config');
  return path.join(base, 'warden', 'session.json');
}

function invalidSession(file: string): CliError {
  return new CliError(
    'session_invalid',
    `${file} is not a Warden session: run warden login (or delete the file)`,
    ExitCode.unauthenticated,
  );
}

function parseSession(text: string, file: string): SavedSession {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidSession(file);
  }
  const s = parsed as Record<string, unknown> | null;
  const str = (v: unknown) => typeof v === 'string' && v.length > 0 && v.length <= 8192;
  if (
    s === null ||
    typeof s !== 'object' ||
    s.version !== SESSION_VERSION ||
    !str(s.address) ||
    !str(s.principal) ||
    !str(s.accessToken) ||
    (s.refreshToken !== undefined && !str(s.refreshToken)) ||
    typeof s.expiresAt !== 'number' ||
    !Number.isSafeInteger(s.expiresAt) ||
    typeof s.scope !== 'string' ||
    typeof s.mfaEnrolmentRequired !== 'boolean'
  ) {
    throw invalidSession(file);
  }
  return s as unknown as SavedSession;
}

/** The saved session, or undefined when there is none. */
export async function readSession(env: NodeJS.ProcessEnv, out: Output): Promise<SavedSession | undefined> {
  const file = sessionPath(env);
  let text: string;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) out.warn(`session file ${file} is readable by other users (chmod 600 it)`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseSession(text, file);
}

/** Writes the session whole (a crash leaves the old one or the new one), readable by its owner only. */
export async function writeSession(env: NodeJS.ProcessEnv, session: SavedSession): Promise<void> {
  const file = sessionPath(env);
  await makeDirectoryDurably(path.dirname(file));
  await writeFileDurably(file, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
}

async function deleteSession(env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await unlink(sessionPath(env));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function addressOf(io: KmsCliIo, options: ConnectionOptions): string {
  const address = options.addr ?? io.env.WARDEN_ADDR ?? DEFAULT_ADDRESS;
  try {
    return new URL(address).origin;
  } catch {
    throw new CliError('usage', `not a URL: ${address}`, ExitCode.usage);
  }
}

/** A transport without a token, for the calls that authenticate themselves (login, bootstrap, OAuth). */
async function connectAnonymous(io: KmsCliIo, options: ConnectionOptions): Promise<WardenHttp> {
  const caFile = options.caCert ?? io.env.WARDEN_CACERT;
  const ca = caFile === undefined || caFile === '' ? undefined : await readFile(caFile);
  try {
    return new WardenHttp({ address: addressOf(io, options), ...(ca === undefined ? {} : { ca }) });
  } catch (err) {
    if (err instanceof KmsClientError) throw kmsCliError(err);
    throw err;
  }
}

function sessionEnded(): CliError {
  return new CliError(
    'session_expired',
    'the login session has expired or was revoked: run warden login',
    ExitCode.unauthenticated,
  );
}

/**
 * The access token of the saved session for the server these options address, renewed with the refresh token
 * when it is about to expire (the rotated refresh token is saved before the new access token is used), or
 * undefined when there is no session for that server. `readToken` falls back to this.
 */
export async function sessionToken(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
): Promise<string | undefined> {
  const saved = await readSession(io.env, out);
  if (saved === undefined) return undefined;
  if (saved.address !== addressOf(io, options)) {
    out.warn(`the saved session is for ${saved.address}, not this server: not using it`);
    return undefined;
  }
  if (Date.now() < saved.expiresAt - RENEW_BEFORE_SECONDS * 1000) return saved.accessToken;
  if (saved.refreshToken === undefined) throw sessionEnded();
  const http = await connectAnonymous(io, options);
  try {
    const provider = sessionTokenProvider(
      {
        accessToken: saved.accessToken,
        refreshToken: saved.refreshToken,
        expiresAt: saved.expiresAt,
        scope: saved.scope,
      },
      {
        http,
        renewBeforeSeconds: RENEW_BEFORE_SECONDS,
        onRefresh: (s) => writeSession(io.env, { ...saved, ...s }),
      },
    );
    return await provider();
  } catch (err) {
    if (err instanceof KmsClientError && err.status >= 400 && err.status < 500) throw sessionEnded();
    throw err;
  } finally {
    await http.close();
  }
}

// ---- input ----------------------------------------------------------------------------------------------

/**
 * Secrets and answers: typed on a terminal (secrets without echo), otherwise read from stdin one line at a time,
 * so a script can pipe `password\ncode\n`.
 */
class Input {
  readonly #io: KmsCliIo;
  #buffer = '';
  #ended = false;
  #failed: Error | undefined;
  #wake: (() => void) | undefined;
  #attached = false;

  constructor(io: KmsCliIo) {
    this.#io = io;
  }

  get interactive(): boolean {
    return this.#io.stdin.isTTY === true;
  }

  async secret(prompt: string, what: string): Promise<string> {
    const value = this.interactive ? await promptHidden(this.#io, prompt) : await this.#line(what);
    if (value === '') throw new CliError('usage', `no ${what} given`, ExitCode.usage);
    return value;
  }

  async visible(prompt: string, what: string): Promise<string> {
    if (!this.interactive) return this.#line(what);
    const rl = createInterface({ input: this.#io.stdin, output: this.#io.stderr, terminal: false });
    try {
      return (await rl.question(prompt)).trim();
    } finally {
      rl.close();
    }
  }

  /** A new password: typed twice on a terminal, one line from stdin otherwise. */
  async newPassword(what = 'password'): Promise<string> {
    const first = await this.secret(`New ${what}: `, what);
    if (this.interactive) {
      const second = await this.secret(`Repeat the ${what}: `, what);
      if (!constantTimeEqual(Buffer.from(first), Buffer.from(second))) {
        throw new CliError('usage', `the two ${what}s differ`, ExitCode.usage);
      }
    }
    return first;
  }

  close(): void {
    if (!this.#attached) return;
    const stdin = this.#io.stdin;
    stdin.off('data', this.#onData);
    stdin.off('end', this.#onEnd);
    stdin.off('error', this.#onError);
    stdin.pause();
  }

  readonly #onData = (chunk: Buffer | string): void => {
    this.#buffer += chunk.toString();
    this.#wake?.();
  };
  readonly #onEnd = (): void => {
    this.#ended = true;
    this.#wake?.();
  };
  readonly #onError = (err: Error): void => {
    this.#failed = err;
    this.#wake?.();
  };

  async #line(what: string): Promise<string> {
    const stdin = this.#io.stdin;
    if (!this.#attached) {
      this.#attached = true;
      stdin.on('data', this.#onData);
      stdin.on('end', this.#onEnd);
      stdin.on('error', this.#onError);
      stdin.resume();
    }
    for (;;) {
      const newline = this.#buffer.indexOf('\n');
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        return line.replace(/\r$/, '');
      }
      if (this.#buffer.length > MAX_LINE) {
        throw new CliError('input_too_large', `a line of stdin exceeds ${MAX_LINE} bytes`, ExitCode.usage);
      }
      if (this.#failed !== undefined) throw this.#failed;
      if (this.#ended) {
        if (this.#buffer === '') {
          throw new CliError('usage', `expected the ${what} on stdin (one per line)`, ExitCode.usage);
        }
        const last = this.#buffer;
        this.#buffer = '';
        return last.replace(/\r$/, '');
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

async function withInput<T>(io: KmsCliIo, fn: (input: Input) => Promise<T>): Promise<T> {
  const input = new Input(io);
  try {
    return await fn(input);
  } finally {
    input.close();
  }
}

// ---- formatting -----------------------------------------------------------------------------------------

const when = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());
const listOf = (items: readonly string[]): string => (items.length === 0 ? '(none)' : items.join(', '));

function describeUser(u: UserInfo): string {
  return [
    `${u.username}${u.disabled ? ' [DISABLED]' : ''}`,
    `  principal:     ${u.principalId}`,
    `  source:        ${u.source}${u.issuer === null ? '' : ` (${u.issuer})`}`,
    ...(u.displayName === '' ? [] : [`  display name:  ${u.displayName}`]),
    `  roles:         ${listOf(u.roles)}`,
    `  groups:        ${listOf(u.groups)}`,
    `  password:      ${u.hasPassword ? 'set' : 'none'}`,
    `  MFA:           ${u.mfaEnrolled ? `TOTP since ${when(u.mfaEnrolledAt)}` : 'not enrolled'}`,
    `  created:       ${when(u.createdAt)}`,
    `  last login:    ${when(u.lastLoginAt)}`,
  ].join('\n');
}

function userLine(u: UserInfo): string {
  const flags = [u.disabled ? 'disabled' : '', u.mfaEnrolled ? 'mfa' : 'no-mfa', u.source].filter(Boolean);
  return `${u.username.padEnd(24)} ${listOf(u.roles).padEnd(30)} ${flags.join(' ')}`;
}

function describeService(s: ServiceAccountInfo): string {
  return [
    `${s.clientId}${s.disabled ? ' [DISABLED]' : ''}`,
    `  principal:     ${s.principalId}`,
    `  auth method:   ${s.authMethod}`,
    ...(s.description === '' ? [] : [`  description:   ${s.description}`]),
    `  roles:         ${listOf(s.roles)}`,
    ...(s.authMethod === 'client_secret' ? [`  secret:        ${s.hasSecret ? 'set' : 'none'}`] : []),
    ...(s.jwks === null ? [] : [`  keys:          ${s.jwks.keys.length} registered`]),
    ...(s.tlsSubjectDn === null ? [] : [`  TLS subject:   ${s.tlsSubjectDn}`]),
    ...(s.tlsSpkiSha256 === null ? [] : [`  TLS SPKI:      ${s.tlsSpkiSha256}`]),
    `  created:       ${when(s.createdAt)}`,
  ].join('\n');
}

function serviceLine(s: ServiceAccountInfo): string {
  return `${s.clientId.padEnd(24)} ${s.authMethod.padEnd(16)} ${listOf(s.roles)}${s.disabled ? '  [disabled]' : ''}`;
}

function keyLine(k: ApiKeyInfo): string {
  const state =
    k.revokedAt !== null ? 'revoked' : k.expiresAt <= Date.now() ? 'expired' : `expires ${when(k.expiresAt)}`;
  return `${k.id}  ${k.owner.padEnd(24)} ${listOf(k.scopes).padEnd(24)} ${state}${k.name === '' ? '' : `  ${k.name}`}`;
}

function describeKey(k: ApiKeyInfo): string {
  return [
    `${k.id}${k.name === '' ? '' : ` (${k.name})`}`,
    `  owner:         ${k.owner}`,
    `  scopes:        ${listOf(k.scopes)}`,
    `  created:       ${when(k.createdAt)}`,
    `  expires:       ${when(k.expiresAt)}`,
    `  last used:     ${when(k.lastUsedAt)}`,
    `  revoked:       ${when(k.revokedAt)}`,
  ].join('\n');
}

/** `a,b c` → [a, b, c]. */
function listOption(text: unknown): string[] | undefined {
  if (typeof text !== 'string') return undefined;
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function ttlDaysOption(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const days = Number(text);
  if (!/^\d+$/.test(text.trim()) || days < 1 || days > 366) {
    throw new CliError('usage', '--ttl-days must be a whole number of days from 1 to 366', ExitCode.usage);
  }
  return days * DAY_SECONDS;
}

function claimsOf(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

// ---- commands -------------------------------------------------------------------------------------------

type Args = unknown[];
type Run = (out: Output, options: ConnectionOptions & Record<string, unknown>, args: Args) => Promise<void>;

/** `actionFor` with the raw positional arguments (variadic ones arrive as arrays). */
function runner(io: KmsCliIo) {
  const action = actionFor(io);
  return (fn: Run) =>
    (...received: unknown[]): Promise<void> =>
      action((out, options) => fn(out, options, received.slice(0, -2)))(...received);
}

const argString = (v: unknown): string => (typeof v === 'string' ? v : '');
const argList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === 'string') : []);
const json = (c: Command): Command => c.option('--json', 'machine-readable output');

async function withIdentity<T>(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  fn: (client: IdentityClient) => Promise<T>,
): Promise<T> {
  const http = await connectHttp(io, options, out);
  try {
    return await fn(new IdentityClient(http));
  } finally {
    await http.close();
  }
}

async function saveLogin(io: KmsCliIo, address: string, tokens: TokenResponse, mfaRequired: boolean) {
  const claims = claimsOf(tokens.access_token);
  const principal = typeof claims?.sub === 'string' ? claims.sub : 'unknown';
  const session: Session | undefined = tokens.refresh_token === undefined ? undefined : sessionFrom(tokens);
  const saved: SavedSession = {
    version: SESSION_VERSION,
    address,
    principal,
    accessToken: tokens.access_token,
    ...(session === undefined ? {} : { refreshToken: session.refreshToken }),
    expiresAt: session?.expiresAt ?? Date.now() + tokens.expires_in * 1000,
    scope: tokens.scope,
    mfaEnrolmentRequired: mfaRequired,
  };
  await writeSession(io.env, saved);
  return saved;
}

function registerSession(program: Command, io: KmsCliIo): void {
  const run = runner(io);

  withConnectionOptions(
    program
      .command('login')
      .description('log in (password, then a TOTP code if MFA is enrolled) and save the session')
      .option('--username <name>', 'user name (prompted on a terminal when omitted)')
      .option('--recovery-code', 'use a recovery code instead of a TOTP code as the second factor')
      .option('--oidc', 'log in through the enterprise identity provider in a browser')
      .option('--json', 'machine-readable output'),
  ).action(
    run(async (out, o) => {
      const address = addressOf(io, o);
      const http = await connectAnonymous(io, o);
      let tokens: TokenResponse;
      let mfaRequired: boolean;
      try {
        if (o.oidc === true) {
          const { oidcLogin } = await import('./oidc-login.ts');
          const session = await oidcLogin({ http, print: (line) => io.stderr.write(`${line}\n`) });
          tokens = session;
          mfaRequired = session.mfa_enrolment_required === true;
        } else {
          const session = await withInput(io, async (input) => {
            const username =
              typeof o.username === 'string' ? o.username : await input.visible('Username: ', 'user name');
            if (username === '') throw new CliError('usage', 'no user name given', ExitCode.usage);
            const password = await input.secret('Password: ', 'password');
            const client = new IdentityClient(http);
            try {
              return await client.login({ username, password });
            } catch (err) {
              if (!(err instanceof KmsClientError) || err.code !== 'mfa_required') throw err;
            }
            if (o.recoveryCode === true) {
              const recoveryCode = await input.secret('Recovery code: ', 'recovery code');
              return client.login({ username, password, recoveryCode });
            }
            const totpCode = await input.secret('Authenticator code: ', 'TOTP code');
            return client.login({ username, password, totpCode });
          });
          tokens = session;
          mfaRequired = session.mfa_enrolment_required;
        }
      } finally {
        await http.close();
      }
      const saved = await saveLogin(io, address, tokens, mfaRequired);
      if (mfaRequired) {
        out.warn('your roles require MFA: run warden mfa enrol, then warden login again');
      }
      out.result(
        `logged in to ${address} as ${saved.principal} (${mfaRequired ? 'MFA enrolment only' : `roles: ${listOf(saved.scope.split(' ').filter(Boolean))}`}; token until ${when(saved.expiresAt)})`,
        {
          address,
          principal: saved.principal,
          scope: saved.scope,
          expiresAt: saved.expiresAt,
          mfaEnrolmentRequired: mfaRequired,
        },
      );
    }),
  );

  withConnectionOptions(
    program
      .command('logout')
      .description('revoke the saved session on the server and delete it')
      .option('--local', 'only delete the saved session, without revoking it (e.g. the server is gone)')
      .option('--json', 'machine-readable output'),
  ).action(
    run(async (out, o) => {
      if (o.local === true) {
        // Without revocation nothing in the file is needed, so even an unreadable one is deleted.
        const deleted = await deleteSession(io.env);
        out.result(deleted ? 'deleted the saved session (not revoked)' : 'not logged in', {
          loggedOut: deleted,
          revoked: false,
        });
        return;
      }
      const saved = await readSession(io.env, out);
      if (saved === undefined) {
        out.result('not logged in', { loggedOut: false });
        return;
      }
      const http = await connectAnonymous(io, { ...o, addr: saved.address });
      try {
        const client = new IdentityClient(http);
        // Revoking the refresh token ends its whole session, access tokens included.
        if (saved.refreshToken === undefined)
          await client.revoke(saved.accessToken, { hint: 'access_token' });
        else await client.revoke(saved.refreshToken, { hint: 'refresh_token' });
      } catch (err) {
        if (err instanceof KmsClientError) {
          throw new CliError(
            err.code,
            `could not revoke the session on ${saved.address} (${err.message}); it is kept: retry, or use --local`,
            kmsCliError(err).exitCode,
          );
        }
        throw err;
      } finally {
        await http.close();
      }
      await deleteSession(io.env);
      out.result(`logged out of ${saved.address}`, { loggedOut: true, revoked: true });
    }),
  );

  withConnectionOptions(
    program
      .command('whoami')
      .description('show who the current token or session authenticates as')
      .option('--json', 'machine-readable output'),
  ).action(
    run(async (out, o) => {
      const token = await readToken(io, o, out);
      if (token === undefined) {
        throw new CliError('unauthenticated', 'not logged in (run warden login)', ExitCode.unauthenticated);
      }
      const address = addressOf(io, o);
      if (token.startsWith('wdn_boot_')) {
        // The server refuses the token once redeemed; an administrator's read tells (a 403 still authenticated).
        const http = await connectHttp(io, o, out);
        try {
          await http.json('GET', '/v1/policies');
        } catch (err) {
          if (err instanceof KmsClientError && err.status === 401)
            throw notAccepted('the bootstrap token', 'already redeemed?');
          if (!(err instanceof KmsClientError) || err.status !== 403) throw err;
        } finally {
          await http.close();
        }
        out.result(`the bootstrap token of ${address}`, { address, kind: 'bootstrap' });
        return;
      }
      // The server checks the credential: the caller's own API key listing needs a live, full session.
      let state: 'active' | 'mfa-enrolment-only' = 'active';
      const http = await connectHttp(io, o, out);
      try {
        await new IdentityClient(http).listOwnApiKeys();
      } catch (err) {
        if (err instanceof KmsClientError && err.status === 401)
          throw notAccepted('the token or session', 'expired, revoked or logged out');
        if (!(err instanceof KmsClientError) || err.code !== 'mfa_enrolment_required') throw err;
        state = 'mfa-enrolment-only';
      } finally {
        await http.close();
      }
      if (token.startsWith('wdn_')) {
        const id = /^wdn_[a-z0-9]+_([0-9A-Za-z]{16})_/.exec(token)?.[1] ?? '?';
        out.result(`API key ${id} at ${address}`, { address, kind: 'api-key', apiKeyId: id });
        return;
      }
      const c = claimsOf(token) ?? {};
      const roles = Array.isArray(c.roles) ? c.roles.filter((r) => typeof r === 'string') : [];
      const data = {
        address,
        kind: 'access-token',
        principal: c.sub,
        clientId: c.client_id,
        roles,
        authMethod: c.auth_method,
        amr: c.amr,
        expiresAt: typeof c.exp === 'number' ? c.exp * 1000 : null,
        state,
      };
      out.result(
        [
          `${String(c.sub)} at ${address}${state === 'active' ? '' : ' (MFA enrolment only: run warden mfa enrol)'}`,
          `  roles:         ${listOf(roles)}`,
          `  authenticated: ${typeof c.auth_method === 'string' ? c.auth_method : '-'}`,
          `  token until:   ${typeof c.exp === 'number' ? when(c.exp * 1000) : '-'}`,
        ].join('\n'),
        data,
      );
    }),
  );

  const bootstrap = program.command('bootstrap').description('first-start setup');
  withConnectionOptions(
    bootstrap
      .command('redeem')
      .description(
        'create the first administrator with the one-time bootstrap token ($WARDEN_TOKEN_FILE, or the first line of stdin)',
      )
      .requiredOption('--username <name>', "the administrator's user name")
      .option('--display-name <text>', 'display name')
      .option('--json', 'machine-readable output'),
  ).action(
    run(async (out, o) => {
      const user = await withInput(io, async (input) => {
        // Only an explicit token counts: a saved login session is no bootstrap token.
        const explicit =
          o.tokenFile !== undefined ||
          (io.env.WARDEN_TOKEN ?? '') !== '' ||
          (io.env.WARDEN_TOKEN_FILE ?? '') !== '';
        const token =
          (explicit ? await readToken(io, o, out) : undefined) ??
          (await input.secret('Bootstrap token: ', 'bootstrap token'));
        const password = await input.newPassword();
        const http = await connectAnonymous(io, o);
        try {
          return await new IdentityClient(http).redeemBootstrap({
            token: token.trim(),
            username: argString(o.username),
            password,
            ...(typeof o.displayName === 'string' ? { displayName: o.displayName } : {}),
          });
        } finally {
          await http.close();
        }
      });
      out.result(
        `created administrator ${user.username}; now run: warden login --username ${user.username}, then warden mfa enrol`,
        user,
      );
    }),
  );

  const mfa = program.command('mfa').description('your own second factor');
  withConnectionOptions(
    mfa
      .command('enrol')
      .alias('enroll')
      .description('enrol a TOTP authenticator: shows its secret once, then confirms it with a code')
      .option('--no-confirm', 'only show the secret; confirm later with warden mfa confirm')
      .option('--json', 'machine-readable output (one JSON line per step)'),
  ).action(
    run(async (out, o) => {
      await withIdentity(io, o, out, async (client) => {
        const { secret, uri } = await client.beginTotpEnrolment();
        io.stdout.write(
          out.json
            ? `${JSON.stringify({ secret, uri })}\n`
            : `Add this to your authenticator app (shown once):\n  secret: ${secret}\n  URI:    ${uri}\n`,
        );
        if (o.confirm === false) return;
        await confirmTotp(io, out, client);
      });
    }),
  );
  withConnectionOptions(
    mfa
      .command('confirm')
      .description('confirm a pending TOTP enrolment with a code; shows the recovery codes once')
      .option('--json', 'machine-readable output'),
  ).action(run((out, o) => withIdentity(io, o, out, (client) => confirmTotp(io, out, client))));
}

async function confirmTotp(io: KmsCliIo, out: Output, client: IdentityClient): Promise<void> {
  const code = await withInput(io, (input) => input.secret('Code from the authenticator: ', 'TOTP code'));
  const { recoveryCodes } = await client.confirmTotpEnrolment(code.trim());
  if (out.json) {
    io.stdout.write(`${JSON.stringify({ recoveryCodes })}\n`);
    return;
  }
  io.stdout.write(
    [
      'MFA enrolled. Recovery codes (each works once; shown only now, store them safely):',
      ...recoveryCodes.map((c) => `  ${c}`),
      'Log in again (warden login) for a session with your roles.',
      '',
    ].join('\n'),
  );
}

function registerUsers(program: Command, io: KmsCliIo): void {
  const run = runner(io);
  const users = withConnectionOptions(program.command('users').description('administer users'));

  json(
    users
      .command('create')
      .description('create a local user')
      .argument('<username>')
      .option('--password', 'give the user a password (typed twice, or one line of stdin)')
      .option('--display-name <text>', 'display name')
      .option('--roles <roles>', 'comma-separated roles')
      .option('--groups <groups>', 'comma-separated groups'),
  ).action(
    run(async (out, o, [username]) => {
      const password = o.password === true ? await withInput(io, (input) => input.newPassword()) : undefined;
      const roles = listOption(o.roles);
      const groups = listOption(o.groups);
      const user = await withIdentity(io, o, out, (c) =>
        c.createUser({
          username: argString(username),
          ...(password === undefined ? {} : { password }),
          ...(typeof o.displayName === 'string' ? { displayName: o.displayName } : {}),
          ...(roles === undefined ? {} : { roles }),
          ...(groups === undefined ? {} : { groups }),
        }),
      );
      out.result(`created ${describeUser(user)}`, user);
    }),
  );

  json(users.command('list').description('list users')).action(
    run(async (out, o) => {
      const list = await withIdentity(io, o, out, (c) => c.listUsers());
      out.result(list.length === 0 ? '(no users)' : list.map(userLine).join('\n'), { users: list });
    }),
  );

  json(users.command('show').description('show a user').argument('<username>')).action(
    run(async (out, o, [username]) => {
      const user = await withIdentity(io, o, out, (c) => c.getUser(argString(username)));
      out.result(describeUser(user), user);
    }),
  );

  for (const [name, disabled, summary] of [
    ['disable', true, 'disable a user (ends their live tokens at once)'],
    ['enable', false, 'enable a disabled user'],
  ] as const) {
    json(users.command(name).description(summary).argument('<username>')).action(
      run(async (out, o, [username]) => {
        const user = await withIdentity(io, o, out, (c) => c.updateUser(argString(username), { disabled }));
        out.result(`${name}d ${user.username}`, user);
      }),
    );
  }

  json(
    users.command('delete').description('delete a user, their API keys and sessions').argument('<username>'),
  ).action(
    run(async (out, o, [username]) => {
      await withIdentity(io, o, out, (c) => c.deleteUser(argString(username)));
      out.result(`deleted ${argString(username)}`, { deleted: argString(username) });
    }),
  );

  json(
    users
      .command('set-roles')
      .description("replace a user's roles (none: no roles)")
      .argument('<username>')
      .argument('[roles...]'),
  ).action(
    run(async (out, o, [username, roles]) => {
      const user = await withIdentity(io, o, out, (c) =>
        c.updateUser(argString(username), { roles: argList(roles) }),
      );
      out.result(`${user.username}: roles ${listOf(user.roles)}`, user);
    }),
  );

  json(
    users
      .command('set-groups')
      .description("replace a user's groups")
      .argument('<username>')
      .argument('[groups...]'),
  ).action(
    run(async (out, o, [username, groups]) => {
      const user = await withIdentity(io, o, out, (c) =>
        c.updateUser(argString(username), { groups: argList(groups) }),
      );
      out.result(`${user.username}: groups ${listOf(user.groups)}`, user);
    }),
  );

  json(
    users
      .command('set-password')
      .description("set a user's password (typed twice, or one line of stdin); ends their sessions")
      .argument('<username>'),
  ).action(
    run(async (out, o, [username]) => {
      const password = await withInput(io, (input) => input.newPassword());
      await withIdentity(io, o, out, (c) => c.setPassword(argString(username), password));
      out.result(`password of ${argString(username)} set`, { username: argString(username) });
    }),
  );

  json(
    users
      .command('reset-mfa')
      .description("remove a user's MFA (lost device); ends their sessions")
      .argument('<username>'),
  ).action(
    run(async (out, o, [username]) => {
      await withIdentity(io, o, out, (c) => c.resetMfa(argString(username)));
      out.result(`MFA of ${argString(username)} removed: they must enrol again`, {
        username: argString(username),
      });
    }),
  );
}

function registerServiceAccounts(program: Command, io: KmsCliIo): void {
  const run = runner(io);
  const accounts = withConnectionOptions(
    program.command('service-accounts').description('administer service accounts (OAuth clients)'),
  );
  const methods: readonly ClientAuthMethod[] = ['client_secret', 'private_key_jwt', 'tls_client_auth'];

  json(
    accounts
      .command('create')
      .description('create a service account; a client secret is shown once')
      .argument('<client-id>')
      .option('--auth-method <method>', `${methods.join(', ')} (default client_secret)`)
      .option('--roles <roles>', 'comma-separated roles')
      .option('--description <text>', 'description')
      .option('--public-key <file>', 'private_key_jwt: the public key (SPKI PEM)')
      .option('--jwks <file>', 'private_key_jwt: a JWKS document')
      .option('--tls-subject-dn <dn>', "tls_client_auth: the certificate's subject DN")
      .option('--tls-spki-sha256 <hash>', "tls_client_auth: base64url SHA-256 of the certificate's SPKI"),
  ).action(
    run(async (out, o, [clientId]) => {
      const method = (o.authMethod ?? 'client_secret') as ClientAuthMethod;
      if (!methods.includes(method)) {
        throw new CliError('usage', `--auth-method must be one of ${methods.join(', ')}`, ExitCode.usage);
      }
      const roles = listOption(o.roles);
      let jwks: CreateServiceAccountRequest['jwks'];
      if (typeof o.jwks === 'string') {
        try {
          jwks = JSON.parse(await readFile(o.jwks, 'utf8')) as CreateServiceAccountRequest['jwks'];
        } catch (err) {
          if (err instanceof SyntaxError)
            throw new CliError('usage', `${o.jwks} is not JSON`, ExitCode.usage);
          throw err;
        }
      }
      const publicKeyPem = typeof o.publicKey === 'string' ? await readFile(o.publicKey, 'utf8') : undefined;
      // Checked here so that a private key never leaves this machine (the server refuses it too).
      const privateJwk = (k: unknown) =>
        typeof k === 'object' && k !== null && ['d', 'p', 'q', 'k'].some((m) => m in k);
      if (
        (publicKeyPem !== undefined && /PRIVATE KEY-----/.test(publicKeyPem)) ||
        (Array.isArray(jwks?.keys) && jwks.keys.some(privateJwk))
      ) {
        throw new CliError(
          'usage',
          `${String(o.publicKey ?? o.jwks)} holds a private key: give the public key (openssl pkey -pubout)`,
          ExitCode.usage,
        );
      }
      const request: CreateServiceAccountRequest = {
        clientId: argString(clientId),
        authMethod: method,
        ...(roles === undefined ? {} : { roles }),
        ...(typeof o.description === 'string' ? { description: o.description } : {}),
        ...(publicKeyPem === undefined ? {} : { publicKeyPem }),
        ...(jwks === undefined ? {} : { jwks }),
        ...(typeof o.tlsSubjectDn === 'string' ? { tlsSubjectDn: o.tlsSubjectDn } : {}),
        ...(typeof o.tlsSpkiSha256 === 'string' ? { tlsSpkiSha256: o.tlsSpkiSha256 } : {}),
      };
      const created = await withIdentity(io, o, out, (c) => c.createServiceAccount(request));
      out.result(
        [
          `created ${describeService(created.account)}`,
          ...(created.clientSecret === undefined
            ? []
            : [`client secret (shown once, store it now): ${created.clientSecret}`]),
        ].join('\n'),
        created,
      );
    }),
  );

  json(accounts.command('list').description('list service accounts')).action(
    run(async (out, o) => {
      const list = await withIdentity(io, o, out, (c) => c.listServiceAccounts());
      out.result(list.length === 0 ? '(no service accounts)' : list.map(serviceLine).join('\n'), {
        serviceAccounts: list,
      });
    }),
  );

  json(accounts.command('show').description('show a service account').argument('<client-id>')).action(
    run(async (out, o, [clientId]) => {
      const account = await withIdentity(io, o, out, (c) => c.getServiceAccount(argString(clientId)));
      out.result(describeService(account), account);
    }),
  );

  for (const [name, disabled, summary] of [
    ['disable', true, 'disable a service account (ends its live tokens at once)'],
    ['enable', false, 'enable a disabled service account'],
  ] as const) {
    json(accounts.command(name).description(summary).argument('<client-id>')).action(
      run(async (out, o, [clientId]) => {
        const account = await withIdentity(io, o, out, (c) =>
          c.updateServiceAccount(argString(clientId), { disabled }),
        );
        out.result(`${name}d ${account.clientId}`, account);
      }),
    );
  }

  json(
    accounts
      .command('set-roles')
      .description("replace a service account's roles")
      .argument('<client-id>')
      .argument('[roles...]'),
  ).action(
    run(async (out, o, [clientId, roles]) => {
      const account = await withIdentity(io, o, out, (c) =>
        c.updateServiceAccount(argString(clientId), { roles: argList(roles) }),
      );
      out.result(`${account.clientId}: roles ${listOf(account.roles)}`, account);
    }),
  );

  json(
    accounts
      .command('delete')
      .description('delete a service account, its API keys and tokens')
      .argument('<client-id>'),
  ).action(
    run(async (out, o, [clientId]) => {
      await withIdentity(io, o, out, (c) => c.deleteServiceAccount(argString(clientId)));
      out.result(`deleted ${argString(clientId)}`, { deleted: argString(clientId) });
    }),
  );

  json(
    accounts
      .command('rotate-secret')
      .description('issue a new client secret (shown once); the old one and its tokens stop working')
      .argument('<client-id>'),
  ).action(
    run(async (out, o, [clientId]) => {
      const { clientSecret } = await withIdentity(io, o, out, (c) =>
        c.rotateClientSecret(argString(clientId)),
      );
      out.result(`new client secret of ${argString(clientId)} (shown once, store it now): ${clientSecret}`, {
        clientId: argString(clientId),
        clientSecret,
      });
    }),
  );
}

function registerApiKeys(program: Command, io: KmsCliIo): void {
  const run = runner(io);
  const keys = withConnectionOptions(program.command('api-keys').description('API keys'));

  json(
    keys
      .command('create')
      .description("create an API key (yours, or --owner's as an administrator); the key is shown once")
      .requiredOption('--scopes <roles>', 'comma-separated roles the key carries')
      .option('--name <text>', 'a name to recognise it by')
      .option('--ttl-days <days>', 'lifetime in days, 1-366 (default 90)')
      .option('--owner <principal>', 'user:<name> or service:<client-id> (administration)'),
  ).action(
    run(async (out, o) => {
      const scopes = listOption(o.scopes) ?? [];
      const ttlSeconds = ttlDaysOption(o.ttlDays);
      const request = {
        scopes,
        ...(typeof o.name === 'string' ? { name: o.name } : {}),
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      };
      const created = await withIdentity(io, o, out, (c) =>
        typeof o.owner === 'string'
          ? c.createApiKey({ ...request, owner: o.owner })
          : c.createOwnApiKey(request),
      );
      out.result(
        [
          `API key ${created.info.id} for ${created.info.owner} (scopes ${listOf(created.info.scopes)}, expires ${when(created.info.expiresAt)})`,
          'the key (shown once, store it now):',
          created.key,
        ].join('\n'),
        created,
      );
    }),
  );

  json(
    keys
      .command('list')
      .description("list your API keys, or (administration) --owner's or --all")
      .option('--owner <principal>', 'user:<name> or service:<client-id>')
      .option('--all', 'every API key'),
  ).action(
    run(async (out, o) => {
      const list = await withIdentity(io, o, out, (c) =>
        typeof o.owner === 'string'
          ? c.listApiKeys(o.owner)
          : o.all === true
            ? c.listApiKeys()
            : c.listOwnApiKeys(),
      );
      out.result(list.length === 0 ? '(no API keys)' : list.map(keyLine).join('\n'), { apiKeys: list });
    }),
  );

  json(keys.command('show').description('show an API key (metadata only)').argument('<id>')).action(
    run(async (out, o, [id]) => {
      const info = await withIdentity(io, o, out, (c) => c.getApiKey(argString(id)));
      out.result(describeKey(info), info);
    }),
  );

  json(
    keys
      .command('revoke')
      .description('revoke one of your API keys (or any, with --admin)')
      .argument('<id>')
      .option('--admin', "revoke through the administration API (another principal's key)"),
  ).action(
    run(async (out, o, [id]) => {
      await withIdentity(io, o, out, (c) =>
        o.admin === true ? c.revokeApiKey(argString(id)) : c.revokeOwnApiKey(argString(id)),
      );
      out.result(`revoked ${argString(id)}`, { revoked: argString(id) });
    }),
  );
}

/** What each built-in role may do, read from its Cedar policies. */
async function builtInRoles(): Promise<{ role: string; actions: string[]; conditions: string[] }[]> {
  const { BUILT_IN_POLICIES, BUILT_IN_ROLE_NAMES } = await import('../../policy/index.ts');
  return BUILT_IN_ROLE_NAMES.map((role) => {
    const actions: string[] = [];
    const conditions: string[] = [];
    for (const [id, text] of Object.entries(BUILT_IN_POLICIES)) {
      if (id !== `role.${role}` && !id.startsWith(`role.${role}.`)) continue;
      const named = [...text.matchAll(/Warden::Action::"([^"]+)"/g)].map((m) => m[1] ?? '');
      if (named.length === 0 && /\baction\s*,/.test(text)) actions.push('*');
      actions.push(...named);
      const condition = /when\s*\{([^}]*)\}/.exec(text)?.[1]?.trim();
      if (condition !== undefined) conditions.push(`${named.join(', ')} when ${condition}`);
    }
    return { role, actions: [...new Set(actions)], conditions };
  });
}

function registerRoles(program: Command, io: KmsCliIo): void {
  const run = runner(io);
  const roles = withConnectionOptions(program.command('roles').description('roles and IdP group mappings'));

  json(roles.command('list').description('the built-in roles and what each may do')).action(
    run(async (out) => {
      const list = await builtInRoles();
      out.result(
        list
          .map((r) =>
            [
              `${r.role}: ${r.actions.includes('*') ? 'every action (subject to guardrails)' : r.actions.join(', ')}`,
              ...r.conditions.map((c) => `    only ${c}`),
            ].join('\n'),
          )
          .join('\n'),
        { roles: list },
      );
    }),
  );

  json(roles.command('mappings').description('list IdP group → role mappings')).action(
    run(async (out, o) => {
      const list = await withIdentity(io, o, out, (c) => c.listRoleMappings());
      out.result(
        list.length === 0 ? '(no mappings)' : list.map((m) => `${m.group} → ${listOf(m.roles)}`).join('\n'),
        { mappings: list },
      );
    }),
  );

  json(
    roles
      .command('map')
      .description("map an IdP group to roles (replaces the group's mapping)")
      .argument('<group>')
      .argument('<roles...>'),
  ).action(
    run(async (out, o, [group, list]) => {
      const mapped = argList(list);
      await withIdentity(io, o, out, (c) => c.putRoleMapping(argString(group), mapped));
      out.result(`${argString(group)} → ${listOf(mapped)}`, { group: argString(group), roles: mapped });
    }),
  );

  json(roles.command('unmap').description("remove a group's mapping").argument('<group>')).action(
    run(async (out, o, [group]) => {
      await withIdentity(io, o, out, (c) => c.deleteRoleMapping(argString(group)));
      out.result(`removed the mapping of ${argString(group)}`, { group: argString(group) });
    }),
  );
}

/** Registers the identity commands on the `warden` program. */
export function registerIdentityCommands(program: Command, io: Partial<KmsCliIo> = {}): void {
  const resolved: KmsCliIo = {
    stdin: io.stdin ?? process.stdin,
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
  };
  registerSession(program, resolved);
  registerUsers(program, resolved);
  registerServiceAccounts(program, resolved);
  registerApiKeys(program, resolved);
  registerRoles(program, resolved);
}

/** `whoami`'s answer when the server refuses the credential: what it was, the likely reason, what to do. */
function notAccepted(credential: string, likely: string): CliError {
  return new CliError(
    'unauthenticated',
    `${credential} is not accepted (${likely}): run warden login`,
    ExitCode.unauthenticated,
  );
}
