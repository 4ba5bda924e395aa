#!/usr/bin/env node
// Launches the Warden CLI on the Node.js runtime the project pins (see package.json "node").
// A system Node older than 24 re-executes the pinned binary instead of running on an end-of-life runtime.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
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
  const result = spawnSync(pinned, [import.meta.filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(result.status ?? 70);
}
await import('../dist/cli/main.js');
