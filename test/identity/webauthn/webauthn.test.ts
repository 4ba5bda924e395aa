import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { JsonLinesAuditRecorder } from '../../../src/audit/index.ts';
import {
  MemoryChallengeStore,
  SqlWebAuthnCredentialStore,
  WebAuthnError,
  WebAuthnService,
} from '../../../src/identity/webauthn/index.ts';
import type {
  WebAuthnConfig,
  WebAuthnCredential,
  WebAuthnSchema,
} from '../../../src/identity/webauthn/index.ts';
import { openStore } from '../../../src/store/index.ts';
import type { Store } from '../../../src/store/index.ts';
import { startPostgres } from '../../support/postgres.ts';
import type { PostgresServer } from '../../support/postgres.ts';
import { SoftwareAuthenticator } from './authenticator.ts';

const RP_ID = 'warden.example.com';
const ORIGIN = 'https://warden.example.com';
const alice = { id: 'user-alice', name: 'alice' };

let dir: string;
let audit: JsonLinesAuditRecorder;
let postgres: PostgresServer;
const stores: { name: string; store: Store<WebAuthnSchema> }[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-webauthn-'));
  audit = await JsonLinesAuditRecorder.open(join(dir, 'audit.jsonl'));
  postgres = await startPostgres();
  stores.push({
    name: 'sqlite',
    store: await openStore<WebAuthnSchema>({ kind: 'sqlite', path: join(dir, 'w.db') }),
  });
  stores.push({
    name: 'postgres',
    store: await openStore<WebAuthnSchema>({ kind: 'postgres', url: postgres.url }),
  });
});

after(async () => {
  for (const { store } of stores) await store.close();
  await postgres.stop();
  await audit.close();
  await rm(dir, { recursive: true, force: true });
});

