#!/usr/bin/env node
/**
 * Builds the pkcs11js native addon for the pinned Node.js runtime (`node_modules/.bin/node`, the "node"
 * dependency), not for whatever `node` npm itself runs on. Runs as the root `postinstall`, so `npm install` and
 * `npm ci` both end with an addon built against the pinned runtime's headers and proven to load in it.
 *
 * - Headers: the pinned runtime's own package ships them (`node_modules/node/node_modules/node-<os>-<arch>/
 *   include/node`). npm prunes that nested package on later `npm install <pkg>` runs, so when it is missing the
 *   same package is fetched from the npm registry (`npm pack`) and only its `include/` is kept, in
 *   `node_modules/.cache/warden-node-headers/<version>`. nodejs.org is never needed.
 * - Build: `npm rebuild pkcs11js` with `npm_config_nodedir` pointing at those headers (overriding any `nodedir`
 *   in ~/.npmrc), so pkcs11js's own gyp build runs under npm's allowScripts policy.
 * - Idempotent: a stamp in pkcs11js's build directory records the runtime it was built for; if it matches and the
 *   addon loads, nothing is rebuilt. `--force` rebuilds anyway.
 * - Loud: any failure exits non-zero, which fails `npm install` / `npm ci`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const PINNED_NODE = path.join(ROOT, 'node_modules', '.bin', 'node');
const ADDON_PACKAGE = 'pkcs11js';
const ADDON_DIR = path.join(ROOT, 'node_modules', ADDON_PACKAGE);
const ADDON_BINARY = path.join(ADDON_DIR, 'build', 'Release', 'pkcs11.node');
const STAMP = path.join(ADDON_DIR, 'build', 'warden-native.json');
const FORCE = process.argv.includes('--force');

function log(message) {
  console.log(`rebuild-native: ${message}`);
}

function fail(message) {
  console.error(`rebuild-native: ERROR: ${message}`);
  process.exit(1);
}

/** The pinned runtime's identity, asked of the pinned runtime itself. */
function pinnedRuntime() {
  if (!existsSync(PINNED_NODE)) fail(`${PINNED_NODE} (the pinned Node.js runtime) is missing: run npm ci`);
  const script =
    'console.log(JSON.stringify({ version: process.version, modules: process.versions.modules, ' +
    'napi: process.versions.napi, platform: process.platform, arch: process.arch }))';
  try {
    return JSON.parse(execFileSync(PINNED_NODE, ['-e', script], { encoding: 'utf8' }));
  } catch {
    return fail(`${PINNED_NODE} does not run`);
  }
}

/** The npm package that carries the runtime's binary and headers (same naming as the "node" package uses). */
function runtimePackage(runtime) {
  const os = runtime.platform === 'win32' ? 'win' : runtime.platform;
  const prefix = runtime.platform === 'darwin' && runtime.arch === 'arm64' ? 'node-bin' : 'node';
  return `${prefix}-${os}-${runtime.arch}`;
}

