#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 node --expose-gc
// Launches the Warden CLI on the Node.js runtime the project pins (package.json "node"). `--expose-gc` and
// the glibc settings keep streaming encryption in flat memory (see src/envelope/memory.ts). A system Node older
// than 24 found first on PATH re-executes the pinned binary instead of running on an end-of-life runtime.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  // Imported here only: node:child_process alone adds ~2 MiB to the peak RSS of `warden encrypt`.
  const [{ spawnSync }, { createRequire }, { default: path }] = await Promise.all([
    import('node:child_process'),
    import('node:module'),
    import('node:path'),
  ]);
  const require = createRequire(import.meta.url);
  let pinned;
  try {
    pinned = path.join(path.dirname(require.resolve('node/package.json')), 'bin', 'node');
  } catch {
    console.error(
      `warden: Node.js >= 24 is required (this is ${process.version}); run \`npm install\` first.`,
    );
    process.exit(70);
  }
  const result = spawnSync(pinned, ['--expose-gc', import.meta.filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (result.signal) process.kill(process.pid, result.signal);
  process.exit(result.status ?? 70);
}
// `warden encrypt` / `decrypt` stream multi-GB files in bounded memory (under 64 MiB for a 10 GB file). Two V8
// settings keep them there: no TurboFan tier (`--max-opt=2`: past ~5,000 chunks its compiler adds ~5 MiB for
// per-chunk functions whose work is in OpenSSL anyway; no slower, measured) and no V8 helper threads
// (`--single-threaded`: ~2 MiB). V8 reads both only at start-up, and `warden server` needs both tiers and helper
// threads, so these two commands replace the process image with one started with them: execve, the same process,
// nothing left behind.
const command = process.argv[2];
if ((command === 'encrypt' || command === 'decrypt') && !process.execArgv.includes('--max-opt=2')) {
  process.execve(process.execPath, [
    process.execPath,
    ...process.execArgv,
    '--max-opt=2',
    '--single-threaded',
    import.meta.filename,
    ...process.argv.slice(2),
  ]);
}
await import('../dist/cli/main.js');