async function auditEvents(): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dir, 'audit.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof WebAuthnError, `expected WebAuthnError, got ${String(err)}`);
    return err.code;
  }
  return 'success';
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`WebAuthn ceremonies (${dialect})`, () => {
    let credentials: SqlWebAuthnCredentialStore;
    let service: WebAuthnService;
    let clock = Date.now();
    const make = (config: Partial<WebAuthnConfig> = {}) =>
      new WebAuthnService(
        { rpId: RP_ID, rpName: 'Warden', origins: [ORIGIN], ...config },
        { credentials, audit, now: () => clock, challenges: new MemoryChallengeStore({ now: () => clock }) },
      );

    before(async () => {
      const entry = stores.find((s) => s.name === dialect)!;
      credentials = await SqlWebAuthnCredentialStore.open(entry.store);
      service = make();
    });

    /** A user with one registered key. */
    async function enrolled(user = { id: `u-${Math.random()}`, name: 'someone' }) {
      const key = new SoftwareAuthenticator({ origin: ORIGIN, rpId: RP_ID });
      const options = await service.registrationOptions(user);
      await service.verifyRegistration(user, key.register(options.challenge));
      return { user, key };
    }

    it('registers a key and authenticates with it', async () => {
      const key = new SoftwareAuthenticator({ origin: ORIGIN, rpId: RP_ID });
      const options = await service.registrationOptions(alice);
      assert.equal(options.rp.id, RP_ID);
      assert.equal(options.attestation, 'none');
      assert.equal(options.authenticatorSelection?.userVerification, 'preferred');
      assert.deepEqual(options.excludeCredentials, []);
      assert.equal(Buffer.from(options.challenge, 'base64url').length, 32);
      assert.notEqual(options.user.id, Buffer.from(alice.id).toString('base64url'));
      const stored = await service.verifyRegistration(alice, key.register(options.challenge), {
        name: 'YubiKey',
        context: { requestId: 'reg-1' },
      });
      assert.equal(stored.id, key.id);
      assert.equal(stored.userId, alice.id);
      assert.equal(stored.attestationFormat, 'none');
      assert.equal(stored.name, 'YubiKey');
      assert.deepEqual(stored.transports, ['usb']);
      const again = await service.registrationOptions(alice);
      assert.deepEqual(
        again.excludeCredentials?.map((c) => c.id),
        [key.id],
      );

      clock += 1000;
      const auth = await service.authenticationOptions(alice.id);
      assert.deepEqual(
        auth.allowCredentials?.map((c) => c.id),
        [key.id],
      );
      const result = await service.verifyAuthentication(alice.id, key.authenticate(auth.challenge), {
        requestId: 'auth-1',
      });
      assert.deepEqual(result, {
        userId: alice.id,
        credentialId: key.id,
        userVerified: false,
        amr: ['hwk'],
        mfaAt: clock,
      });
      const [saved] = await service.listCredentials(alice.id);
      assert.equal(saved!.counter, 1);
      assert.equal(saved!.lastUsedAt, clock);
      const events = await auditEvents();
      assert.equal(events.find((e) => e['requestId'] === 'reg-1')?.['outcome'], 'success');
      assert.equal(
        events.find((e) => e['requestId'] === 'auth-1')?.['action'],
        'identity.webauthn.authenticate',
      );
    });

    it('refuses a response made for another origin, and the challenge is spent', async () => {
      const { user, key } = await enrolled();
      const { challenge } = await service.authenticationOptions(user.id);
      assert.equal(
        await code(
          service.verifyAuthentication(
            user.id,
            key.authenticate(challenge, { origin: 'https://evil.example.com' }),
          ),
        ),
        'webauthn_origin_mismatch',
      );
      assert.equal(
        await code(service.verifyAuthentication(user.id, key.authenticate(challenge))),
        'webauthn_challenge_invalid',
      );
      const reg = new SoftwareAuthenticator({ origin: 'https://warden.example.com.evil.test', rpId: RP_ID });
      const options = await service.registrationOptions(user);
      assert.equal(
        await code(service.verifyRegistration(user, reg.register(options.challenge))),
        'webauthn_origin_mismatch',
      );
    });

    it('refuses a response made for another RP id', async () => {
      const { user, key } = await enrolled();
      const { challenge } = await service.authenticationOptions(user.id);
      assert.equal(
        await code(
          service.verifyAuthentication(user.id, key.authenticate(challenge, { rpId: 'example.com' })),
        ),
        'webauthn_rpid_mismatch',
      );
      const other = new SoftwareAuthenticator({ origin: ORIGIN, rpId: 'evil.example' });
      const options = await service.registrationOptions(user);
      assert.equal(
        await code(service.verifyRegistration(user, other.register(options.challenge))),
        'webauthn_rpid_mismatch',
      );
    });

    it('refuses replayed, foreign, cross-ceremony and expired challenges', async () => {
      const { user, key } = await enrolled();
      const { challenge } = await service.authenticationOptions(user.id);
      const response = key.authenticate(challenge);
      assert.equal(await code(service.verifyAuthentication(user.id, response)), 'success');
      assert.equal(await code(service.verifyAuthentication(user.id, response)), 'webauthn_challenge_invalid');

      const mine = await service.authenticationOptions(user.id);
      const { user: other } = await enrolled();
      assert.equal(
        await code(service.verifyAuthentication(other.id, key.authenticate(mine.challenge))),
        'webauthn_challenge_invalid',
      );
      const registration = await service.registrationOptions(user);
      assert.equal(
        await code(service.verifyAuthentication(user.id, key.authenticate(registration.challenge))),
        'webauthn_challenge_invalid',
      );
      assert.equal(
        await code(service.verifyAuthentication(user.id, key.authenticate('A'.repeat(43)))),
        'webauthn_challenge_invalid',
      );
      const late = await service.authenticationOptions(user.id);
      clock += 301_000;
      assert.equal(
        await code(service.verifyAuthentication(user.id, key.authenticate(late.challenge))),
        'webauthn_challenge_invalid',
      );
    });

    it('detects a counter regression after the signature checks out, and suspends the key', async () => {
      const { user, key } = await enrolled();
      for (let i = 0; i < 3; i++) {
        const { challenge } = await service.authenticationOptions(user.id);
        await service.verifyAuthentication(user.id, key.authenticate(challenge));
      }
      // A forged response with a low counter and no valid signature must not get the key suspended.
      const forgedFor = await service.authenticationOptions(user.id);
      const forged = key.authenticate(forgedFor.challenge, { counter: 1 });
      forged.response.signature = key.authenticate(forgedFor.challenge, { counter: 2 }).response.signature;
      assert.equal(await code(service.verifyAuthentication(user.id, forged)), 'webauthn_verification_failed');
      assert.equal((await service.listCredentials(user.id))[0]?.suspendedAt, null);

      const { challenge } = await service.authenticationOptions(user.id);
      assert.equal(
        await code(
          service.verifyAuthentication(user.id, key.authenticate(challenge, { counter: 2 }), {
            requestId: 'clone',
          }),
        ),
        'webauthn_counter_regression',
      );
      const [suspended] = await service.listCredentials(user.id);
      assert.notEqual(suspended?.suspendedAt, null);
      const event = (await auditEvents()).find((e) => e['requestId'] === 'clone')!;
      assert.equal(event['outcome'], 'denied');
      assert.equal((event['details'] as Record<string, unknown>)['suspected'], 'cloned-authenticator');
      assert.equal(await code(service.authenticationOptions(user.id)), 'webauthn_no_credentials');
      // Even with a good counter, a suspended key is refused.
      const second = new SoftwareAuthenticator({ origin: ORIGIN, rpId: RP_ID });
      const reg = await service.registrationOptions(user);
      await service.verifyRegistration(user, second.register(reg.challenge));
      const next = await service.authenticationOptions(user.id);
      assert.equal(
        await code(service.verifyAuthentication(user.id, key.authenticate(next.challenge, { counter: 100 }))),
        'webauthn_credential_suspended',
      );
    });

    it('accepts authenticators without a counter (always 0)', async () => {
      const { user, key } = await enrolled();
      for (let i = 0; i < 2; i++) {
        const { challenge } = await service.authenticationOptions(user.id);
        assert.equal(
          await code(service.verifyAuthentication(user.id, key.authenticate(challenge, { counter: 0 }))),
          'success',
        );
      }
    });

    it('refuses unknown credentials and other users’ credentials', async () => {
      const { user } = await enrolled();
      const stranger = new SoftwareAuthenticator({ origin: ORIGIN, rpId: RP_ID });
      let { challenge } = await service.authenticationOptions(user.id);
      assert.equal(
        await code(service.verifyAuthentication(user.id, stranger.authenticate(challenge))),
        'webauthn_credential_unknown',
      );
      const { key: othersKey } = await enrolled();
      ({ challenge } = await service.authenticationOptions(user.id));
      assert.equal(
        await code(service.verifyAuthentication(user.id, othersKey.authenticate(challenge))),
        'webauthn_credential_unknown',
      );
    });

    it('refuses a tampered signature, authenticator data or client data', async () => {
      const { user, key } = await enrolled();
      const flip = (b64: string, index: number) => {
        const bytes = Buffer.from(b64, 'base64url');
        bytes[index % bytes.length]! ^= 0x01;
        return bytes.toString('base64url');
      };
      for (const field of ['signature', 'authenticatorData'] as const) {
        const { challenge } = await service.authenticationOptions(user.id);
        const response = key.authenticate(challenge);
        response.response[field] = flip(response.response[field], field === 'signature' ? 20 : 36);
        assert.equal(
          await code(service.verifyAuthentication(user.id, response)),
          'webauthn_verification_failed',
          field,
        );
      }
      const { challenge } = await service.authenticationOptions(user.id);
      const response = key.authenticate(challenge);
      const clientData = JSON.parse(
        Buffer.from(response.response.clientDataJSON, 'base64url').toString(),
      ) as object;
      response.response.clientDataJSON = Buffer.from(
        JSON.stringify({ ...clientData, crossOrigin: true }),
      ).toString('base64url');
      assert.notEqual(await code(service.verifyAuthentication(user.id, response)), 'success');
    });

    it('enforces user verification when required', async () => {
      const strict = make({ userVerification: 'required' });
      const user = { id: `u-uv-${dialect}`, name: 'uv' };
      const key = new SoftwareAuthenticator({ origin: ORIGIN, rpId: RP_ID });
      let options = await strict.registrationOptions(user);
      assert.equal(options.authenticatorSelection?.userVerification, 'required');
      assert.equal(
        await code(strict.verifyRegistration(user, key.register(options.challenge))),
        'webauthn_verification_failed',
      );
      key.userVerifying = true;
      options = await strict.registrationOptions(user);
      await strict.verifyRegistration(user, key.register(options.challenge));
      key.userVerifying = false;
      let auth = await strict.authenticationOptions(user.id);
      assert.equal(
        await code(strict.verifyAuthentication(user.id, key.authenticate(auth.challenge))),
        'webauthn_verification_failed',
      );
      key.userVerifying = true;
      auth = await strict.authenticationOptions(user.id);
      const result = await strict.verifyAuthentication(user.id, key.authenticate(auth.challenge));
      assert.deepEqual(result.amr, ['hwk', 'user']);
      assert.equal(result.userVerified, true);
    });

    it('keeps credential ids unique across users, and removes keys', async () => {
      const { user, key } = await enrolled();
      const other = { id: `u-dup-${dialect}`, name: 'dup' };
      const options = await service.registrationOptions(other);
      assert.equal(
        await code(service.verifyRegistration(other, key.register(options.challenge))),
        'webauthn_credential_exists',
      );
      assert.equal(await service.removeCredential(other.id, key.id), false);
      assert.equal(await service.removeCredential(user.id, key.id), true);
      assert.deepEqual(await service.listCredentials(user.id), []);
    });

    it('offers direct attestation when configured', async () => {
      const direct = make({ attestation: 'direct' });
      const options = await direct.registrationOptions({ id: `u-direct-${dialect}`, name: 'd' });
      assert.equal(options.attestation, 'direct');
    });

    it('answers malformed responses with a typed error, never a success (property)', async () => {
      const { user, key } = await enrolled();
      const fields = [
        'id',
        'rawId',
        'type',
        'response',
        'clientDataJSON',
        'authenticatorData',
        'signature',
        'userHandle',
      ];
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...fields),
          fc.oneof(
            fc.anything(),
            fc.base64String({ maxLength: 200 }).map((s) => s.replace(/=+$/, '')),
          ),
          async (field, value) => {
            // An absent user handle is valid (it is optional and unsigned); any other value is not the user's.
            fc.pre(!(field === 'userHandle' && (value === undefined || value === null || value === '')));
            const { challenge } = await service.authenticationOptions(user.id);
            const response = key.authenticate(challenge) as unknown as Record<string, unknown>;
            const inner = response['response'] as Record<string, unknown>;
            if (field in inner || field === 'userHandle') inner[field] = value;
            else response[field] = value;
            assert.notEqual(await code(service.verifyAuthentication(user.id, response)), 'success');
          },
        ),
        { numRuns: 150 },
      );
      await fc.assert(
        fc.asyncProperty(fc.anything(), async (value) => {
          assert.notEqual(await code(service.verifyAuthentication(user.id, value)), 'success');
          assert.notEqual(await code(service.verifyRegistration(user, value)), 'success');
        }),
        { numRuns: 150 },
      );
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), async (bytes) => {
          const options = await service.registrationOptions(user);
          const response = key.register(options.challenge);
          response.response.attestationObject = Buffer.from(bytes).toString('base64url') || 'AA';
          assert.notEqual(await code(service.verifyRegistration(user, response)), 'success');
        }),
        { numRuns: 100 },
      );
      // Still usable: nothing above got the key suspended or advanced its counter out of reach.
      const { challenge } = await service.authenticationOptions(user.id);
      assert.equal(await code(service.verifyAuthentication(user.id, key.authenticate(challenge))), 'success');
    });
  });
}