/** True if `dir/include/node` holds the headers of exactly `version` (v24.21.0). */
function headersMatch(dir, version) {
  const header = path.join(dir, 'include', 'node', 'node_version.h');
  if (!existsSync(header) || !existsSync(path.join(dir, 'include', 'node', 'common.gypi'))) return false;
  const text = readFileSync(header, 'utf8');
  const part = (name) => text.match(new RegExp(`#define\\s+NODE_${name}_VERSION\\s+(\\d+)`))?.[1];
  return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}` === version;
}

function runNpm(args, options = {}) {
  // Inside an npm script, npm_execpath is the npm that is running us; outside, the one on PATH.
  const npmCli = process.env.npm_execpath;
  const [command, argv] =
    npmCli !== undefined && npmCli.endsWith('.js') ? [process.execPath, [npmCli, ...args]] : ['npm', args];
  return spawnSync(command, argv, { cwd: ROOT, stdio: 'inherit', ...options });
}

/** A directory whose include/node has the pinned runtime's headers: the installed package, else a fetched copy. */
function findHeaders(runtime) {
  const pkg = runtimePackage(runtime);
  const installed = path.join(ROOT, 'node_modules', 'node', 'node_modules', pkg);
  if (headersMatch(installed, runtime.version)) return installed;
  const cache = path.join(ROOT, 'node_modules', '.cache', 'warden-node-headers', runtime.version);
  if (headersMatch(cache, runtime.version)) return cache;

  log(
    `headers for ${runtime.version} not found locally; fetching ${pkg}@${runtime.version.slice(1)} from npm`,
  );
  const scratch = mkdtempSync(path.join(tmpdir(), 'warden-node-headers-'));
  try {
    const packed = runNpm(
      ['pack', `${pkg}@${runtime.version.slice(1)}`, '--pack-destination', scratch, '--silent', '--json'],
      { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
    );
    if (packed.status !== 0) fail(`npm pack ${pkg}@${runtime.version.slice(1)} failed`);
    const [info] = JSON.parse(packed.stdout);
    const tarball = path.join(scratch, info?.filename ?? '');
    if (!existsSync(tarball)) fail(`npm pack did not produce ${tarball}`);
    rmSync(cache, { recursive: true, force: true });
    mkdirSync(cache, { recursive: true });
    const untar = spawnSync(
      'tar',
      ['-xzf', tarball, '-C', cache, '--strip-components=1', 'package/include'],
      {
        stdio: 'inherit',
      },
    );
    if (untar.status !== 0) fail(`could not extract the headers from ${tarball}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  if (!headersMatch(cache, runtime.version))
    fail(`${pkg}@${runtime.version} has no usable include/node headers`);
  return cache;
}

/** Loads the addon in the pinned runtime, the way Warden does (ESM import of the CommonJS package). */
function addonLoads() {
  const probe =
    "const m = await import('pkcs11js'); if (typeof m.default.PKCS11 !== 'function') process.exit(2);";
  const result = spawnSync(PINNED_NODE, ['--input-type=module', '-e', probe], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return { ok: result.status === 0, detail: (result.stderr || '').trim().split('\n').slice(0, 5).join('\n') };
}

function readStamp() {
  try {
    return JSON.parse(readFileSync(STAMP, 'utf8'));
  } catch {
    return undefined;
  }
}

const runtime = pinnedRuntime();
if (!existsSync(path.join(ADDON_DIR, 'package.json'))) fail(`${ADDON_PACKAGE} is not installed`);

const stamp = readStamp();
if (!FORCE && stamp?.node === runtime.version && stamp?.modules === runtime.modules && addonLoads().ok) {
  log(`${ADDON_PACKAGE} already built for Node.js ${runtime.version}`);
  process.exit(0);
}

const headers = findHeaders(runtime);
log(
  `building ${ADDON_PACKAGE} for Node.js ${runtime.version} (ABI ${runtime.modules}) with headers from ${path.relative(ROOT, headers)}`,
);
const before = existsSync(ADDON_BINARY) ? statSync(ADDON_BINARY).mtimeMs : 0;
const rebuilt = runNpm(['rebuild', ADDON_PACKAGE], {
  env: { ...process.env, npm_config_nodedir: headers },
});
if (rebuilt.status !== 0) fail(`npm rebuild ${ADDON_PACKAGE} failed (exit code ${rebuilt.status})`);
if (!existsSync(ADDON_BINARY) || statSync(ADDON_BINARY).mtimeMs === before) {
  fail(
    `npm rebuild ${ADDON_PACKAGE} did not build ${path.relative(ROOT, ADDON_BINARY)}: is "${ADDON_PACKAGE}" allowed in package.json "allowScripts"?`,
  );
}
const configGypi = path.join(ADDON_DIR, 'build', 'config.gypi');
if (!existsSync(configGypi) || !readFileSync(configGypi, 'utf8').includes(JSON.stringify(headers))) {
  fail(`the build did not use ${headers} (see ${path.relative(ROOT, configGypi)})`);
}
const loaded = addonLoads();
if (!loaded.ok) fail(`the rebuilt ${ADDON_PACKAGE} does not load in ${runtime.version}:\n${loaded.detail}`);
writeFileSync(
  STAMP,
  `${JSON.stringify({ node: runtime.version, modules: runtime.modules, napi: runtime.napi, headers: path.relative(ROOT, headers) }, null, 2)}\n`,
);
log(`${ADDON_PACKAGE} built for Node.js ${runtime.version} and loads`);
