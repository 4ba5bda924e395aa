import 'reflect-metadata';
import { createPublicKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { AuditRecorder } from '../../audit/index.ts';
import { ecdsaDerToP1363, ecdsaP1363ToDer } from '../../crypto/index.ts';
import { KeyNotFoundError, KmsError } from '../../kms/index.ts';
import type { KmsService, Principal } from '../../kms/index.ts';
import { CaError } from './errors.ts';
import { checkTrustDomain, clientIdentityUri, parseClientIdentity } from './identity.ts';
import type { CertificateProfile, CertificateRecord, SqlCaRepository } from './repository.ts';
import {
  OID,
  caCurveOf,
  checkDnsName,
  checkIpAddress,
  checkLeafPublicKey,
  distinguishedName,
  isSerialHex,
  keyIdentifier,
  pemBlocks,
  publicKeyFromCsr,
  randomSerial,
  serialHex,
  signCertificate,
  signCrl,
  toPem,
} from './x509.ts';
import type { CaCurve, LeafKeyInfo, RevocationReason, TbsSigner } from './x509.ts';

export const MINUTE_MS = 60 * 1000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** Lifetime bounds per profile. `maxMs` is configurable up to the hard maximum, never beyond. */
export interface LifetimeBounds {
  readonly defaultMs: number;
  readonly maxMs: number;
}
export const SERVER_LIFETIME: LifetimeBounds = { defaultMs: 24 * HOUR_MS, maxMs: 72 * HOUR_MS };
export const CLIENT_LIFETIME: LifetimeBounds = { defaultMs: HOUR_MS, maxMs: 24 * HOUR_MS };
export const HARD_MAX_LIFETIME_MS: Readonly<Record<'server' | 'client', number>> = {
  server: 7 * DAY_MS,
  client: 24 * HOUR_MS,
};
export const MIN_LIFETIME_MS = 5 * MINUTE_MS;
export const DEFAULT_CA_LIFETIME_MS = 365 * DAY_MS;
export const DEFAULT_CRL_VALIDITY_MS = HOUR_MS;
/** Certificates start this much before issuance, so a peer whose clock is slightly behind accepts them. */
const BACKDATE_MS = MINUTE_MS;
const MAX_DNS_NAMES = 32;
const MAX_IP_ADDRESSES = 16;
/** A rotation racing an issuance makes the signature come from another key version; retry that many times. */
const SIGN_ATTEMPTS = 3;

/**
 * The principal the CA signs as. KMS authorisation needs `crypto.sign` and `keys.read` on the CA key: the
 * `key-user` role grants them (a Cedar deployment may narrow it to the CA key with a policy on `system:ca`).
 */
export const CA_PRINCIPAL: Principal = {
  id: 'system:ca',
  roles: ['key-user'],
  authMethod: 'internal',
  kind: 'service',
};

export interface CertificateAuthorityOptions {
  readonly kms: KmsService;
  /** Name of the KMS key behind the CA (ecdsa-p256 or ecdsa-p384). */
  readonly keyName: string;
  readonly repository: SqlCaRepository;
  readonly audit: AuditRecorder;
  readonly principal?: Principal;
  /** Common name of the CA certificates, suffixed with the KMS key version. Default `Warden Internal CA`. */
  readonly name?: string;
  /** SPIFFE trust domain of client identities. Default `warden`. */
  readonly trustDomain?: string;
  readonly caLifetimeMs?: number;
  readonly server?: Partial<LifetimeBounds>;
  readonly client?: Partial<LifetimeBounds>;
  /**
   * Domains under which server certificates may be issued (`warden.internal` allows it and every name below it).
   * Absent: any DNS name.
   */
  readonly allowedDnsSuffixes?: readonly string[];
  /** Whether server certificates may name IP addresses. Default true. */
  readonly allowIpAddresses?: boolean;
  readonly crlValidityMs?: number;
  readonly now?: () => number;
}

/** The CA certificate leaves are issued under. */
interface Issuer {
  readonly record: CertificateRecord;
  readonly name: x509.Name;
  readonly keyId: Buffer;
  readonly curve: CaCurve;
  readonly publicKey: KeyObject;
  readonly pem: string;
}

export interface CaCertificateInfo {
  readonly serial: string;
  readonly subject: string;
  readonly keyVersion: number;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly certificate: string;
}

export interface TrustBundle {
  /** Every CA certificate not yet expired, newest first, as one PEM text. */
  readonly pem: string;
  readonly certificates: readonly CaCertificateInfo[];
}

/** The public key to certify: a PKCS#10 request (PEM or DER), or a bare SPKI (PEM `PUBLIC KEY` or DER). */
export type KeySource =
  | { readonly csr: string | Uint8Array; readonly publicKey?: undefined }
  | { readonly publicKey: string | Uint8Array; readonly csr?: undefined };

export type IssueRequest = KeySource &
  (
    | {
        readonly profile: 'server';
        readonly dnsNames?: readonly string[];
        readonly ipAddresses?: readonly string[];
        readonly lifetimeMs?: number;
      }
    | {
        readonly profile: 'client';
        /** The principal the certificate authenticates: `service:<name>` or `user:<name>`. */
        readonly identity: string;
        readonly lifetimeMs?: number;
      }
  );

export interface IssuedCertificate {
  readonly serial: string;
  readonly profile: 'server' | 'client';
  /** Client: the principal id; server: `dns:<name>,ip:<address>,…`. */
  readonly identity: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The leaf, PEM. */
  readonly certificate: string;
  /** Leaf then issuing CA, PEM (what a TLS endpoint presents). */
  readonly chain: string;
  readonly caCertificate: string;
}

export interface Crl {
  readonly der: Buffer;
  readonly pem: string;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly entries: number;
}

function boundsOf(profile: 'server' | 'client', given: Partial<LifetimeBounds> | undefined): LifetimeBounds {
  const base = profile === 'server' ? SERVER_LIFETIME : CLIENT_LIFETIME;
  const bounds = { defaultMs: given?.defaultMs ?? base.defaultMs, maxMs: given?.maxMs ?? base.maxMs };
  const hard = HARD_MAX_LIFETIME_MS[profile];
  if (
    !Number.isInteger(bounds.maxMs) ||
    !Number.isInteger(bounds.defaultMs) ||
    bounds.maxMs > hard ||
    bounds.defaultMs < MIN_LIFETIME_MS ||
    bounds.defaultMs > bounds.maxMs
  ) {
    throw new CaError(
      'invalid_request',
      `${profile} lifetimes must satisfy ${MIN_LIFETIME_MS} <= default <= max <= ${hard} ms`,
    );
  }
  return bounds;
}

/** KMS ECDSA signatures are DER today; an HSM-backed signer may hand back P1363 (r || s). X.509 wants DER. */
function derSignature(signature: Uint8Array, curve: CaCurve): Buffer {
  try {
    ecdsaDerToP1363(signature, curve);
    return Buffer.from(signature);
  } catch {
    return ecdsaP1363ToDer(signature, curve);
  }
}

function publicKeyInput(input: string | Uint8Array): Uint8Array {
  if (typeof input !== 'string') return input;
  const blocks = pemBlocks(input, ['PUBLIC KEY']);
  if (blocks.length !== 1)
    throw new CaError('invalid_public_key', 'expected exactly one PEM PUBLIC KEY block');
  return blocks[0] as Buffer;
}

function infoOf(record: CertificateRecord): CaCertificateInfo {
  return {
    serial: record.serial,
    subject: record.subject,
    keyVersion: record.keyVersion,
    notBefore: new Date(record.notBefore),
    notAfter: new Date(record.notAfter),
    certificate: toPem(record.der, 'CERTIFICATE'),
  };
}

function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

/**
 * Warden's internal certificate authority. The CA key is a KMS key: every TBSCertificate and TBSCertList is
 * signed through `KmsService.sign`, so the private key never leaves the KMS (and an HSM root changes nothing
 * here). Each KMS key version gets its own self-signed CA certificate (`CN=<name> v<version>`); rotating the key
 * therefore yields a new CA certificate, and the trust bundle is every CA certificate not yet expired.
 */
export class CertificateAuthority {
  readonly #kms: KmsService;
  readonly #keyName: string;
  readonly #repo: SqlCaRepository;
  readonly #audit: AuditRecorder;
  readonly #principal: Principal;
  readonly #name: string;
  readonly #trustDomain: string;
  readonly #caLifetimeMs: number;
  readonly #lifetimes: Readonly<Record<'server' | 'client', LifetimeBounds>>;
  readonly #renewBeforeMs: number;
  readonly #dnsSuffixes: readonly string[] | undefined;
  readonly #allowIp: boolean;
  readonly #crlValidityMs: number;
  readonly #now: () => number;
  #issuer: Issuer | undefined;
  #adopting: Promise<Issuer> | undefined;
  #crl: { crl: Crl; refreshAt: number } | undefined;

  constructor(options: CertificateAuthorityOptions) {
    this.#kms = options.kms;
    this.#keyName = options.keyName;
    this.#repo = options.repository;
    this.#audit = options.audit;
    this.#principal = options.principal ?? CA_PRINCIPAL;
    this.#name = options.name ?? 'Warden Internal CA';
    this.#trustDomain = options.trustDomain ?? 'warden';
    this.#lifetimes = {
      server: boundsOf('server', options.server),
      client: boundsOf('client', options.client),
    };
    // The CA certificate is renewed while it still outlives any leaf issued now twice over, so a leaf never
    // outlives its issuer.
    this.#renewBeforeMs = 2 * Math.max(this.#lifetimes.server.maxMs, this.#lifetimes.client.maxMs);
    this.#caLifetimeMs = options.caLifetimeMs ?? DEFAULT_CA_LIFETIME_MS;
    if (!Number.isInteger(this.#caLifetimeMs) || this.#caLifetimeMs < 2 * this.#renewBeforeMs) {
      throw new CaError('invalid_request', 'the CA lifetime must be at least twice its renewal window');
    }
    this.#dnsSuffixes = options.allowedDnsSuffixes?.map((s) => checkDnsName(s));
    this.#allowIp = options.allowIpAddresses ?? true;
    this.#crlValidityMs = options.crlValidityMs ?? DEFAULT_CRL_VALIDITY_MS;
    if (!Number.isInteger(this.#crlValidityMs) || this.#crlValidityMs < MINUTE_MS) {
      throw new CaError('invalid_request', 'the CRL validity must be at least a minute');
    }
    checkTrustDomain(this.#trustDomain);
    this.#now = options.now ?? Date.now;
  }

  get trustDomain(): string {
    return this.#trustDomain;
  }

  // ---- CA lifecycle --------------------------------------------------------------------------------------

  /**
   * Creates the KMS key if it does not exist (as `principal`, who needs `keys.create`) and the CA certificate
   * for its current version. Idempotent: with a valid CA certificate in place it returns that one.
   */
  async init(
    principal: Principal,
    keyType: 'ecdsa-p256' | 'ecdsa-p384' = 'ecdsa-p256',
  ): Promise<CaCertificateInfo> {
    return this.#audited(principal, 'ca.init', async () => {
      try {
        const info = await this.#kms.getKey(principal, this.#keyName);
        if (info.key.type !== 'ecdsa-p256' && info.key.type !== 'ecdsa-p384') {
          throw new CaError('ca_key_unsuitable', 'the CA key must be an ecdsa-p256 or ecdsa-p384 KMS key');
        }
      } catch (err) {
        if (!(err instanceof KeyNotFoundError)) throw err;
        // No automatic rotation: a rotation is a new CA certificate, which operators schedule (`rotate`).
        await this.#kms.createKey(principal, {
          name: this.#keyName,
          type: keyType,
          rotationPeriodDays: 0,
          description: 'Warden internal certificate authority',
        });
      }
      const issuer = await this.#adopt(principal);
      return { result: infoOf(issuer.record), resource: `certificate:${issuer.record.serial}` };
    });
  }

  /** Rotates the KMS key (as `principal`, who needs `keys.rotate`) and issues the new version's CA certificate. */
  async rotate(principal: Principal): Promise<CaCertificateInfo> {
    return this.#audited(principal, 'ca.rotate', async () => {
      await this.#kms.rotateKey(principal, this.#keyName);
      this.#issuer = undefined;
      const issuer = await this.#adopt(principal);
      return { result: infoOf(issuer.record), resource: `certificate:${issuer.record.serial}` };
    });
  }

  /** The CA certificate leaves are issued under now (renewed or adopted first if needed). */
  async current(): Promise<CaCertificateInfo> {
    return infoOf((await this.#current()).record);
  }

  async trustBundle(): Promise<TrustBundle> {
    const records = await this.#repo.list({ profile: 'ca', validAt: this.#now() });
    const certificates = records.map(infoOf);
    return { pem: certificates.map((c) => c.certificate).join(''), certificates };
  }

  async #current(): Promise<Issuer> {
    const now = this.#now();
    const cached = this.#issuer;
    if (cached !== undefined && cached.record.notAfter - now > this.#renewBeforeMs) return cached;
    const records = await this.#repo.list({ profile: 'ca', validAt: now + this.#renewBeforeMs });
    const newest = records.reduce<CertificateRecord | undefined>(
      (best, r) => (best === undefined || r.keyVersion > best.keyVersion ? r : best),
      undefined,
    );
    if (newest !== undefined) {
      this.#issuer = issuerOf(newest);
      return this.#issuer;
    }
    if ((await this.#repo.list({ profile: 'ca', limit: 1 })).length === 0) {
      throw new CaError('ca_not_initialized', 'the CA has no certificate yet: run `warden ca init`');
    }
    return this.#adopt(this.#principal);
  }

  /**
   * The CA certificate of the KMS key's latest version, created if missing or due for renewal. One adoption at a
   * time per process; across processes the worst case is two CA certificates for one version, same key and name.
   */
  async #adopt(principal: Principal): Promise<Issuer> {
    this.#adopting ??= this.#createCaCertificate(principal).finally(() => {
      this.#adopting = undefined;
    });
    this.#issuer = await this.#adopting;
    return this.#issuer;
  }

  async #createCaCertificate(principal: Principal): Promise<Issuer> {
    for (let attempt = 0; attempt < SIGN_ATTEMPTS; attempt++) {
      const { pem, keyVersion } = await this.#kms.publicKey(this.#principal, this.#keyName);
      const now = this.#now();
      const existing = (await this.#repo.list({ profile: 'ca', validAt: now + this.#renewBeforeMs })).find(
        (r) => r.keyVersion === keyVersion,
      );
      if (existing !== undefined) return issuerOf(existing);
      const publicKey = createPublicKey(pem);
      const spki = publicKey.export({ format: 'der', type: 'spki' });
      const curve = caCurveOf(spki);
      const name = distinguishedName(`${this.#name} v${keyVersion}`, 'Warden');
      const keyId = keyIdentifier(spki);
      const serial = randomSerial();
      const notBefore = wholeSeconds(now - BACKDATE_MS);
      const notAfter = wholeSeconds(now + this.#caLifetimeMs);
      let signedBy = -1;
      const der = await signCertificate(
        {
          serial,
          issuer: name,
          subject: name,
          notBefore,
          notAfter,
          spki,
          extensions: [
            // pathLen 0: this CA issues leaves only, never another CA.
            new x509.BasicConstraintsExtension(true, 0, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
            new x509.SubjectKeyIdentifierExtension(keyId.toString('hex')),
            new x509.AuthorityKeyIdentifierExtension(keyId.toString('hex')),
          ],
        },
        curve,
        async (tbs) => {
          const signed = await this.#kms.sign(this.#principal, this.#keyName, tbs);
          signedBy = signed.keyVersion;
          return derSignature(signed.signature, curve);
        },
      );
      if (signedBy !== keyVersion) continue;
      if (!new NodeX509Certificate(der).verify(publicKey)) {
        throw new CaError('ca_signature_mismatch', 'the KMS signature does not verify under the CA key');
      }
      const record: CertificateRecord = {
        serial: serialHex(serial),
        profile: 'ca',
        subject: name.toString(),
        identity: name.toString(),
        issuerSerial: null,
        keyVersion,
        notBefore: notBefore.getTime(),
        notAfter: notAfter.getTime(),
        der,
        issuedAt: now,
        issuedBy: principal.id,
        revokedAt: null,
        revocationReason: null,
        revokedBy: null,
      };
      await this.#repo.insert(record);
      // The cached CRL names the previous CA certificate; the next one is signed under this one.
      this.#crl = undefined;
      await this.#audit.record({
        action: 'ca.certificate.create',
        principal: { id: principal.id, authMethod: principal.authMethod },
        resource: `certificate:${record.serial}`,
        outcome: 'success',
        keyVersion,
        ...requestFields(principal),
      });
      return issuerOf(record);
    }
    throw new CaError(
      'ca_signature_mismatch',
      'the CA key kept rotating while the CA certificate was signed',
    );
  }

  /**
   * Signs `build`'s output under the current CA certificate. If the KMS signed with another key version (the key
   * was rotated since), the result is discarded, the new version's CA certificate adopted, and the signing redone.
   */
  async #signUnderCa(
    build: (issuer: Issuer, sign: TbsSigner) => Promise<Buffer>,
  ): Promise<{ der: Buffer; issuer: Issuer }> {
    for (let attempt = 0; attempt < SIGN_ATTEMPTS; attempt++) {
      const issuer = await this.#current();
      let signedBy = -1;
      const der = await build(issuer, async (tbs) => {
        const signed = await this.#kms.sign(this.#principal, this.#keyName, tbs);
        signedBy = signed.keyVersion;
        return derSignature(signed.signature, issuer.curve);
      });
      if (signedBy === issuer.record.keyVersion) return { der, issuer };
      this.#issuer = undefined;
      await this.#adopt(this.#principal);
    }
    throw new CaError('ca_signature_mismatch', 'the CA key kept rotating while signing');
  }

  // ---- issuance ------------------------------------------------------------------------------------------

  /**
   * Issues a server or client certificate. The CSR (or bare public key) contributes its public key only, after
   * the CSR's signature verifies; subject, SANs, usages and lifetime come from the request and the CA's policy.
   * Who may ask for which identity is the caller's authorisation (`ca.issue` on the `Identity` resource).
   */
  async issue(principal: Principal, request: IssueRequest): Promise<IssuedCertificate> {
    return this.#audited(principal, 'ca.issue', async () => {
      const profile = (request as { profile: unknown }).profile;
      if (profile !== 'server' && profile !== 'client') {
        throw new CaError('invalid_request', 'profile must be server or client');
      }
      const lifetimeMs = this.#lifetime(profile, request.lifetimeMs);
      const plan = request.profile === 'server' ? this.#serverPlan(request) : this.#clientPlan(request);
      const key = await this.#keyOf(request);
      const serial = randomSerial();
      const now = this.#now();
      const notBefore = wholeSeconds(now - BACKDATE_MS);
      const notAfter = wholeSeconds(now + lifetimeMs);
      const { der, issuer } = await this.#signUnderCa((issuer, sign) => {
        // Renewal keeps the CA certificate ahead of any leaf; this only guards that invariant.
        if (notAfter.getTime() > issuer.record.notAfter) {
          throw new CaError('ca_unavailable', 'the CA certificate would expire before the new certificate');
        }
        return signCertificate(
          {
            serial,
            issuer: issuer.name,
            subject: plan.subject,
            notBefore,
            notAfter,
            spki: key.spki,
            extensions: [
              new x509.BasicConstraintsExtension(false, undefined, true),
              new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
              new x509.ExtendedKeyUsageExtension(
                [profile === 'server' ? OID.serverAuth : OID.clientAuth],
                false,
              ),
              // RFC 5280 §4.2.1.6: the SAN is critical when the subject is empty.
              new x509.SubjectAlternativeNameExtension(plan.names, plan.subjectEmpty),
              new x509.SubjectKeyIdentifierExtension(keyIdentifier(key.spki).toString('hex')),
              new x509.AuthorityKeyIdentifierExtension(issuer.keyId.toString('hex')),
            ],
          },
          issuer.curve,
          sign,
        );
      });
      const certificate = new NodeX509Certificate(der);
      if (!certificate.verify(issuer.publicKey)) {
        throw new CaError('ca_signature_mismatch', 'the KMS signature does not verify under the CA key');
      }
      const record: CertificateRecord = {
        serial: serialHex(serial),
        profile,
        subject: plan.subject.toString(),
        identity: plan.identity,
        issuerSerial: issuer.record.serial,
        keyVersion: issuer.record.keyVersion,
        notBefore: notBefore.getTime(),
        notAfter: notAfter.getTime(),
        der,
        issuedAt: now,
        issuedBy: principal.id,
        revokedAt: null,
        revocationReason: null,
        revokedBy: null,
      };
      await this.#repo.insert(record);
      const pem = toPem(der, 'CERTIFICATE');
      return {
        result: {
          serial: record.serial,
          profile,
          identity: plan.identity,
          notBefore,
          notAfter,
          certificate: pem,
          chain: pem + issuer.pem,
          caCertificate: issuer.pem,
        },
        resource: `certificate:${record.serial}`,
        details: { profile, lifetimeSeconds: Math.round(lifetimeMs / 1000), keyType: key.description },
        keyVersion: issuer.record.keyVersion,
      };
    });
  }

  #lifetime(profile: 'server' | 'client', requested: number | undefined): number {
    const bounds = this.#lifetimes[profile];
    const ms = requested ?? bounds.defaultMs;
    if (!Number.isInteger(ms) || ms < MIN_LIFETIME_MS) {
      throw new CaError(
        'invalid_request',
        `the lifetime must be a whole number of ms, at least ${MIN_LIFETIME_MS}`,
      );
    }
    if (ms > bounds.maxMs) {
      throw new CaError('lifetime_exceeded', `${profile} certificates live at most ${bounds.maxMs / 1000} s`);
    }
    return ms;
  }

  // Typed loosely: requests arrive from the network, where both or neither may be present.
  async #keyOf(source: {
    readonly csr?: string | Uint8Array | undefined;
    readonly publicKey?: string | Uint8Array | undefined;
  }): Promise<LeafKeyInfo> {
    const { csr, publicKey } = source;
    if (csr !== undefined && publicKey === undefined) return publicKeyFromCsr(csr);
    if (publicKey !== undefined && csr === undefined) return checkLeafPublicKey(publicKeyInput(publicKey));
    throw new CaError('invalid_request', 'give exactly one of csr and publicKey');
  }

  #serverPlan(request: { dnsNames?: readonly string[]; ipAddresses?: readonly string[] }): Plan {
    const dns = [...new Set((request.dnsNames ?? []).map((n) => checkDnsName(n)))];
    const ips = [...new Set((request.ipAddresses ?? []).map((a) => checkIpAddress(a)))];
    if (dns.length + ips.length === 0) {
      throw new CaError('invalid_request', 'a server certificate needs at least one DNS name or IP address');
    }
    if (dns.length > MAX_DNS_NAMES || ips.length > MAX_IP_ADDRESSES) {
      throw new CaError(
        'invalid_request',
        `at most ${MAX_DNS_NAMES} DNS names and ${MAX_IP_ADDRESSES} addresses`,
      );
    }
    const suffixes = this.#dnsSuffixes;
    if (suffixes !== undefined) {
      const outside = dns.find((n) => !suffixes.some((s) => n === s || n.endsWith(`.${s}`)));
      if (outside !== undefined)
        throw new CaError('name_not_allowed', 'a DNS name is outside the allowed domains');
    }
    if (ips.length > 0 && !this.#allowIp) {
      throw new CaError('name_not_allowed', 'this CA does not certify IP addresses');
    }
    const names: x509.JsonGeneralNames = [
      ...dns.map((value) => ({ type: 'dns' as const, value })),
      ...ips.map((value) => ({ type: 'ip' as const, value })),
    ];
    return {
      ...subjectFor(dns[0] ?? ips[0] ?? ''),
      names,
      identity: [...dns.map((n) => `dns:${n}`), ...ips.map((a) => `ip:${a}`)].join(','),
    };
  }

  #clientPlan(request: { identity: string }): Plan {
    const identity = parseClientIdentity(request.identity, this.#trustDomain);
    return {
      ...subjectFor(identity.principalId),
      names: [{ type: 'url', value: clientIdentityUri(identity, this.#trustDomain) }],
      identity: identity.principalId,
    };
  }

  // ---- inventory and revocation ----------------------------------------------------------------------------

  async get(serial: string): Promise<CertificateRecord> {
    const record = await this.#repo.get(checkSerial(serial));
    if (record === undefined)
      throw new CaError('certificate_not_found', 'no certificate with that serial number');
    return record;
  }

  async list(
    filter: { profile?: CertificateProfile; includeExpired?: boolean; limit?: number } = {},
  ): Promise<CertificateRecord[]> {
    return this.#repo.list({
      ...(filter.profile === undefined ? {} : { profile: filter.profile }),
      ...(filter.includeExpired === true ? {} : { validAt: this.#now() }),
      limit: Math.min(Math.max(filter.limit ?? 100, 1), 1000),
    });
  }

  /** Revokes a leaf certificate. CA certificates are retired by rotating the CA key instead. */
  async revoke(
    principal: Principal,
    serial: string,
    reason: RevocationReason = 'unspecified',
  ): Promise<CertificateRecord> {
    return this.#audited(principal, 'ca.revoke', async () => {
      const canonical = checkSerial(serial);
      const record = await this.get(canonical);
      if (record.profile === 'ca') {
        throw new CaError(
          'invalid_request',
          'a CA certificate is retired by rotating the CA key, not revoked',
        );
      }
      const at = this.#now();
      if (!(await this.#repo.revoke(canonical, at, reason, principal.id))) {
        throw new CaError('already_revoked', 'the certificate is already revoked');
      }
      this.#crl = undefined;
      return {
        result: { ...record, revokedAt: at, revocationReason: reason, revokedBy: principal.id },
        resource: `certificate:${canonical}`,
        details: { reason, profile: record.profile },
      };
    });
  }

  async isRevoked(serial: string): Promise<boolean> {
    const record = await this.#repo.get(checkSerial(serial));
    return record?.revokedAt !== null && record?.revokedAt !== undefined;
  }

  /**
   * The current CRL: every revoked certificate that has not expired, under any CA generation (serials are 128
   * random bits, unique across generations), signed by the current CA key. Cached for a tenth of its validity;
   * a revocation through this instance drops the cache at once.
   */
  async crl(): Promise<Crl> {
    const now = this.#now();
    if (this.#crl !== undefined && this.#crl.refreshAt > now) return this.#crl.crl;
    const revoked = await this.#repo.listRevoked(now);
    const thisUpdate = wholeSeconds(now);
    const nextUpdate = wholeSeconds(now + this.#crlValidityMs);
    const { der } = await this.#signUnderCa((issuer, sign) =>
      signCrl(
        {
          issuer: issuer.name,
          authorityKeyId: issuer.keyId,
          thisUpdate,
          nextUpdate,
          // Milliseconds since the epoch: increasing across instances without shared state.
          number: BigInt(now),
          entries: revoked.map((r) => ({
            serial: r.serial,
            revokedAt: r.revokedAt ?? now,
            reason: r.revocationReason ?? 'unspecified',
          })),
        },
        issuer.curve,
        sign,
      ),
    );
    const crl: Crl = { der, pem: toPem(der, 'X509 CRL'), thisUpdate, nextUpdate, entries: revoked.length };
    this.#crl = { crl, refreshAt: now + Math.floor(this.#crlValidityMs / 10) };
    return crl;
  }

  // ---- audit ---------------------------------------------------------------------------------------------

  /** Runs an operation and records its outcome; the result is withheld if the event cannot be recorded. */
  async #audited<T>(
    principal: Principal,
    action: string,
    run: () => Promise<{
      result: T;
      resource: string;
      details?: Record<string, string | number | boolean>;
      keyVersion?: number;
    }>,
  ): Promise<T> {
    const started = performance.now();
    let outcome: Awaited<ReturnType<typeof run>>;
    try {
      outcome = await run();
    } catch (err) {
      const reason = err instanceof CaError || err instanceof KmsError ? err.code : 'internal_error';
      await this.#audit.record({
        action,
        principal: { id: principal.id, authMethod: principal.authMethod },
        resource: 'certificate:*',
        outcome: reason === 'forbidden' ? 'denied' : 'failure',
        reason,
        latencyMs: Math.round(performance.now() - started),
        ...requestFields(principal),
      });
      throw err;
    }
    await this.#audit.record({
      action,
      principal: { id: principal.id, authMethod: principal.authMethod },
      resource: outcome.resource,
      outcome: 'success',
      latencyMs: Math.round(performance.now() - started),
      ...(outcome.keyVersion === undefined ? {} : { keyVersion: outcome.keyVersion }),
      ...(outcome.details === undefined ? {} : { details: outcome.details }),
      ...requestFields(principal),
    });
    return outcome.result;
  }
}

