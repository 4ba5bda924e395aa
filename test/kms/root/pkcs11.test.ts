/**
 * The PKCS#11 root of trust against a real SoftHSM2 token (a throwaway one per run: test/support/softhsm.ts).
 * SoftHSM2 missing fails the run. Key properties are also checked from a separate process talking to the token
 * directly through pkcs11js, not through the code under test.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect, promisify } from 'node:util';
import pkcs11js from 'pkcs11js';
import {
  DecryptionError,
  InvalidInputError,
  randomBytes as osRandomBytes,
} from '../../../src/crypto/index.ts';
import {
  HsmError,
  PKCS11_WRAP_OVERHEAD,
  Pkcs11RootOfTrust,
  pkcs11ConfigFromEnv,
} from '../../../src/kms/root/pkcs11.ts';
import { SealedError } from '../../../src/kms/root/types.ts';
import { createSoftHsmToken, type SoftHsmToken } from '../../support/softhsm.ts';

const REPO = path.resolve(import.meta.dirname, '../../..');
const ROOT_MODULE_URL = pathToFileURL(path.join(REPO, 'src/kms/root/pkcs11.ts')).href;
const run = promisify(execFile);

/** Runs an ES module snippet in a fresh Node process (the pinned runtime); secrets travel in `env` only. */
async function inChild(code: string, env: NodeJS.ProcessEnv): Promise<unknown> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO, env });
  return JSON.parse(stdout) as unknown;
}