describe('WebAuthn configuration and store', () => {
  it('refuses insecure or inconsistent settings', () => {
    const options = { credentials: undefined as never, audit: undefined as never };
    const base: WebAuthnConfig = { rpId: RP_ID, rpName: 'W', origins: [ORIGIN] };
    assert.ok(new WebAuthnService(base, options));
    assert.ok(
      new WebAuthnService({ rpId: 'localhost', rpName: 'W', origins: ['http://localhost:5173'] }, options),
    );
    for (const bad of [
      { origins: [] },
      { origins: ['http://warden.example.com'] },
      { origins: ['https://evil.example'] },
      { origins: ['https://warden.example.com/path'] },
      { rpId: 'https://warden.example.com' },
      { challengeTtlMs: 1 },
    ]) {
      assert.throws(() => new WebAuthnService({ ...base, ...bad }, options), {
        code: 'webauthn_config_invalid',
      });
    }
  });

  for (const dialect of ['sqlite', 'postgres'] as const) {
    it(`stores credentials with a compare-and-set counter (${dialect})`, async () => {
      const store = await SqlWebAuthnCredentialStore.open(stores.find((s) => s.name === dialect)!.store);
      const credential: WebAuthnCredential = {
        id: `cas-${dialect}`,
        userId: 'cas-user',
        publicKey: Uint8Array.from([1, 2, 3]),
        counter: 5,
        transports: ['usb', 'nfc'],
        aaguid: '00000000-0000-0000-0000-000000000000',
        attestationFormat: 'none',
        deviceType: 'singleDevice',
        backedUp: false,
        name: 'key',
        createdAt: 1,
        lastUsedAt: null,
        suspendedAt: null,
      };
      await store.add(credential);
      assert.deepEqual(await store.get(credential.id), credential);
      await assert.rejects(store.add(credential), { code: 'webauthn_credential_exists' });
      assert.equal(await store.recordUse(credential.id, 4, 9, 2), false);
      assert.equal(await store.recordUse(credential.id, 5, 9, 2), true);
      assert.equal((await store.get(credential.id))?.counter, 9);
      await store.suspend(credential.id, 3);
      assert.equal(await store.recordUse(credential.id, 9, 10, 4), false);
      assert.equal((await store.get(credential.id))?.suspendedAt, 3);
      assert.equal(await store.remove('someone-else', credential.id), false);
      assert.equal(await store.remove('cas-user', credential.id), true);
      assert.equal(await store.get(credential.id), undefined);
    });
  }
});
