import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  openSync,
  readSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../envelope/support.ts';

const MAIN = path.resolve(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const dir = tempDir('warden-cli-');
const keyringPath = path.join(tempDir('warden-cli-keys-'), 'keyring.json');

function warden(args: string[], options: { input?: Buffer; keyring?: string } = {}) {
  const result = spawnSync(process.execPath, ['--expose-gc', MAIN, ...args], {
    cwd: dir,
    input: options.input,
    env: { ...process.env, WARDEN_KEYRING: options.keyring ?? keyringPath },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

const data = randomBytes(3 * 1024 * 1024 + 17);
writeFileSync(path.join(dir, 'model.bin'), data);

describe('warden encrypt / decrypt / inspect', () => {
  it('encrypts with a context, inspects without a key, decrypts with --json output', () => {
    const enc = warden(['encrypt', 'model.bin', '-c', 'purpose=training', '-c', 'team=risk', '--json']);
    assert.equal(enc.code, 0, enc.stderr);
    assert.match(enc.stderr, /INSECURE development keyring/);
    const encJson = JSON.parse(enc.stdout.toString()) as { output: string; bytes: number };
    assert.equal(encJson.output, 'model.bin.wenc');
    assert.equal(encJson.bytes, data.length);
    const inspect = warden(['inspect', 'model.bin.wenc', '--json'], { keyring: '/nonexistent/keyring.json' });
    assert.equal(inspect.code, 0, inspect.stderr);
    const header = JSON.parse(inspect.stdout.toString()) as {
      context: object;
      plaintextLength: number;
      keySlots: unknown[];
    };
    assert.deepEqual(header.context, { purpose: 'training', team: 'risk' });
    assert.equal(header.plaintextLength, data.length);
    assert.equal(header.keySlots.length, 1);
    const dec = warden(['decrypt', 'model.bin.wenc', '-o', 'model.out', '-c', 'purpose=training']);
    assert.equal(dec.code, 0, dec.stderr);
    assert.deepEqual(readFileSync(path.join(dir, 'model.out')), data);
  });

  it('streams stdin to stdout both ways', () => {
    const enc = warden(['encrypt', '-'], { input: data });
    assert.equal(enc.code, 0, enc.stderr);
    const dec = warden(['decrypt', '-'], { input: enc.stdout });
    assert.equal(dec.code, 0, dec.stderr);
    assert.deepEqual(dec.stdout, data);
  });

  it('refuses to write ciphertext to a terminal unless -o - says so, and writes it to /dev/null', () => {
    // `script` (util-linux) runs the command on a pseudo-terminal and copies what it printed to its own stdout.
    const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
    const command = [process.execPath, '--expose-gc', MAIN, 'encrypt', '-'].map(quote).join(' ');
    const onTerminal = spawnSync('script', ['-qec', command, '/dev/null'], {
      cwd: dir,
      input: '',
      env: { ...process.env, WARDEN_KEYRING: keyringPath },
    });
    assert.equal(onTerminal.status, 2, onTerminal.stdout.toString());
    assert.match(onTerminal.stdout.toString(), /refusing to write ciphertext to a terminal/);

    const devNull = openSync('/dev/null', 'w');
    try {
      const toNull = spawnSync(process.execPath, ['--expose-gc', MAIN, 'encrypt', '-'], {
        cwd: dir,
        input: data,
        stdio: ['pipe', devNull, 'pipe'],
        env: { ...process.env, WARDEN_KEYRING: keyringPath },
      });
      assert.equal(toNull.status, 0, toNull.stderr.toString());
    } finally {
      closeSync(devNull);
    }
  });

  it('draws a progress bar on a terminal while a large file streams to stdout', () => {
    const work = tempDir('warden-cli-bar-');
    writeFileSync(path.join(work, 'big.bin'), '');
    truncateSync(path.join(work, 'big.bin'), 64 * 1024 * 1024);
    const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
    for (const [args, out, label] of [
      [['encrypt', 'big.bin', '-o', '-'], 'big.wenc', 'encrypt'],
      [['decrypt', 'big.wenc', '-o', '-'], 'back.bin', 'decrypt'],
    ] as const) {
      // On a pseudo-terminal (`script`), with only stdout redirected: the bar goes to the terminal's stderr.
      const command = `${[process.execPath, '--expose-gc', MAIN, ...args].map(quote).join(' ')} > ${out}`;
      const run = spawnSync('script', ['-qec', command, '/dev/null'], {
        cwd: work,
        input: '',
        env: { ...process.env, WARDEN_KEYRING: keyringPath },
      });
      assert.equal(run.status, 0, run.stdout.toString());
      assert.match(run.stdout.toString(), new RegExp(`${label} \\[=+\\] 100%`));
    }
    assert.deepEqual(readFileSync(path.join(work, 'back.bin')), Buffer.alloc(64 * 1024 * 1024));
  });

  it('leaves a piped stdout blocking, as the shell gave it', async () => {
    // Node's stream for a pipe turns it non-blocking (and back at exit); the descriptor path would then wait out
    // EAGAIN on every full pipe. The flag lives on the description the child shares with this process, so it
    // shows here while the child, its header written, waits for more stdin.
    const fifo = path.join(tempDir('warden-cli-fifo-'), 'out');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const childEnd = openSync(fifo, 'r+'); // Linux opens a FIFO read-write without waiting for a peer
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const child = spawn(process.execPath, ['--expose-gc', MAIN, 'encrypt', '-', '-o', '-'], {
      cwd: dir,
      stdio: ['pipe', childEnd, 'pipe'],
      env: { ...process.env, WARDEN_KEYRING: keyringPath },
    });
    try {
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
      const header = Buffer.alloc(64 * 1024);
      let got = 0;
      for (let i = 0; i < 400 && got === 0; i++) {
        try {
          got = readSync(reader, header);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
          await sleep(25);
        }
      }
      assert.ok(got > 0, `no header written: ${stderr}`);
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${childEnd}`, 'utf8'))?.[1];
      assert.ok(flags !== undefined);
      assert.equal(Number.parseInt(flags, 8) & constants.O_NONBLOCK, 0);
      child.stdin?.end(randomBytes(1000));
      assert.equal(await exited, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill();
      closeSync(reader);
      closeSync(childEnd);
    }
  });

  it('exits 3 with a plain message when the reader of stdout goes away early', async () => {
    const child = spawn(process.execPath, ['--expose-gc', MAIN, 'decrypt', 'model.bin.wenc', '-o', '-'], {
      cwd: dir,
      env: { ...process.env, WARDEN_KEYRING: keyringPath },
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout.once('data', () => child.stdout.destroy()); // `| head -c 10`
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 3);
    assert.match(stderr, /the output was closed before all of it was written/);
  });

  it('exits with a meaningful code for each failure and leaves no partial output', () => {
    const ct = readFileSync(path.join(dir, 'model.bin.wenc'));
    const tampered = Buffer.from(ct);
    tampered[ct.length - 5000] = tampered[ct.length - 5000]! ^ 1;
    writeFileSync(path.join(dir, 'tampered.wenc'), tampered);
    writeFileSync(path.join(dir, 'truncated.wenc'), ct.subarray(0, ct.length - 1000));
    const cases: [string, string[], number, RegExp][] = [
      ['tampered', ['decrypt', 'tampered.wenc', '-o', 'o1'], 4, /decryption failed/],
      ['truncated', ['decrypt', 'truncated.wenc', '-o', 'o2'], 5, /truncated/],
      [
        'context mismatch',
        ['decrypt', 'model.bin.wenc', '-o', 'o3', '-c', 'purpose=inference'],
        6,
        /context mismatch on: purpose/,
      ],
      ['missing input', ['decrypt', 'missing.wenc', '-o', 'o4'], 3, /no such file/],
      ['output exists', ['encrypt', 'model.bin', '-o', 'model.bin.wenc'], 3, /already exists/],
      ['bad usage', ['encrypt', 'model.bin', '--chunk-size', '3MiB'], 2, /power of two/],
      ['not an envelope', ['decrypt', 'model.bin', '-o', 'o5'], 5, /bad magic/],
      // Command lines the direct parser leaves to commander: its usage errors, exit code 2.
      ['unknown option', ['encrypt', 'model.bin', '--frobnicate'], 2, /unknown option '--frobnicate'/],
      ['extra input', ['decrypt', 'model.bin.wenc', 'other.wenc', '-o', 'o7'], 2, /too many arguments/],
      ['option of the other command', ['decrypt', 'model.bin.wenc', '--key', 'k'], 2, /unknown option/],
    ];
    for (const [name, args, code, message] of cases) {
      const r = warden(args);
      assert.equal(r.code, code, `${name}: ${r.stderr}`);
      assert.match(r.stderr, message, name);
    }
    const help = warden(['encrypt', '--help']);
    assert.equal(help.code, 0);
    assert.match(
      help.stdout.toString(),
      /Usage: warden encrypt \[options\] <input>[\s\S]*--chunk-size <size>/,
    );
    for (const o of ['o1', 'o2', 'o3', 'o4', 'o5', 'o7']) assert.equal(existsSync(path.join(dir, o)), false);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.partial')),
      [],
    );
    const other = path.join(tempDir('warden-cli-other-'), 'k.json');
    assert.equal(warden(['encrypt', 'model.bin', '-o', 'x.wenc'], { keyring: other }).code, 0);
    const noKey = warden(['decrypt', 'model.bin.wenc', '-o', 'o6', '--json'], { keyring: other });
    assert.equal(noKey.code, 7);
    assert.equal((JSON.parse(noKey.stderr) as { error: { code: string } }).error.code, 'key_unavailable');
  });

  it('checks input and output before resolving a key: a failed command creates no development keyring', () => {
    const fresh = path.join(tempDir('warden-cli-fresh-'), 'keyring.json');
    writeFileSync(path.join(dir, 'taken.csv'), 'a\n');
    writeFileSync(path.join(dir, 'taken.csv.wenc'), 'already here');
    mkdirSync(path.join(dir, 'a-tree'), { recursive: true });
    const cases: [string[], number, RegExp][] = [
      [['encrypt', 'missing.csv'], 3, /no such file/],
      [['encrypt', 'taken.csv'], 3, /exists/],
      [['encrypt', 'a-tree', '-o', '-'], 2, /not to stdout/],
      [['encrypt', '-', '-o', 'somewhere'], 2, /stdout only/],
    ];
    for (const [args, code, message] of cases) {
      const r = warden(args, { keyring: fresh });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /development keyring/, args.join(' '));
    }
    assert.equal(existsSync(fresh), false, 'no keyring was created');
  });

  it('refuses an insecure keyring and a keyring inside the tree being encrypted', () => {
    const tree = path.join(dir, 'tree');
    mkdirSync(tree);
    writeFileSync(path.join(tree, 'a.csv'), 'x,y\n');
    const inside = path.join(tree, 'keyring.json');
    const r1 = warden(['encrypt', 'tree'], { keyring: inside });
    assert.equal(r1.code, 7, r1.stderr);
    assert.match(r1.stderr, /lies inside/);
    chmodSync(keyringPath, 0o644);
    try {
      const r2 = warden(['encrypt', 'model.bin', '-o', 'y.wenc']);
      assert.equal(r2.code, 7);
      assert.match(r2.stderr, /chmod 600/);
    } finally {
      chmodSync(keyringPath, 0o600);
    }
  });

  it('encrypts a directory tree and detects a removed file', () => {
    const tree = path.join(dir, 'ds');
    mkdirSync(path.join(tree, 'sub'), { recursive: true });
    writeFileSync(path.join(tree, 'a.csv'), 'a\n');
    writeFileSync(path.join(tree, 'sub', 'b.csv'), 'b\n');
    assert.equal(warden(['encrypt', 'ds']).code, 0);
    const inspected = warden(['inspect', 'ds.wenc', '--json']);
    assert.equal(inspected.code, 0, inspected.stderr);
    const described = JSON.parse(inspected.stdout.toString()) as {
      tree: string;
      files: number;
      file: string;
      context: Record<string, string>;
    };
    assert.deepEqual(
      { tree: described.tree, files: described.files, file: described.file, context: described.context },
      {
        tree: 'ds.wenc',
        files: 2,
        file: path.join('ds.wenc', 'warden-manifest.wenc'),
        context: { 'warden:manifest': 'v1' },
      },
    );
    const dec = warden(['decrypt', 'ds.wenc', '-o', 'ds.out']);
    assert.equal(dec.code, 0, dec.stderr);
    assert.equal(readFileSync(path.join(dir, 'ds.out', 'sub', 'b.csv'), 'utf8'), 'b\n');
    writeFileSync(
      path.join(dir, 'ds.wenc', 'sub', 'b.csv.wenc'),
      readFileSync(path.join(dir, 'ds.wenc', 'a.csv.wenc')),
    );
    const swapped = warden(['decrypt', 'ds.wenc', '-o', 'ds.out2']);
    assert.equal(swapped.code, 6, 'a file moved to another path fails its warden:path context');
  });
});

describe('output safety', () => {
  it('never replaces a device, FIFO or directory with the atomic writer', () => {
    mkdirSync(path.join(dir, 'a-directory'), { recursive: true });
    for (const target of ['/dev/null', path.join(dir, 'a-directory')]) {
      const r = warden(['encrypt', 'model.bin', '-o', target, '--force']);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /not a regular file/);
    }
    assert.ok(statSync('/dev/null').isCharacterDevice(), '/dev/null is still a device');
  });

  it('leaves the previous output whole when killed (SIGKILL) in the middle of replacing it', async () => {
    const work = tempDir('warden-cli-kill-');
    const big = path.join(work, 'big.bin');
    const target = path.join(work, 'big.bin.wenc');
    writeFileSync(big, 'the previous version\n');
    assert.equal(warden(['encrypt', big, '-o', target]).code, 0);
    const previous = readFileSync(target);
    truncateSync(big, 1024 ** 3); // sparse: a long run that writes a lot
    const child = spawn(process.execPath, ['--expose-gc', MAIN, 'encrypt', big, '-o', target, '--force'], {
      cwd: work,
      env: { ...process.env, WARDEN_KEYRING: keyringPath },
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => {
      child.on('exit', (_code, signal) => {
        resolve(signal);
      });
    });
    const partial = () => readdirSync(work).find((f) => f.endsWith('.partial'));
    // Killed once the replacement has at least 16 MiB on disk, well before its 1 GiB are done.
    for (let i = 0; i < 2000; i++) {
      const name = partial();
      if (name !== undefined && statSync(path.join(work, name)).size >= 16 * 1024 * 1024) break;
      await sleep(5);
    }
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL', 'the child was killed before it finished');
    assert.deepEqual(readFileSync(target), previous);
    const out = warden(['decrypt', target, '-o', '-']);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.toString(), 'the previous version\n');
    assert.match(
      partial() ?? '',
      /^\.big\.bin\.wenc\.[0-9a-f]{12}\.partial$/,
      'only a hidden temp file is left',
    );
  });
});