function isHsmError(code: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof HsmError, `expected HsmError, got ${inspect(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

/** Operations per second of `op`, run sequentially for about `ms` milliseconds. */
async function opsPerSecond(op: () => Promise<unknown>, ms: number): Promise<number> {
  for (let i = 0; i < 50; i++) await op(); // warm-up
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 100; i++) await op();
    count += 100;
    elapsed = performance.now() - start;
  }
  return Math.round((count * 1000) / elapsed);
}

describe('Pkcs11RootOfTrust on SoftHSM2', () => {
  let token: SoftHsmToken;
  let root: Pkcs11RootOfTrust;
  const aad = Buffer.from('kms/key/orders-db/v3/aes256-gcm');

  const config = () => ({ modulePath: token.modulePath, tokenLabel: token.tokenLabel, pin: token.pin });

  before(async () => {
    token = await createSoftHsmToken();
    root = await Pkcs11RootOfTrust.open(config());
  });

  after(async () => {
    await root.close();
    await token.cleanup();
  });

  it('opens logged in, uninitialised, and refuses to work without a root key', async () => {
    assert.deepEqual(root.status(), { kind: 'pkcs11', initialized: false, sealed: false });
    await assert.rejects(root.wrap(Buffer.alloc(32), aad), isHsmError('hsm_key_not_found'));
  });

  it('refuses a wrong PIN and an unknown token, and never puts a PIN in an error', async () => {
    await root.close(); // one open instance per token per process
    const wrongPin = `wrong-${osRandomBytes(8).toString('hex')}`;
    const errors: unknown[] = [];
    for (const attempt of [
      { ...config(), pin: wrongPin },
      { ...config(), tokenLabel: 'no-such-token' },
      { ...config(), modulePath: '/nonexistent/libpkcs11.so' },
    ]) {
      await assert.rejects(Pkcs11RootOfTrust.open(attempt), (error: unknown) => {
        errors.push(error);
        return error instanceof HsmError;
      });
    }
    assert.equal((errors[0] as HsmError).code, 'hsm_pin_incorrect');
    assert.equal((errors[1] as HsmError).code, 'hsm_token_not_found');
    // Opened sealed, then a wrong and an empty PIN at unseal.
    root = await Pkcs11RootOfTrust.open({ ...config(), pin: undefined });
    assert.equal(root.status().sealed, true);
    await assert.rejects(root.unseal(wrongPin), (error: unknown) => {
      errors.push(error);
      return isHsmError('hsm_pin_incorrect')(error);
    });
    await assert.rejects(root.unseal(''), isHsmError('hsm_pin_incorrect'));
    assert.equal(root.status().sealed, true);
    // Configuration errors.
    await assert.rejects(
      pkcs11ConfigFromEnv({
        WARDEN_PKCS11_MODULE: token.modulePath,
        WARDEN_PKCS11_TOKEN_LABEL: token.tokenLabel,
        WARDEN_PKCS11_PIN: token.pin,
        WARDEN_PKCS11_PIN_FILE: path.join(token.dir, 'missing'),
      }),
      (error: unknown) => {
        errors.push(error);
        return isHsmError('hsm_config')(error);
      },
    );
    await assert.rejects(
      pkcs11ConfigFromEnv({
        WARDEN_PKCS11_MODULE: token.modulePath,
        WARDEN_PKCS11_TOKEN_LABEL: token.tokenLabel,
        WARDEN_PKCS11_PIN_FILE: path.join(token.dir, 'missing'),
      }),
      (error: unknown) => {
        errors.push(error);
        return isHsmError('hsm_config')(error);
      },
    );
    await root.unseal(token.pin);
    assert.equal(root.status().sealed, false);
    for (const error of errors) {
      const text = `${String(error)} ${inspect(error, { depth: 10 })} ${JSON.stringify(error)}`;
      assert.ok(!text.includes(token.pin), 'the PIN leaked into an error');
      assert.ok(!text.includes(wrongPin), 'the wrong PIN leaked into an error');
      assert.ok(!text.includes(token.soPin), 'the SO PIN leaked into an error');
    }
  });

  it('refuses a second instance on the same token in the same process', async () => {
    await assert.rejects(Pkcs11RootOfTrust.open(config()), isHsmError('hsm_config'));
    assert.equal(root.status().sealed, false, 'the failed open left the first instance alone');
  });

  it('initialize() generates a sensitive, non-extractable AES-256 token key inside the HSM, once', async () => {
    await root.initialize();
    assert.deepEqual(root.status(), { kind: 'pkcs11', initialized: true, sealed: false });
    const attributes = await root.rootKeyAttributes();
    assert.deepEqual(attributes, {
      label: 'warden-root',
      valueLen: 32,
      token: true,
      private: true,
      sensitive: true,
      alwaysSensitive: true,
      extractable: false,
      neverExtractable: true,
      local: true, // generated on the token, never imported
      encrypt: true,
      decrypt: true,
      wrap: false,
      unwrap: false,
    });
    await assert.rejects(root.initialize(), isHsmError('hsm_key_exists'));
  });

  it('wraps and unwraps key material bound to its aad (CKM_AES_GCM in the HSM)', async () => {
    for (const size of [1, 16, 32, 64, 1190, 4096, 65536]) {
      const material = osRandomBytes(size);
      const wrapped = await root.wrap(material, aad);
      assert.equal(wrapped.byteLength, size + PKCS11_WRAP_OVERHEAD);
      assert.equal(wrapped[0], 0x01, 'format version');
      assert.deepEqual(await root.unwrap(wrapped, aad), material);
      const again = await root.wrap(material, aad);
      assert.notDeepEqual(again.subarray(1, 13), wrapped.subarray(1, 13), 'fresh IV per wrap');
    }
    const material = osRandomBytes(32);
    assert.deepEqual(
      await root.unwrap(await root.wrap(material, new Uint8Array(0)), new Uint8Array(0)),
      material,
    );
    // A Uint8Array view into a larger buffer is taken for what it is.
    const backing = osRandomBytes(64);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 8, 32);
    assert.deepEqual(await root.unwrap(await root.wrap(view, aad), aad), Buffer.from(view));
    await assert.rejects(root.wrap(new Uint8Array(0), aad), InvalidInputError);
    await assert.rejects(root.wrap(new Uint8Array(65537), aad), InvalidInputError);
  });

  it('any wrong aad, flipped bit, truncation or extension is the one DecryptionError', async () => {
    const material = osRandomBytes(32);
    const wrapped = await root.wrap(material, aad);
    const attempts: Array<[string, Uint8Array, Uint8Array]> = [
      ['other aad', wrapped, Buffer.from('kms/key/orders-db/v4/aes256-gcm')],
      ['empty aad', wrapped, new Uint8Array(0)],
      ['truncated', wrapped.subarray(0, wrapped.byteLength - 1), aad],
      ['extended', Buffer.concat([wrapped, Buffer.of(0)]), aad],
      ['header only', wrapped.subarray(0, PKCS11_WRAP_OVERHEAD), aad],
      ['empty', new Uint8Array(0), aad],
    ];
    for (let i = 0; i < wrapped.byteLength; i++) {
      const flipped = Buffer.from(wrapped);
      flipped[i] = (flipped[i] ?? 0) ^ (1 << (i % 8));
      attempts.push([`bit flipped in byte ${i}`, flipped, aad]);
    }
    for (const [what, blob, context] of attempts) {
      await assert.rejects(
        root.unwrap(blob, context),
        (error: unknown) => error instanceof DecryptionError && error.message === 'decryption failed',
        what,
      );
    }
    // The session is still healthy after all those failed C_Decrypt calls.
    assert.deepEqual(await root.unwrap(wrapped, aad), material);
  });

  it('randomBytes comes from C_GenerateRandom: right lengths, no repeats, bounds checked', async () => {
    for (const n of [1, 12, 32, 4096, 4097, 10000]) assert.equal((await root.randomBytes(n)).byteLength, n);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add((await root.randomBytes(32)).toString('hex'));
    assert.equal(seen.size, 2000);
    const big = await root.randomBytes(1024 * 1024);
    assert.ok(new Set(big.subarray(0, 4096)).size > 200, 'bytes look random');
    for (const bad of [0, -1, 1.5, Number.NaN, 1024 * 1024 + 1]) {
      await assert.rejects(root.randomBytes(bad), InvalidInputError);
    }
  });

  it('seal() logs out and closes the session: every operation is SealedError until unseal(pin)', async () => {
    const material = osRandomBytes(32);
    const wrapped = await root.wrap(material, aad);
    await root.generateResidentKey('ecdsa-p256', 'seal-test-p256');
    await root.seal();
    assert.deepEqual(root.status(), { kind: 'pkcs11', initialized: true, sealed: true });
    await assert.rejects(root.wrap(material, aad), SealedError);
    await assert.rejects(root.unwrap(wrapped, aad), SealedError);
    await assert.rejects(root.randomBytes(32), SealedError);
    await assert.rejects(root.initialize(), SealedError);
    await assert.rejects(root.residentSign('seal-test-p256', Buffer.from('x')), SealedError);
    await assert.rejects(root.generateResidentKey('aes256', 'seal-test-aes'), SealedError);
    await root.seal(); // idempotent
    await root.unseal(token.pin);
    assert.deepEqual(root.status(), { kind: 'pkcs11', initialized: true, sealed: false });
    assert.deepEqual(await root.unwrap(wrapped, aad), material);
    await root.destroyResidentKey('seal-test-p256');
  });

  it('a session lost behind its back (HSM restart, C_CloseAllSessions) turns into SealedError', async () => {
    // A second pkcs11js instance on the same library shares its state (dlopen returns the same handle).
    const other = new pkcs11js.PKCS11();
    other.load(token.modulePath);
    const slot = other
      .C_GetSlotList(true)
      .find((s) => other.C_GetTokenInfo(s).label.trimEnd() === token.tokenLabel);
    assert.ok(slot !== undefined);
    other.C_CloseAllSessions(slot);
    await assert.rejects(root.wrap(osRandomBytes(32), aad), SealedError);
    assert.equal(root.status().sealed, true);
    await root.unseal(token.pin);
    assert.equal((await root.wrap(osRandomBytes(32), aad)).byteLength, 32 + PKCS11_WRAP_OVERHEAD);
  });

  it('serialises concurrent callers on the one session', async () => {
    const material = osRandomBytes(32);
    await root.generateResidentKey('ecdsa-p384', 'concurrent-p384');
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      jobs.push(root.wrap(material, aad).then((wrapped) => root.unwrap(wrapped, aad)));
      jobs.push(root.randomBytes(32));
      if (i % 10 === 0) jobs.push(root.residentSign('concurrent-p384', Buffer.from(`m${i}`)));
    }
    const results = await Promise.all(jobs);
    assert.equal(results.filter((r) => Buffer.isBuffer(r) && r.equals(material)).length, 100);
    await root.destroyResidentKey('concurrent-p384');
  });

  it('resident ECDSA P-256 / P-384: DER signatures that node:crypto verifies, SPKI public keys', async () => {
    for (const [type, curve, hash] of [
      ['ecdsa-p256', 'prime256v1', 'sha256'],
      ['ecdsa-p384', 'secp384r1', 'sha384'],
    ] as const) {
      const label = `signer-${type}`;
      await root.generateResidentKey(type, label);
      assert.equal(await root.residentKeyType(label), type);
      const publicKey = createPublicKey({
        key: await root.residentPublicKey(label),
        format: 'der',
        type: 'spki',
      });
      assert.equal(publicKey.asymmetricKeyDetails?.namedCurve, curve);
      const message = Buffer.from(`attestation for ${type}`);
      const signature = await root.residentSign(label, message);
      assert.equal(signature[0], 0x30, 'DER SEQUENCE');
      assert.ok(verify(hash, message, publicKey, signature), `${type} signature verifies`);
      assert.ok(verify(hash, message, { key: publicKey, dsaEncoding: 'der' }, signature));
      assert.ok(!verify(hash, Buffer.from('another message'), publicKey, signature));
      const second = await root.residentSign(label, message);
      assert.notDeepEqual(second, signature, 'fresh nonce per signature');
      assert.ok(verify(hash, message, publicKey, second));
      await assert.rejects(
        root.residentEncrypt(label, Buffer.from('x'), aad),
        isHsmError('hsm_wrong_key_type'),
      );
      await assert.rejects(root.residentHmac(label, Buffer.from('x')), isHsmError('hsm_wrong_key_type'));
    }
  });

  it('resident AES-256-GCM round trip, bound to aad; resident HMAC-SHA-256', async () => {
    await root.generateResidentKey('aes256', 'data-aes');
    const plaintext = Buffer.from('customer record 42');
    const ciphertext = await root.residentEncrypt('data-aes', plaintext, aad);
    assert.equal(ciphertext.byteLength, plaintext.byteLength + PKCS11_WRAP_OVERHEAD);
    assert.deepEqual(await root.residentDecrypt('data-aes', ciphertext, aad), plaintext);
    await assert.rejects(root.residentDecrypt('data-aes', ciphertext, Buffer.from('other')), DecryptionError);
    // Different keys: the root's wrapping is not the resident key's, and vice versa.
    await assert.rejects(root.unwrap(ciphertext, aad), DecryptionError);
    await assert.rejects(
      root.residentDecrypt('data-aes', await root.wrap(plaintext, aad), aad),
      DecryptionError,
    );
    await assert.rejects(root.residentSign('data-aes', plaintext), isHsmError('hsm_wrong_key_type'));
    await assert.rejects(root.residentPublicKey('data-aes'), isHsmError('hsm_wrong_key_type'));

    await root.generateResidentKey('hmac-sha256', 'data-mac');
    const tag = await root.residentHmac('data-mac', plaintext);
    assert.equal(tag.byteLength, 32);
    assert.deepEqual(await root.residentHmac('data-mac', plaintext), tag, 'deterministic');
    assert.notDeepEqual(await root.residentHmac('data-mac', Buffer.from('customer record 43')), tag);
  });

  it('refuses duplicate labels, the root key label and unknown types', async () => {
    await assert.rejects(root.generateResidentKey('aes256', 'data-aes'), isHsmError('hsm_key_exists'));
    await assert.rejects(root.generateResidentKey('ecdsa-p256', 'data-aes'), isHsmError('hsm_key_exists'));
    await assert.rejects(root.generateResidentKey('aes256', 'warden-root'), InvalidInputError);
    await assert.rejects(root.generateResidentKey('rsa-2048' as 'aes256', 'x'), InvalidInputError);
    await assert.rejects(root.generateResidentKey('aes256', ''), InvalidInputError);
    await assert.rejects(root.generateResidentKey('aes256', 'bad\nlabel'), InvalidInputError);
    assert.equal(await root.residentKeyType('nothing-here'), undefined);
    await assert.rejects(
      root.residentSign('nothing-here', Buffer.from('x')),
      isHsmError('hsm_key_not_found'),
    );
  });

  it('destroyResidentKey is crypto-shredding: the key is gone, a new key of the same label cannot decrypt', async () => {
    const plaintext = Buffer.from('to be shredded');
    const ciphertext = await root.residentEncrypt('data-aes', plaintext, aad);
    await root.destroyResidentKey('data-aes');
    assert.equal(await root.residentKeyType('data-aes'), undefined);
    await assert.rejects(root.residentDecrypt('data-aes', ciphertext, aad), isHsmError('hsm_key_not_found'));
    await assert.rejects(root.destroyResidentKey('data-aes'), isHsmError('hsm_key_not_found'));
    await root.generateResidentKey('aes256', 'data-aes');
    await assert.rejects(root.residentDecrypt('data-aes', ciphertext, aad), DecryptionError);
    // ECDSA: both halves go.
    await root.destroyResidentKey('signer-ecdsa-p256');
    await assert.rejects(root.residentPublicKey('signer-ecdsa-p256'), isHsmError('hsm_key_not_found'));
    await assert.rejects(root.residentSign('signer-ecdsa-p256', plaintext), isHsmError('hsm_key_not_found'));
  });

  it('another process sees the keys as sensitive and unextractable (direct pkcs11js, not this code)', async () => {
    const result = (await inChild(
      `
      import pkcs11js from 'pkcs11js';
      const p = new pkcs11js.PKCS11();
      p.load(process.env.P11_MODULE);
      p.C_Initialize();
      const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trimEnd() === process.env.P11_TOKEN);
      const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      p.C_Login(s, pkcs11js.CKU_USER, process.env.P11_PIN);
      const outcome = (f) => { try { f(); return 'READ'; } catch (e) { return e.message; } };
      const find = (label, cls) => {
        p.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_LABEL, value: label }, { type: pkcs11js.CKA_CLASS, value: cls }]);
        const found = p.C_FindObjects(s, 10);
        p.C_FindObjectsFinal(s);
        return found;
      };
      const kek = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 }, { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_WRAP, value: true },
      ]);
      const out = {};
      for (const [label, cls] of [['warden-root', pkcs11js.CKO_SECRET_KEY], ['data-aes', pkcs11js.CKO_SECRET_KEY],
          ['data-mac', pkcs11js.CKO_SECRET_KEY], ['signer-ecdsa-p384', pkcs11js.CKO_PRIVATE_KEY]]) {
        const objects = find(label, cls);
        out[label] = objects.map((h) => ({
          value: outcome(() => p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }])),
          wrapped: outcome(() => p.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, h, Buffer.alloc(4096))),
          makeExtractable: outcome(() => p.C_SetAttributeValue(s, h, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }])),
        }));
      }
      p.C_Logout(s);
      p.C_CloseSession(s);
      p.C_Finalize();
      console.log(JSON.stringify(out));
      `,
      { ...token.env, P11_MODULE: token.modulePath, P11_TOKEN: token.tokenLabel, P11_PIN: token.pin },
    )) as Record<string, Array<{ value: string; wrapped: string; makeExtractable: string }>>;
    for (const label of ['warden-root', 'data-aes', 'data-mac', 'signer-ecdsa-p384']) {
      const [object, ...others] = result[label] ?? [];
      assert.ok(object !== undefined && others.length === 0, `${label} is on the token once`);
      assert.equal(object.value, 'CKR_ATTRIBUTE_SENSITIVE', `${label}: CKA_VALUE cannot be read`);
      assert.equal(object.wrapped, 'CKR_KEY_UNEXTRACTABLE', `${label}: cannot be wrapped out`);
      assert.notEqual(object.makeExtractable, 'READ', `${label}: cannot be made extractable`);
    }
  });

  it('a new process, configured from the environment and a PIN file, finds the root key and unwraps', async () => {
    const material = osRandomBytes(32);
    const wrapped = await root.wrap(material, aad);
    const pinFile = path.join(token.dir, 'pin');
    await writeFile(pinFile, `${token.pin}\n`, { mode: 0o600 });
    const result = (await inChild(
      `
      const { Pkcs11RootOfTrust, pkcs11ConfigFromEnv } = await import(process.env.ROOT_MODULE_URL);
      const root = await Pkcs11RootOfTrust.open(await pkcs11ConfigFromEnv());
      const status = root.status();
      const material = await root.unwrap(Buffer.from(process.env.WRAPPED, 'hex'), Buffer.from(process.env.AAD, 'hex'));
      await root.close();
      console.log(JSON.stringify({ status, material: material.toString('hex') }));
      `,
      {
        ...token.env,
        ROOT_MODULE_URL,
        WARDEN_PKCS11_MODULE: token.modulePath,
        WARDEN_PKCS11_TOKEN_LABEL: token.tokenLabel,
        WARDEN_PKCS11_PIN_FILE: pinFile,
        WRAPPED: wrapped.toString('hex'),
        AAD: aad.toString('hex'),
      },
    )) as { status: unknown; material: string };
    assert.deepEqual(result.status, { kind: 'pkcs11', initialized: true, sealed: false });
    assert.equal(result.material, material.toString('hex'));
  });

  it('close() finalises; the module is reused by the next open in this process', async () => {
    const material = osRandomBytes(32);
    const wrapped = await root.wrap(material, aad);
    await root.close();
    await root.close(); // idempotent
    await assert.rejects(root.wrap(material, aad), isHsmError('hsm_closed'));
    await assert.rejects(root.unseal(token.pin), isHsmError('hsm_closed'));
    root = await Pkcs11RootOfTrust.open(config());
    assert.deepEqual(root.status(), { kind: 'pkcs11', initialized: true, sealed: false });
    assert.deepEqual(await root.unwrap(wrapped, aad), material);
  });

  it('measures wrap / unwrap of data-key-sized material and C_GenerateRandom(32) (reported, not asserted)', async (t) => {
    const dataKey = osRandomBytes(32);
    const wrapped = await root.wrap(dataKey, aad);
    const wrapOps = await opsPerSecond(() => root.wrap(dataKey, aad), 700);
    const unwrapOps = await opsPerSecond(() => root.unwrap(wrapped, aad), 700);
    const randomOps = await opsPerSecond(() => root.randomBytes(32), 500);
    // A data key as the KMS makes one: 32 bytes from the HSM, then wrapped by the root in the HSM.
    const dataKeyOps = await opsPerSecond(async () => root.wrap(await root.randomBytes(32), aad), 700);
    const report =
      `SoftHSM2: wrap(32 B) ${wrapOps} ops/s, unwrap ${unwrapOps} ops/s, ` +
      `C_GenerateRandom(32) ${randomOps} ops/s, data key (random + wrap) ${dataKeyOps} ops/s`;
    t.diagnostic(report);
    console.log(report);
    assert.ok(wrapOps > 0 && unwrapOps > 0 && randomOps > 0 && dataKeyOps > 0);
  });
});
