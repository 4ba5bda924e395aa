import { after, before, describe, it } from 'node:test';
import { createDecipheriv, hkdfSync } from 'node:crypto';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { DecryptionError, InvalidInputError } from '../../../src/crypto/index.ts';
import { combine, decodeShare } from '../../../src/kms/root/shamir.ts';
import {
  fileSealStateStore,
  parseSealState,
  SoftwareRootError,
  SoftwareRootOfTrust,
  type SealState,
  type SealStateStore,
} from '../../../src/kms/root/software.ts';
import { SealedError } from '../../../src/kms/root/types.ts';

function memoryStore(): SealStateStore & { state: SealState | undefined } {
  return {
    state: undefined,
    load() {
      return Promise.resolve(this.state);
    },
    save(state) {
      this.state = state;
      return Promise.resolve();
    },
  };
}

async function initialised(
  shares = 5,
  threshold = 3,
): Promise<{ root: SoftwareRootOfTrust; store: SealStateStore; shares: string[] }> {
  const store = memoryStore();
  const root = await SoftwareRootOfTrust.open(store);
  return { root, store, shares: await root.init({ shares, threshold }) };
}

function unsealWith(root: SoftwareRootOfTrust, shares: readonly string[]): void {
  for (const share of shares) root.unseal(share);
}

/** Changes one character of the payload, as a typing slip would. */
function mistype(share: string): string {
  return share.slice(0, 25) + (share[25] === 'A' ? 'B' : 'A') + share.slice(26);
}

