// @peculiar/x509 needs a Reflect metadata API loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { AuditEvent, AuditRecorder } from '../../src/audit/index.ts';
import { AeadKey, open, seal } from '../../src/crypto/index.ts';
import { BuiltInRoleAuthorizer } from '../../src/kms/authz.ts';
import { InvalidRequestError, KmsError } from '../../src/kms/errors.ts';
import { SealedError } from '../../src/kms/root/types.ts';
import type { RootOfTrust, RootStatus } from '../../src/kms/root/types.ts';
import { KmsService } from '../../src/kms/service.ts';
import type { Principal } from '../../src/kms/types.ts';
import { bootstrapTokenAuthenticator, createKmsServer, firstOf } from '../../src/server/index.ts';
import type { OperatorControl } from '../../src/server/index.ts';
import { MemoryKmsRepository } from '../support/memory-kms-repository.ts';

/** A root of trust for tests: one random AES-256-GCM key, sealable. */
export class TestRoot implements RootOfTrust {
  readonly kind = 'software';
  #key: AeadKey | undefined = AeadKey.generate();
  initialized = true;

  status(): RootStatus {
    return { kind: 'software', initialized: this.initialized, sealed: this.#key === undefined };
  }

  #live(): AeadKey {
    if (this.#key === undefined) throw new SealedError();
    return this.#key;
  }

  wrap(material: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return Promise.resolve().then(() => seal(this.#live(), material, aad));
  }

  unwrap(wrapped: Uint8Array, aad: Uint8Array): Promise<Buffer> {
    return Promise.resolve().then(() => open(this.#live(), wrapped, aad));
  }

  randomBytes(length: number): Promise<Buffer> {
    return Promise.resolve().then(() => {
      this.#live();
      return randomBytes(length);
    });
  }

  unsealWith(key: AeadKey): void {
    this.#key = key;
  }

  seal(): Promise<void> {
    this.#key = undefined;
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.seal();
  }
}

/** Operator control over `TestRoot`: shares are opaque strings; `threshold` distinct ones unseal. */
export class TestOperator implements OperatorControl {
  readonly #root: TestRoot;
  #key: AeadKey;
  #shares: string[] = [];
  #threshold = 0;
  #given = new Set<string>();

  constructor(root: TestRoot) {
    this.#root = root;
    this.#key = AeadKey.generate();
    root.unsealWith(this.#key);
  }

  status(): RootStatus {
    const base = this.#root.status();
    return this.#threshold === 0
      ? base
      : { ...base, threshold: this.#threshold, shares: this.#shares.length, progress: this.#given.size };
  }

  async init(request: { shares: number; threshold: number }): Promise<{ shares: string[] }> {
    if (this.#shares.length > 0) throw new KmsError('already_initialized', 409, 'already initialised');
    this.#shares = Array.from(
      { length: request.shares },
      (_, i) => `test-share:${i + 1}:${randomBytes(8).toString('hex')}`,
    );
    this.#threshold = request.threshold;
    await this.#root.seal();
    return { shares: [...this.#shares] };
  }

  unseal(share: string): Promise<RootStatus> {
    if (!this.#root.status().sealed) return Promise.resolve(this.status());
    if (!this.#shares.includes(share))
      return Promise.reject(new InvalidRequestError('not a share of this root'));
    this.#given.add(share);
    if (this.#given.size >= this.#threshold) {
      this.#root.unsealWith(this.#key);
      this.#given.clear();
    }
    return Promise.resolve(this.status());
  }

  async seal(): Promise<RootStatus> {
    await this.#root.seal();
    return this.status();
  }
}

export class MemoryAudit implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  failing = false;
  record(event: AuditEvent): Promise<void> {
    if (this.failing) return Promise.reject(new Error('audit store down'));
    this.events.push(event);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, as PEM. */
export async function selfSignedCertificate(): Promise<{ key: string; cert: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString('hex'),
    name: 'CN=localhost',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 24 * 3600_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.SubjectAlternativeNameExtension([
        { type: 'ip', value: '127.0.0.1' },
        { type: 'dns', value: 'localhost' },
      ]),
    ],
  });
  const key = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { key, cert: cert.toString('pem') };
}

/** Collects the server's pino output. */
export class LogCapture extends Writable {
  readonly chunks: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.chunks.push(chunk.toString('utf8'));
    callback();
  }
  text(): string {
    return this.chunks.join('');
  }
}

export const USER_PRINCIPAL: Principal = { id: 'user:alice', roles: ['key-user'], authMethod: 'test-token' };

export interface Harness {
  readonly app: FastifyInstance;
  readonly address: string;
  readonly port: number;
  readonly token: string;
  /** A token for a `key-user` principal (cannot administer keys or seal). */
  readonly userToken: string;
  readonly ca: string;
  readonly kms: KmsService;
  readonly root: TestRoot;
  readonly operator: TestOperator;
  readonly audit: MemoryAudit;
  readonly logs: LogCapture;
  close(): Promise<void>;
}

let certificate: Promise<{ key: string; cert: string }> | undefined;

/** A real KmsService behind the real HTTP server, over TLS 1.3 on an ephemeral port, with logs captured. */
export async function startHarness(): Promise<Harness> {
  certificate ??= selfSignedCertificate();
  const tls = await certificate;
  const token = randomBytes(32).toString('base64url');
  const userToken = randomBytes(32).toString('base64url');
  const root = new TestRoot();
  const operator = new TestOperator(root);
  const audit = new MemoryAudit();
  const kms = new KmsService({
    repository: new MemoryKmsRepository(),
    root,
    audit,
    authorizer: new BuiltInRoleAuthorizer(),
  });
  const admin = bootstrapTokenAuthenticator(token);
  const user = bootstrapTokenAuthenticator(userToken, USER_PRINCIPAL);
  const logs = new LogCapture();
  const app = await createKmsServer({
    kms,
    operator,
    authenticate: firstOf(admin, user),
    tls,
    logger: { level: 'trace', stream: logs },
    audit,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  return {
    app,
    address: `https://127.0.0.1:${port}`,
    port,
    token,
    userToken,
    ca: tls.cert,
    kms,
    root,
    operator,
    audit,
    logs,
    close: () => app.close(),
  };
}
