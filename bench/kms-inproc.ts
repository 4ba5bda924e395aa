/**
 * In-process part of the KMS benchmark (one process per root of trust, spawned by bench/kms.ts; prints one JSON
 * document on stdout). The KMS is the real thing: `openKmsRuntime` on SQLite metadata and keystore files, and the
 * real `JsonLinesAuditRecorder`, so every operation's audit event is appended durably (O_DSYNC, group commit)
 * before its result is released.
 *
 *   software: the development software root; raw node:crypto and durable-append baselines measured in the same run.
 *   softhsm:  a `Pkcs11RootOfTrust` on a throwaway SoftHSM2 token (data keys come from C_GenerateRandom).
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from 'node:crypto';
import { constants as fsConstants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { JsonLinesAuditRecorder } from '../src/audit/index.ts';
import { SoftwareRootOfTrust, openKmsRuntime } from '../src/kms/index.ts';
import type { KmsRuntime, Principal, RootOfTrust } from '../src/kms/index.ts';
import { Pkcs11RootOfTrust } from '../src/kms/root/pkcs11.ts';
import { createSoftHsmToken } from '../test/support/softhsm.ts';
import { closedLoop, envNumber, interleaved, tightLoop } from './kms-measure.ts';
import type { Sample } from './kms-measure.ts';

const mode = process.argv[2];
const seconds = envNumber('BENCH_INPROC_SECONDS', 1);
const rounds = envNumber('BENCH_RUNS', 3);
const warmup = Math.min(seconds, 0.3);
const PLAINTEXT_BYTES = 256;
const BATCH = 100;

const admin: Principal = { id: 'bench:admin', roles: ['admin'], authMethod: 'bench' };
const user: Principal = { id: 'bench:user', roles: ['key-user'], authMethod: 'bench' };

// Count the audit log's writes: the recorder opens it O_DSYNC, so each write is one durable append of a batch
// (events per write shows the group commit at work). Only the recorder and the append baseline below write
// through a FileHandle here, never during the same run; the wrapper adds one call frame per write.
let syncs = 0;
{
  const probe = await open(os.devNull, 'r');
  const proto = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const write = proto.write;
  Object.defineProperty(proto, 'write', {
    configurable: true,
    writable: true,
    value: function (this: FileHandle, ...args: Parameters<FileHandle['write']>) {
      syncs++;
      return (write as (...a: unknown[]) => unknown).apply(this, args);
    },
  });
}

async function openKms(dir: string, root: RootOfTrust): Promise<{ kms: KmsRuntime; close(): Promise<void> }> {
  const audit = await JsonLinesAuditRecorder.open(path.join(dir, 'audit.jsonl'));
  const kms = await openKmsRuntime({
    metadata: { kind: 'sqlite', path: path.join(dir, 'warden.db') },
    keystore: { kind: 'sqlite', path: path.join(dir, 'keystore.db') },
    root,
    audit,
  });
  await kms.service.createKey(admin, { name: 'bench', type: 'aes256-gcm' });
  return {
    kms,
    async close() {
      await kms.close();
      await audit.close();
    },
  };
}

/**
 * A KMS closed loop that also reports how many audit events each durable write carried. Every call records one event,
 * a batch of `items` too (one event per batch).
 */
function kmsLoop(op: () => Promise<unknown>, callers: number, items = 1): (s: number) => Promise<Sample> {
  return async (s) => {
    const before = syncs;
    const sample = await closedLoop(op, callers, s, items);
    return { ...sample, eventsPerSync: sample.ops / Math.max(1, syncs - before) };
  };
}

const plaintext = randomBytes(PLAINTEXT_BYTES);
const batchItems = Array.from({ length: BATCH }, () => ({ plaintext }));