async function caught(run: () => unknown): Promise<Error> {
  try {
    await run();
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail('expected an error');
}

const AAD = Buffer.from('key=payments;version=3;type=aes-256-gcm');
const MATERIAL = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'warden-root-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SoftwareRootOfTrust lifecycle', () => {
  it('starts uninitialised, and init leaves it initialised but sealed', async () => {
    const store = memoryStore();
    const root = await SoftwareRootOfTrust.open(store);
    assert.deepEqual(root.status(), { kind: 'software', initialized: false, sealed: true });
    assert.throws(() => root.unseal('anything'), { code: 'not_initialized' });

    const shares = await root.init({ shares: 5, threshold: 3 });
    assert.equal(shares.length, 5);
    assert.deepEqual(
      shares.map((s) => decodeShare(s).x),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(root.status(), {
      kind: 'software',
      initialized: true,
      sealed: true,
      threshold: 3,
      shares: 5,
      progress: 0,
    });
    assert.equal(store.state?.threshold, 3);
    await assert.rejects(root.wrap(MATERIAL, AAD), SealedError);
  });

  it('refuses a second init, on the same object or over the same store', async () => {
    const { root, store } = await initialised();
    await assert.rejects(root.init({ shares: 3, threshold: 2 }), { code: 'already_initialized' });
    const again = await SoftwareRootOfTrust.open(store);
    assert.equal(again.status().initialized, true);
    await assert.rejects(again.init({ shares: 3, threshold: 2 }), { code: 'already_initialized' });
  });

  it('refuses bad share parameters and saves nothing', async () => {
    const store = memoryStore();
    const root = await SoftwareRootOfTrust.open(store);
    for (const [shares, threshold] of [
      [1, 1],
      [3, 1],
      [2, 3],
      [256, 3],
    ] as const) {
      await assert.rejects(root.init({ shares, threshold }), InvalidInputError);
    }
    assert.equal(store.state, undefined);
    assert.equal(root.status().initialized, false);
  });

  it('unseals with any threshold of the shares in any order', async () => {
    const { root, shares } = await initialised(5, 3);
    await fc.assert(
      fc.asyncProperty(fc.shuffledSubarray(shares, { minLength: 3, maxLength: 3 }), async (subset) => {
        await root.seal();
        assert.deepEqual(root.unseal(subset[0]!), {
          sealed: true,
          progress: 1,
          threshold: 3,
          accepted: true,
        });
        assert.deepEqual(root.unseal(subset[1]!), {
          sealed: true,
          progress: 2,
          threshold: 3,
          accepted: true,
        });
        assert.deepEqual(root.unseal(subset[2]!), {
          sealed: false,
          progress: 0,
          threshold: 3,
          accepted: true,
        });
        assert.equal(root.status().sealed, false);
      }),
      { numRuns: 30 },
    );
  });

  it('stays sealed with one share fewer than the threshold', async () => {
    const { root, shares } = await initialised(5, 3);
    unsealWith(root, [shares[4]!, shares[1]!]);
    assert.equal(root.status().sealed, true);
    assert.equal(root.status().progress, 2);
    await assert.rejects(root.wrap(MATERIAL, AAD), SealedError);
    await assert.rejects(root.unwrap(Buffer.alloc(40), AAD), SealedError);
    root.resetUnseal();
    assert.equal(root.status().progress, 0);
  });

  it('fails the key check with a share from another root, and discards all pending shares', async () => {
    const { root, shares } = await initialised(5, 3);
    const { shares: foreign } = await initialised(5, 3);
    unsealWith(root, [shares[0]!, shares[1]!]);
    const err = await caught(() => root.unseal(foreign[2]!));
    assert.ok(err instanceof SoftwareRootError);
    assert.equal(err.code, 'key_check_failed');
    assert.deepEqual(
      { sealed: root.status().sealed, progress: root.status().progress },
      { sealed: true, progress: 0 },
    );
    unsealWith(root, [shares[0]!, shares[1]!, shares[2]!]);
    assert.equal(root.status().sealed, false);
  });

  it('ignores a repeated share and resets on a conflicting one with the same number', async () => {
    const { root, shares } = await initialised(5, 3);
    const { shares: foreign } = await initialised(5, 3);
    root.unseal(shares[0]!);
    assert.deepEqual(root.unseal(`${shares[0]!}\n`), {
      sealed: true,
      progress: 1,
      threshold: 3,
      accepted: false,
    });
    root.unseal(shares[1]!);
    assert.throws(() => root.unseal(foreign[1]!), { code: 'share_conflict' });
    assert.equal(root.status().progress, 0);
  });

  it('rejects a mistyped or unfit share but keeps the progress', async () => {
    const { root, shares } = await initialised(3, 2);
    const { shares: bigger } = await initialised(5, 2);
    root.unseal(shares[0]!);
    const share = shares[1]!;
    assert.throws(() => root.unseal(mistype(share)), /checksum/);
    assert.throws(() => root.unseal(bigger[4]!), InvalidInputError); // share number 5 of a 3-share root
    assert.equal(root.status().progress, 1);
    root.unseal(share);
    assert.equal(root.status().sealed, false);
    // Already unsealed: a further share changes nothing.
    assert.equal(root.unseal(shares[2]!).accepted, false);
  });

  it('seals again, unseals again, and survives a restart over the same store', async () => {
    const { root, store, shares } = await initialised(3, 2);
    unsealWith(root, shares.slice(0, 2));
    const wrapped = await root.wrap(MATERIAL, AAD);
    await root.seal();
    assert.equal(root.status().sealed, true);
    await assert.rejects(root.unwrap(wrapped, AAD), SealedError);
    unsealWith(root, [shares[2]!, shares[0]!]);
    assert.deepEqual(await root.unwrap(wrapped, AAD), MATERIAL);

    const restarted = await SoftwareRootOfTrust.open(store);
    assert.equal(restarted.status().sealed, true);
    unsealWith(restarted, [shares[1]!, shares[2]!]);
    assert.deepEqual(await restarted.unwrap(wrapped, AAD), MATERIAL);
    await restarted.close();
    assert.equal(restarted.status().sealed, true);
  });
});

describe('wrap and unwrap', () => {
  let root: SoftwareRootOfTrust;
  before(async () => {
    const setup = await initialised(3, 2);
    root = setup.root;
    unsealWith(root, setup.shares.slice(1));
  });

  it('round-trips and is versioned', async () => {
    const wrapped = await root.wrap(MATERIAL, AAD);
    assert.equal(wrapped[0], 0x01);
    assert.equal(wrapped.length, 1 + 12 + MATERIAL.length + 16);
    assert.deepEqual(await root.unwrap(wrapped, AAD), MATERIAL);
    assert.notDeepEqual(await root.wrap(MATERIAL, AAD), wrapped);
    assert.deepEqual(await root.unwrap(await root.wrap(new Uint8Array(0), AAD), AAD), Buffer.alloc(0));
  });

  it('fails with DecryptionError on a wrong aad, any changed byte, truncation or an unknown version', async () => {
    const wrapped = await root.wrap(MATERIAL, AAD);
    await assert.rejects(root.unwrap(wrapped, Buffer.from('key=payments;version=4')), DecryptionError);
    await assert.rejects(root.unwrap(wrapped, new Uint8Array(0)), DecryptionError);
    for (let i = 0; i < wrapped.length; i++) {
      const bad = Buffer.from(wrapped);
      bad[i]! ^= 0x01;
      await assert.rejects(root.unwrap(bad, AAD), DecryptionError, `byte ${i}`);
    }
    for (const length of [0, 1, 28, wrapped.length - 1]) {
      await assert.rejects(root.unwrap(wrapped.subarray(0, length), AAD), DecryptionError);
    }
  });

  it('does not decrypt under another root', async () => {
    const other = await initialised(3, 2);
    unsealWith(other.root, other.shares.slice(0, 2));
    await assert.rejects(other.root.unwrap(await root.wrap(MATERIAL, AAD), AAD), DecryptionError);
  });

  it('refuses a missing aad from untyped callers', async () => {
    await assert.rejects(root.wrap(MATERIAL, undefined as unknown as Uint8Array), InvalidInputError);
    await assert.rejects(root.unwrap(MATERIAL, 'aad' as unknown as Uint8Array), InvalidInputError);
  });

  it('gives random bytes even while sealed', async () => {
    const { root: sealed } = await initialised();
    assert.equal((await sealed.randomBytes(32)).length, 32);
    await assert.rejects(sealed.randomBytes(0), InvalidInputError);
  });
});

describe('recovery from the spec alone', () => {
  it('derives the key check and wrapping key as docs/spec/shamir-shares.md says', async () => {
    const { root, store, shares } = await initialised(5, 3);
    unsealWith(root, shares.slice(2));
    const wrapped = await root.wrap(MATERIAL, AAD);

    const key = combine([shares[4]!, shares[0]!, shares[1]!].map(decodeShare));
    const derive = (info: string): Buffer =>
      Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), Buffer.from(info), 32));
    assert.equal(derive('warden/kms/root key-check v1').toString('hex'), (await store.load())?.keyCheck);
    const decipher = createDecipheriv(
      'aes-256-gcm',
      derive('warden/kms/root wrap v1'),
      wrapped.subarray(1, 13),
    );
    decipher.setAAD(AAD);
    decipher.setAuthTag(wrapped.subarray(-16));
    const plain = Buffer.concat([decipher.update(wrapped.subarray(13, -16)), decipher.final()]);
    assert.deepEqual(plain, MATERIAL);
  });
});

