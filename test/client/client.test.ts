import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { KmsClient, KmsClientError, WardenHttp, buildImportBlob } from '../../src/client/index.ts';
import {
  RsaOaepPrivateKey,
  WrappingKey,
  aesKeyUnwrapPadded,
  rsaOaepDecrypt,
} from '../../src/crypto/index.ts';
import { BuiltInRoleAuthorizer } from '../../src/kms/authz.ts';
import { KmsService } from '../../src/kms/service.ts';
import { bootstrapTokenAuthenticator, createKmsServer } from '../../src/server/index.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';
import { MemoryAudit, TestOperator, TestRoot, startHarness } from '../server/fixture.ts';
import type { Harness } from '../server/fixture.ts';

let h: Harness;

before(async () => {
  h = await startHarness();
});

after(async () => {
  await h.close();
});

async function clientError(promise: Promise<unknown>): Promise<KmsClientError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof KmsClientError, String(err));
    return err;
  }
  assert.fail('expected a KmsClientError');
}

describe('KmsClient', () => {
  it('keeps the token out of inspection, serialisation and errors', async () => {
    const client = new KmsClient({ address: h.address, token: h.token, ca: h.ca });
    try {
      assert.equal(inspect(client, { showHidden: true, depth: 5 }).includes(h.token), false);
      assert.equal(JSON.stringify(client).includes(h.token), false);
      const err = await clientError(client.getKey('missing'));
      assert.deepEqual([err.name, err.code, err.status], ['KmsClientError', 'key_not_found', 404]);
      assert.equal(`${err.stack ?? ''}${inspect(err)}`.includes(h.token), false);
    } finally {
      await client.close();
    }
  });

  it('reports transport failures with status 0 and never the token', async () => {
    const untrusted = new KmsClient({ address: h.address, token: h.token });
    const tlsError = await clientError(untrusted.listKeys());
    assert.equal(tlsError.code, 'tls_error');
    assert.equal(tlsError.status, 0);
    assert.match(tlsError.message, /WARDEN_CACERT/);
    await untrusted.close();

    const refused = new KmsClient({ address: 'https://127.0.0.1:1', token: h.token, timeoutMs: 2000 });
    const connectionError = await clientError(refused.listKeys());
    assert.deepEqual([connectionError.code, connectionError.status], ['connection_failed', 0]);
    assert.match(connectionError.message, /nothing is listening there \(ECONNREFUSED\)/);
    assert.equal(connectionError.message.includes(h.token), false);
    await refused.close();

    const wrongHost = new KmsClient({
      address: h.address.replace('127.0.0.1', 'localhost'),
      token: h.token,
      ca: h.ca,
    });
    assert.equal((await wrongHost.listKeys()).length >= 0, true);
    await wrongHost.close();
  });

  it('validates its options', () => {
    const invalid = (options: ConstructorParameters<typeof KmsClient>[0]) => {
      try {
        new KmsClient(options);
      } catch (err) {
        assert.ok(err instanceof KmsClientError);
        assert.equal(err.code, 'invalid_options');
        assert.equal(err.message.includes('secret-token'), false);
        return;
      }
      assert.fail('accepted');
    };
    invalid({ address: 'not a url' });
    invalid({ address: 'ftp://127.0.0.1' });
    invalid({ address: 'http://192.0.2.1:8200', token: 'secret-token-abc' });
    invalid({ address: h.address, token: 'secret-token\r\nx-injected: 1' });
    invalid({ address: h.address, token: 'secret-token with space' });
  });

  it('reports non-JSON responses as invalid_response', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const client = new KmsClient({ address: `http://127.0.0.1:${port}`, token: 'tok-0123456789abcdef' });
    try {
      const err = await clientError(client.health());
      assert.deepEqual([err.code, err.status], ['invalid_response', 502]);
    } finally {
      await client.close();
      server.close();
    }
  });

  it('streams a download larger than the 256 MiB cap on JSON responses (a big audit export)', async () => {
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const megabytes = 257;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      let sent = 0;
      const more = (): void => {
        while (sent < megabytes) {
          sent += 1;
          if (!res.write(chunk)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const http2 = new WardenHttp({ address: `http://127.0.0.1:${port}`, token: 'tok-0123456789abcdef' });
    try {
      let bytes = 0;
      for await (const piece of await http2.stream('GET', '/v1/audit/export'))
        bytes += (piece as Buffer).length;
      assert.equal(bytes, megabytes << 20);
    } finally {
      await http2.close();
      server.close();
    }
  });

  it('talks plain HTTP to a loopback server without TLS', async () => {
    const root = new TestRoot();
    const kms = new KmsService({
      repository: new MemoryKmsRepository(),
      root,
      audit: new MemoryAudit(),
      authorizer: new BuiltInRoleAuthorizer(),
    });
    const token = randomBytes(24).toString('hex');
    const app = await createKmsServer({
      kms,
      operator: new TestOperator(root),
      authenticate: bootstrapTokenAuthenticator(token),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const client = new KmsClient({ address: `http://127.0.0.1:${port}`, token });
    try {
      await client.createKey({ name: 'k', type: 'aes256-gcm' });
      assert.deepEqual(await client.decrypt(await client.encrypt('k', Buffer.from('x'))), Buffer.from('x'));
    } finally {
      await client.close();
      await app.close();
    }
  });
});

describe('buildImportBlob', () => {
  it('wraps an ephemeral AES key with RSA-OAEP-SHA256 and the material with AES-KWP', async () => {
    const rsa = await RsaOaepPrivateKey.generate(4096);
    const material = randomBytes(32);
    const blob = buildImportBlob(rsa.publicKey().toPem(), material);
    assert.equal(blob.length, 512 + 40);
    const ephemeral = rsaOaepDecrypt(rsa, blob.subarray(0, 512));
    assert.equal(ephemeral.length, 32);
    assert.deepEqual(aesKeyUnwrapPadded(WrappingKey.fromBytes(ephemeral), blob.subarray(512)), material);
    assert.notDeepEqual(buildImportBlob(rsa.publicKey().toPem(), material), blob);

    const rsa3072 = await RsaOaepPrivateKey.generate(3072);
    assert.throws(() => buildImportBlob(rsa3072.publicKey().toPem(), material), KmsClientError);
    assert.throws(() => buildImportBlob('not a key', material), KmsClientError);
  });
});