async function software(): Promise<Partial<Record<string, Sample>>> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-kms-'));
  // tmpfs diagnostic: the same KMS with its audit log where a durable write costs nothing (NOT durable).
  const shmDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/warden-bench-kms-') : undefined;
  try {
    const root = await SoftwareRootOfTrust.openDevMode(path.join(dir, 'dev-root.key'));
    const disk = await openKms(dir, root);
    const kms = disk.kms.service;
    const shm = shmDir === undefined ? undefined : await openKms(shmDir, root);
    const ciphertexts = await Promise.all(
      Array.from({ length: 256 }, () => kms.encrypt(user, 'bench', plaintext)),
    );
    let next = 0;
    const decryptOne = () => kms.decrypt(user, ciphertexts[next++ & 255] ?? '');

    // Raw baselines: the AES-256-GCM work of each KMS operation with node:crypto alone (cached KeyObject, random
    // 12-byte IV, an AAD of the KMS's size), and one small durable (O_DSYNC) append on the same file system, as the recorder does.
    const keyObject = createSecretKey(randomBytes(32));
    const aad = Buffer.alloc(44, 1);
    const rawSealed = (() => {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', keyObject, iv);
      c.setAAD(aad);
      return Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]);
    })();
    const rawEncrypt = (data: Buffer) => {
      const c = createCipheriv('aes-256-gcm', keyObject, randomBytes(12));
      c.setAAD(aad);
      c.update(data);
      c.final();
      c.getAuthTag();
    };
    const rawDecrypt = () => {
      const d = createDecipheriv('aes-256-gcm', keyObject, rawSealed.subarray(0, 12), { authTagLength: 16 });
      d.setAuthTag(rawSealed.subarray(12 + PLAINTEXT_BYTES));
      d.setAAD(aad);
      d.update(rawSealed.subarray(12, 12 + PLAINTEXT_BYTES));
      d.final();
    };
    const syncFile = await open(
      path.join(dir, 'append-baseline.log'),
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_DSYNC,
    );
    const line = `${'x'.repeat(299)}\n`;

    const results = await interleaved(
      {
        'raw.encrypt': (s) =>
          tightLoop(() => {
            rawEncrypt(plaintext);
          }, s / 2),
        'raw.decrypt': (s) => tightLoop(rawDecrypt, s / 2),
        'raw.datakey': (s) =>
          tightLoop(() => {
            rawEncrypt(randomBytes(32));
          }, s / 2),
        'raw.append': (s) =>
          closedLoop(
            async () => {
              await syncFile.write(line);
            },
            1,
            s / 2,
          ),
        'encrypt.c1': kmsLoop(() => kms.encrypt(user, 'bench', plaintext), 1),
        'encrypt.c64': kmsLoop(() => kms.encrypt(user, 'bench', plaintext), 64),
        'decrypt.c1': kmsLoop(decryptOne, 1),
        'decrypt.c64': kmsLoop(decryptOne, 64),
        'datakey.c1': kmsLoop(() => kms.generateDataKey(user, 'bench'), 1),
        'datakey.c16': kmsLoop(() => kms.generateDataKey(user, 'bench'), 16),
        'datakey.c64': kmsLoop(() => kms.generateDataKey(user, 'bench'), 64),
        'batch.c1': kmsLoop(() => kms.encryptBatch(user, 'bench', batchItems), 1, BATCH),
        'batch.c8': kmsLoop(() => kms.encryptBatch(user, 'bench', batchItems), 8, BATCH),
        ...(shm === undefined
          ? {}
          : {
              'tmpfs.encrypt.c1': kmsLoop(() => shm.kms.service.encrypt(user, 'bench', plaintext), 1),
              'tmpfs.encrypt.c64': kmsLoop(() => shm.kms.service.encrypt(user, 'bench', plaintext), 64),
            }),
      },
      rounds,
      seconds,
      warmup,
    );
    await syncFile.close();
    await disk.close();
    await shm?.close();
    await root.close();
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (shmDir !== undefined) rmSync(shmDir, { recursive: true, force: true });
  }
}

async function softhsm(): Promise<Partial<Record<string, Sample>>> {
  const token = await createSoftHsmToken({ label: 'warden-bench' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-bench-kms-hsm-'));
  try {
    const root = await Pkcs11RootOfTrust.open({
      modulePath: token.modulePath,
      tokenLabel: token.tokenLabel,
      pin: token.pin,
    });
    await root.initialize();
    const opened = await openKms(dir, root);
    const kms = opened.kms;
    const results = await interleaved(
      {
        // Baseline: the HSM call each data key costs (C_GenerateRandom through the root's session mutex).
        'hsm.random': (s) => closedLoop(() => root.randomBytes(32), 1, s / 2),
        'hsm.datakey.c1': kmsLoop(() => kms.service.generateDataKey(user, 'bench'), 1),
        'hsm.datakey.c16': kmsLoop(() => kms.service.generateDataKey(user, 'bench'), 16),
      },
      rounds,
      seconds,
      warmup,
    );
    await opened.close();
    await root.close();
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await token.cleanup();
  }
}

if (mode !== 'software' && mode !== 'softhsm') throw new Error('usage: kms-inproc.ts software|softhsm');
const results = mode === 'software' ? await software() : await softhsm();
process.stdout.write(`${JSON.stringify(results)}\n`);
