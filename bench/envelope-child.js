// One measurement per process, so that peak RSS (VmHWM) belongs to that operation alone. Plain JS importing the
// build, run the way the `warden` launcher runs (node --expose-gc, glibc keeping freed blocks): the figures are
// those of the shipped code path, without the TypeScript stripper's memory.
import { createCipheriv, randomBytes, randomInt } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import {
  EnvelopeFile,
  decryptFileParallelTo,
  decryptFileToHandle,
  encryptFile,
  encryptFileParallelTo,
  encryptFileToHandle,
} from '../dist/envelope/index.js';
import { LocalKeyring } from '../dist/keyring/index.js';

const [mode, input, keyringPath, output] = process.argv.slice(2);
const CHUNK = 1 << 20;

function peakRssMiB() {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmHWM:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0) / 1024;
}

async function main() {
  const { keyring } = await LocalKeyring.open(keyringPath, { create: true });
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const extra = {};
  if (mode === 'raw') {
    // The raw limit: the same bytes read the same way, through one AES-256-GCM context in 1 MiB steps.
    const fd = openSync(input, 'r');
    const buf = Buffer.allocUnsafe(CHUNK);
    const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
    for (let pos = 0, n; (n = readSync(fd, buf, 0, CHUNK, pos)) > 0; pos += n)
      cipher.update(buf.subarray(0, n));
    cipher.final();
    closeSync(fd);
  } else if (mode === 'prepare') {
    await encryptFile(input, output, { recipients: [keyring] });
  } else if (mode === 'random') {
    const openedAt = performance.now();
    const file = await EnvelopeFile.open(input, { keys: [keyring] });
    extra.openMs = performance.now() - openedAt;
    // Enough reads for the 99th percentile to be more than the second-worst sample (it was, at 200 reads).
    const reads = Number(process.env.BENCH_READS ?? 2000);
    const times = [];
    for (let i = 0; i < reads; i++) {
      const start = randomInt(0, file.size - CHUNK);
      const t = performance.now();
      await file.read(start, start + CHUNK);
      times.push(performance.now() - t);
    }
    await file.close();
    times.sort((a, b) => a - b);
    extra.reads = reads;
    extra.p50Ms = times[Math.floor(reads * 0.5)];
    extra.p99Ms = times[Math.floor(reads * 0.99)];
    extra.maxMs = times[reads - 1];
  } else {
    const sink = await open('/dev/null', 'w');
    const threads = 2;
    if (mode === 'encrypt') await encryptFileToHandle(input, sink, { recipients: [keyring] });
    else if (mode === 'decrypt') await decryptFileToHandle(input, sink, { keys: [keyring] });
    else if (mode === 'encrypt-parallel')
      await encryptFileParallelTo(input, sink, '/dev/null', { recipients: [keyring], threads });
    else if (mode === 'decrypt-parallel')
      await decryptFileParallelTo(input, sink, '/dev/null', { keys: [keyring], threads });
    else throw new Error(`unknown mode ${mode}`);
    await sink.close();
  }
  const seconds = (performance.now() - started) / 1000;
  // CPU of every thread of this process (main, libuv's pool doing the reads, workers) during the timed part.
  const cpu = process.cpuUsage(cpuBefore);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  process.stdout.write(
    JSON.stringify({ mode, seconds, cpuSeconds, peakRssMiB: peakRssMiB(), ...extra }) + '\n',
  );
}

await main();