describe('secrets stay out of errors and representations', () => {
  it('never shows the root key or a share', async () => {
    const { root, shares } = await initialised(5, 3);
    const key = combine(shares.slice(0, 3).map(decodeShare));
    const forbidden = [
      key.toString('hex'),
      key.toString('base64'),
      key.toString('base64url').slice(0, 20),
      ...shares.map((s) => s.split(':')[2]!.slice(0, 20)),
    ];
    const texts: string[] = [];
    const look = (): void => {
      texts.push(
        JSON.stringify(root),
        inspect(root, { showHidden: true, depth: Infinity }),
        // Without the custom hook too: private fields must not show either.
        inspect(root, { showHidden: true, depth: Infinity, customInspect: false }),
      );
    };
    const collect = async (run: () => unknown): Promise<void> => {
      const err = await caught(run);
      texts.push(err.message, String(err.stack), inspect(err, { showHidden: true, depth: Infinity }));
    };

    const { shares: foreign } = await initialised(5, 3);
    look();
    await collect(() => root.wrap(key, key));
    await collect(() => root.unseal(mistype(shares[0]!)));
    await collect(() => root.unseal(`${shares[0]!}junk`));
    root.unseal(shares[0]!);
    root.unseal(shares[1]!);
    look();
    await collect(() => root.unseal(foreign[2]!));
    root.unseal(shares[3]!);
    await collect(() => root.unseal(foreign[3]!));
    unsealWith(root, shares.slice(2));
    assert.equal(root.status().sealed, false);
    look();
    await collect(() => root.unwrap(key, key));
    await collect(() => root.init({ shares: 3, threshold: 2 }));

    assert.ok(texts.length > 10);
    for (const text of texts) {
      for (const secret of forbidden) assert.ok(!text.includes(secret), `leaked into: ${text.slice(0, 80)}`);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(root)), root.status());
  });
});