interface Plan {
  readonly subject: x509.Name;
  readonly subjectEmpty: boolean;
  readonly names: x509.JsonGeneralNames;
  readonly identity: string;
}

/** CN is bounded to 64 characters (RFC 5280 ub-common-name); longer identities live in the SAN only. */
function subjectFor(commonName: string): { subject: x509.Name; subjectEmpty: boolean } {
  if (commonName.length > 0 && commonName.length <= 64) {
    return { subject: distinguishedName(commonName), subjectEmpty: false };
  }
  return { subject: new x509.Name([]), subjectEmpty: true };
}

function issuerOf(record: CertificateRecord): Issuer {
  const certificate = new NodeX509Certificate(record.der);
  const spki = certificate.publicKey.export({ format: 'der', type: 'spki' });
  return {
    record,
    name: new x509.X509Certificate(record.der).subjectName,
    keyId: keyIdentifier(spki),
    curve: caCurveOf(spki),
    publicKey: certificate.publicKey,
    pem: toPem(record.der, 'CERTIFICATE'),
  };
}

function checkSerial(serial: string): string {
  const canonical = typeof serial === 'string' ? serialHex(serial.replace(/:/g, '')) : '';
  // serialHex pads odd-length text; isSerialHex then rejects anything but 1-20 bytes of hex.
  if (!isSerialHex(canonical))
    throw new CaError('invalid_request', 'a serial number is 1 to 20 bytes of hex');
  return canonical;
}

function requestFields(principal: Principal): { requestId?: string; sourceIp?: string; userAgent?: string } {
  const r = principal.request;
  return {
    ...(r?.id === undefined ? {} : { requestId: r.id }),
    ...(r?.sourceIp === undefined ? {} : { sourceIp: r.sourceIp }),
    ...(r?.userAgent === undefined ? {} : { userAgent: r.userAgent }),
  };
}
