// A throwaway PostgreSQL cluster for tests: initdb into a temporary directory, start it on 127.0.0.1 with a free
// port (and its unix socket inside that directory), create a database, hand back the URL; stop() stops it and
// removes the directory.
//
// PostgreSQL must be installed (Debian: `apt-get install postgresql`; .ci/run does it). When it is not, this
// THROWS: a missing component fails the tests, it never skips them. `WARDEN_PG_BINDIR` may point at another
// directory holding initdb and pg_ctl.
//
// Test-only settings, never for a real server: trust authentication (anyone on this machine can connect as any
// role, fine for a cluster that lives for one test run and listens on loopback only), fsync=off and
// full_page_writes=off (a crash of the *machine* could corrupt the cluster; we throw it away anyway). The store's
// crash tests kill the client process, not the server, so they do not depend on the server's fsync.

import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './net.ts';

const run = promisify(execFile);

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:PORT/warden_test` */
  readonly url: string;
  /** Stops the server and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

function findBinDir(): string {
  const override = process.env['WARDEN_PG_BINDIR'];
  const candidates: string[] = [];
  if (override !== undefined && override !== '') {
    candidates.push(override);
  } else if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => join('/usr/lib/postgresql', v, 'bin')));
  }
  const found = candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (found === undefined) {
    throw new Error(
      `PostgreSQL is not installed: no initdb and pg_ctl in ${candidates.length > 0 ? candidates.join(', ') : '/usr/lib/postgresql/*/bin'}. ` +
        'Install it (Debian: apt-get install postgresql) or set WARDEN_PG_BINDIR.',
    );
  }
  return found;
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = findBinDir();
  // initdb refuses to run as root: as root, run the server tools as the `postgres` OS user.
  const asRoot = process.getuid?.() === 0;
  const command = (tool: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args];

  const dir = await mkdtemp(join(tmpdir(), 'warden-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  let started = false;
  let stopped = false;

  const stopSync = (): void => {
    if (stopped) return;
    stopped = true;
    if (started) {
      const [cmd, args] = command('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w']);
      spawnSync(cmd, args, { cwd: dir, stdio: 'ignore' });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Last resort if the test process exits without calling stop(): no orphaned server, no leftover directory.
  process.once('exit', stopSync);

  try {
    if (asRoot) {
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
      await chown(dir, uid, gid);
    }
    const [initCmd, initArgs] = command('initdb', [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '--encoding=UTF8',
      '--locale=C',
    ]);
    await run(initCmd, initArgs, { cwd: dir });

    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = [
        `-c listen_addresses=127.0.0.1`,
        `-p ${port}`,
        `-k ${dir}`,
        '-c fsync=off',
        '-c full_page_writes=off',
      ].join(' ');
      const [startCmd, startArgs] = command('pg_ctl', [
        'start',
        '-D',
        data,
        '-l',
        log,
        '-w',
        '-t',
        '30',
        '-o',
        options,
      ]);
      try {
        started = true;
        await run(startCmd, startArgs, { cwd: dir });
        break;
      } catch (err) {
        started = false;
        // Another process may have taken the port between freePort() and the server's bind: try another one.
        if (attempt >= 3) {
          const serverLog = existsSync(log) ? readFileSync(log, 'utf8') : '';
          throw new Error(`PostgreSQL did not start:\n${serverLog}`, { cause: err });
        }
      }
    }

    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE warden_test');
    } finally {
      await admin.end();
    }

    return {
      url: `postgres://postgres@127.0.0.1:${port}/warden_test`,
      stop: async () => {
        if (stopped) return;
        process.removeListener('exit', stopSync);
        if (started) {
          const [stopCmd, stopArgs] = command('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w']);
          await run(stopCmd, stopArgs, { cwd: dir }).catch(() => undefined);
          started = false;
        }
        stopSync();
      },
    };
  } catch (err) {
    process.removeListener('exit', stopSync);
    stopSync();
    throw err;
  }
}