describe('fileSealStateStore', () => {
  const state: SealState = {
    version: 1,
    shares: 5,
    threshold: 3,
    keyCheck: 'ab'.repeat(32),
    createdAt: '2025-01-01T00:00:00.000Z',
  };

  it('loads nothing from a missing file, then round-trips with mode 0600', async () => {
    const file = path.join(dir, 'state-a', 'seal.json');
    const store = fileSealStateStore(file);
    assert.equal(await store.load(), undefined);
    await store.save(state);
    assert.deepEqual(await store.load(), state);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(path.dirname(file)), ['seal.json']);
  });

  it('is not corrupted by a temp file left by a crash mid-write', async () => {
    const file = path.join(dir, 'state-b', 'seal.json');
    const store = fileSealStateStore(file);
    await store.save(state);
    // What a crash between writing the temp file and renaming it leaves behind: a partial new state.
    const partial = JSON.stringify({ ...state, threshold: 2 }).slice(0, 30);
    await writeFile(
      path.join(dir, 'state-b', '.seal.json.0b7c1a52-0000-4000-8000-000000000000.tmp'),
      partial,
    );
    assert.deepEqual(await fileSealStateStore(file).load(), state);
    const next = { ...state, createdAt: '2025-06-01T00:00:00.000Z' };
    await store.save(next);
    assert.deepEqual(await store.load(), next);
  });

  it('drives a root across restarts', async () => {
    const file = path.join(dir, 'state-c', 'seal.json');
    const first = await SoftwareRootOfTrust.open(fileSealStateStore(file));
    const shares = await first.init({ shares: 3, threshold: 2 });
    const onDisk = await readFile(file, 'utf8');
    const key = combine(shares.slice(0, 2).map(decodeShare));
    assert.ok(!onDisk.includes(key.toString('hex')) && !onDisk.includes(key.toString('base64')));
    const second = await SoftwareRootOfTrust.open(fileSealStateStore(file));
    unsealWith(second, shares.slice(1));
    assert.equal(second.status().sealed, false);
  });

  it('reports a damaged state file instead of treating it as absent', async () => {
    const file = path.join(dir, 'state-d.json');
    await writeFile(file, '{"version":1,');
    await assert.rejects(fileSealStateStore(file).load(), { code: 'state_malformed' });
    await writeFile(file, JSON.stringify({ ...state, extra: true }));
    await assert.rejects(fileSealStateStore(file).load(), { code: 'state_malformed' });
    await assert.rejects(SoftwareRootOfTrust.open(fileSealStateStore(file)), { code: 'state_malformed' });
  });

  it('validates every field', () => {
    assert.deepEqual(parseSealState(state), state);
    for (const bad of [
      null,
      [],
      { ...state, version: 2 },
      { ...state, threshold: 1 },
      { ...state, threshold: 6 },
      { ...state, shares: 256, threshold: 3 },
      { ...state, shares: 5.5 },
      { ...state, keyCheck: 'AB'.repeat(32) },
      { ...state, keyCheck: 'ab' },
      { ...state, createdAt: 'yesterday' },
    ]) {
      assert.throws(() => parseSealState(bad), { code: 'state_malformed' });
    }
  });
});

describe('development mode', () => {
  it('creates a 0600 key file, comes up unsealed and flagged, and reopens with the same key', async () => {
    const file = path.join(dir, 'dev', 'root-key.json');
    const root = await SoftwareRootOfTrust.openDevMode(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(root.status(), {
      kind: 'software',
      initialized: true,
      sealed: false,
      insecureDevMode: true,
    });
    const wrapped = await root.wrap(MATERIAL, AAD);
    const reopened = await SoftwareRootOfTrust.openDevMode(file);
    assert.deepEqual(await reopened.unwrap(wrapped, AAD), MATERIAL);
    assert.deepEqual(await readdir(path.dirname(file)), ['root-key.json']);

    assert.throws(() => root.unseal('x'), { code: 'dev_mode' });
    await assert.rejects(root.init({ shares: 3, threshold: 2 }), { code: 'dev_mode' });
    await root.seal();
    assert.equal(root.status().sealed, true);
    await assert.rejects(root.wrap(MATERIAL, AAD), SealedError);
  });

  it('two concurrent first opens agree on one key', async () => {
    const file = path.join(dir, 'dev-race', 'root-key.json');
    const [a, b] = await Promise.all([
      SoftwareRootOfTrust.openDevMode(file),
      SoftwareRootOfTrust.openDevMode(file),
    ]);
    assert.deepEqual(await b.unwrap(await a.wrap(MATERIAL, AAD), AAD), MATERIAL);
  });

  it('refuses a key file readable by group or others, a symlink, or a malformed file', async () => {
    const file = path.join(dir, 'dev-perm', 'root-key.json');
    await SoftwareRootOfTrust.openDevMode(file);
    await chmod(file, 0o644);
    await assert.rejects(SoftwareRootOfTrust.openDevMode(file), { code: 'dev_file_insecure' });
    await chmod(file, 0o640);
    await assert.rejects(SoftwareRootOfTrust.openDevMode(file), { code: 'dev_file_insecure' });
    await chmod(file, 0o600);
    await SoftwareRootOfTrust.openDevMode(file);

    const link = path.join(dir, 'dev-perm', 'link.json');
    await symlink(file, link);
    await assert.rejects(SoftwareRootOfTrust.openDevMode(link), { code: 'dev_file_insecure' });

    const junk = path.join(dir, 'dev-perm', 'junk.json');
    await writeFile(junk, '{"format":"warden-dev-root/v1","rootKey":"AAAA"}', { mode: 0o600 });
    await assert.rejects(SoftwareRootOfTrust.openDevMode(junk), { code: 'dev_file_malformed' });
  });
});
