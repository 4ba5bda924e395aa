// @peculiar/x509 needs a Reflect metadata API loaded before it.
import 'reflect-metadata';
import { createHash, createPublicKey, webcrypto, X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
// The certificate and CRL bodies are built with the ASN.1 schema @peculiar/x509 itself uses (it depends on these
// exact packages). @peculiar/x509's generators only sign through a WebCrypto `CryptoKey` and `SubtleCrypto`;
// the CA's key lives in the KMS, so feeding them would mean a provider that pretends to be WebCrypto and a fake
// private key. Assembling the TBSCertificate/TBSCertList here keeps the signed bytes explicit, and the KMS's DER
// ECDSA signature is already X.509's `ECDSA-Sig-Value`, used as is. @peculiar/x509 still builds names and
// extensions, and parses everything that comes back.
import * as asn1X509 from '@peculiar/asn1-x509';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { CaError } from './errors.ts';

export type CaCurve = 'P-256' | 'P-384';

/** Signs the DER bytes given and returns a DER `ECDSA-Sig-Value` made with the CA key on the CA's curve. */
export type TbsSigner = (tbs: Uint8Array) => Promise<Uint8Array>;

export const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  crlNumber: '2.5.29.20',
  crlReason: '2.5.29.21',
  authorityKeyId: '2.5.29.35',
} as const;

const SIGNATURE_ALGORITHM: Readonly<Record<CaCurve, string>> = {
  'P-256': OID.ecdsaWithSha256,
  'P-384': OID.ecdsaWithSha384,
};

/** Bounds on attacker-supplied input before any parser sees it. */
export const MAX_CSR_BYTES = 16 * 1024;
export const MAX_CERTIFICATE_BYTES = 16 * 1024;
export const MAX_CRL_BYTES = 4 * 1024 * 1024;

// ---- serial numbers ------------------------------------------------------------------------------------------

/**
 * 128 random bits as a DER INTEGER body: minimal (no leading zero byte unless the top bit is set, which would
 * otherwise make it negative) and non-zero. 16 random bytes plus the sign byte stay within RFC 5280's 20 octets.
 */
export function randomSerial(): Buffer {
  for (;;) {
    const bytes = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
    let start = 0;
    while (start < bytes.length && bytes[start] === 0) start++;
    if (start === bytes.length) continue;
    const body = bytes.subarray(start);
    return (body[0] ?? 0) & 0x80 ? Buffer.concat([Uint8Array.of(0), body]) : Buffer.from(body);
  }
}

/**
 * The canonical text form of a serial number: lowercase hex of its value, no sign byte, no leading zero bytes.
 * OpenSSL (node:crypto, TLS peer certificates) prints uppercase; @peculiar/x509 drops only the sign byte.
 */
export function serialHex(serial: string | Uint8Array): string {
  let hex = typeof serial === 'string' ? serial.toLowerCase() : Buffer.from(serial).toString('hex');
  if (hex.length % 2 === 1) hex = `0${hex}`;
  const trimmed = hex.replace(/^(00)+/, '');
  return trimmed === '' ? '00' : trimmed;
}

/** The DER INTEGER body of a canonical serial (`serialHex`): a sign byte goes back in front of a set top bit. */
export function serialBytes(hex: string): Buffer {
  const body = Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, 'hex');
  return (body[0] ?? 0) & 0x80 ? Buffer.concat([Uint8Array.of(0), body]) : body;
}

const SERIAL_PATTERN = /^[0-9a-f]{2,40}$/;

export function isSerialHex(value: string): boolean {
  return SERIAL_PATTERN.test(value) && value.length % 2 === 0;
}

// ---- keys ----------------------------------------------------------------------------------------------------

export interface LeafKeyInfo {
  /** The public key as SPKI DER, re-encoded by OpenSSL (so it is canonical). */
  readonly spki: Buffer;
  readonly description: string;
}

/**
 * Keys a leaf certificate may carry: ECDSA P-256/P-384, Ed25519, RSA 2048–8192 bits. Anything else (DSA, small
 * RSA, exotic curves) is refused rather than certified.
 */
export function checkLeafPublicKey(spki: Uint8Array): LeafKeyInfo {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CaError('invalid_public_key', 'the public key is not a valid SubjectPublicKeyInfo', {
      cause: err,
    });
  }
  const details = key.asymmetricKeyDetails ?? {};
  const exported = key.export({ format: 'der', type: 'spki' });
  const type = key.asymmetricKeyType;
  if (type === 'ec' && details.namedCurve === 'prime256v1')
    return { spki: exported, description: 'ecdsa-p256' };
  if (type === 'ec' && details.namedCurve === 'secp384r1')
    return { spki: exported, description: 'ecdsa-p384' };
  if (type === 'ed25519') return { spki: exported, description: 'ed25519' };
  const bits = details.modulusLength ?? 0;
  if (type === 'rsa' && bits >= 2048 && bits <= 8192) return { spki: exported, description: `rsa-${bits}` };
  throw new CaError(
    'invalid_public_key',
    'the public key must be ECDSA P-256/P-384, Ed25519 or RSA of 2048 to 8192 bits',
  );
}

/** The curve of a CA public key (SPKI DER); the KMS key behind the CA must be ECDSA P-256 or P-384. */
export function caCurveOf(spki: Uint8Array): CaCurve {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  if (curve === 'prime256v1') return 'P-256';
  if (curve === 'secp384r1') return 'P-384';
  throw new CaError('ca_key_unsuitable', 'the CA key must be an ecdsa-p256 or ecdsa-p384 KMS key');
}

/**
 * Key identifier (SKI/AKI): the leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING value,
 * RFC 7093 method 1 (SHA-1, RFC 5280's example, is avoided).
 */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const info = AsnConvert.parse(Buffer.from(spki), asn1X509.SubjectPublicKeyInfo);
  return createHash('sha256').update(Buffer.from(info.subjectPublicKey)).digest().subarray(0, 20);
}

// ---- names ---------------------------------------------------------------------------------------------------

const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*$`);

/** A DNS host name for a server certificate: lowercase LDH labels, at most 253 characters, no wildcard. */
export function checkDnsName(name: string): string {
  const lower = name.toLowerCase();
  if (lower.length === 0 || lower.length > 253 || !DNS_NAME.test(lower)) {
    throw new CaError('invalid_request', 'a DNS name must be a host name of LDH labels (no wildcards)');
  }
  return lower;
}

/** An IPv4 or IPv6 address in its canonical text form. */
export function checkIpAddress(address: string): string {
  const version = isIP(address);
  if (version === 4) return address;
  if (version === 6) return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  throw new CaError('invalid_request', 'an IP address must be an IPv4 or IPv6 address');
}

/** A distinguished name with one CN (and the organisation, for CA certificates); values are escaped by x509. */
export function distinguishedName(commonName: string, organization?: string): x509.Name {
  const json: x509.JsonName = [{ CN: [commonName] }];
  if (organization !== undefined) json.push({ O: [organization] });
  return new x509.Name(json);
}

// ---- certificates --------------------------------------------------------------------------------------------

export interface CertificateTemplate {
  readonly serial: Uint8Array;
  readonly issuer: x509.Name;
  readonly subject: x509.Name;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Uint8Array;
  readonly extensions: readonly x509.Extension[];
}

function toAsnExtension(extension: x509.Extension): asn1X509.Extension {
  return AsnConvert.parse(extension.rawData, asn1X509.Extension);
}

function toAsnName(name: x509.Name): asn1X509.Name {
  return AsnConvert.parse(name.toArrayBuffer(), asn1X509.Name);
}

function signatureAlgorithm(curve: CaCurve): asn1X509.AlgorithmIdentifier {
  // ECDSA signature algorithm identifiers carry no parameters (RFC 5758 §3.2).
  return new asn1X509.AlgorithmIdentifier({ algorithm: SIGNATURE_ALGORITHM[curve] });
}

function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** DER of an X.509 v3 certificate whose TBSCertificate is signed by `sign` (the KMS). */
export async function signCertificate(
  template: CertificateTemplate,
  curve: CaCurve,
  sign: TbsSigner,
): Promise<Buffer> {
  const algorithm = signatureAlgorithm(curve);
  const tbs = new asn1X509.TBSCertificate({
    version: asn1X509.Version.v3,
    serialNumber: arrayBuffer(template.serial),
    signature: algorithm,
    issuer: toAsnName(template.issuer),
    validity: new asn1X509.Validity({ notBefore: template.notBefore, notAfter: template.notAfter }),
    subject: toAsnName(template.subject),
    subjectPublicKeyInfo: AsnConvert.parse(Buffer.from(template.spki), asn1X509.SubjectPublicKeyInfo),
    extensions: new asn1X509.Extensions(template.extensions.map(toAsnExtension)),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = await sign(tbsDer);
  const certificate = new asn1X509.Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm: algorithm,
    signatureValue: arrayBuffer(signature),
  });
  return Buffer.from(AsnConvert.serialize(certificate));
}

export interface CrlEntry {
  readonly serial: string;
  readonly revokedAt: number;
  readonly reason: RevocationReason;
}

export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export function isRevocationReason(value: unknown): value is RevocationReason {
  return typeof value === 'string' && (REVOCATION_REASONS as readonly string[]).includes(value);
}

const REASON_CODE: Readonly<Record<RevocationReason, asn1X509.CRLReasons>> = {
  unspecified: asn1X509.CRLReasons.unspecified,
  keyCompromise: asn1X509.CRLReasons.keyCompromise,
  affiliationChanged: asn1X509.CRLReasons.affiliationChanged,
  superseded: asn1X509.CRLReasons.superseded,
  cessationOfOperation: asn1X509.CRLReasons.cessationOfOperation,
  privilegeWithdrawn: asn1X509.CRLReasons.privilegeWithdrawn,
};

/** A non-negative integer as a DER INTEGER (tag, length, minimal two's-complement body). */
function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let body = Buffer.from(hex, 'hex');
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Uint8Array.of(0), body]);
  return Buffer.concat([Uint8Array.of(0x02, body.length), body]);
}

function rawExtension(oid: string, value: Uint8Array): asn1X509.Extension {
  return new asn1X509.Extension({ extnID: oid, critical: false, extnValue: new OctetString(value) });
}

export interface CrlTemplate {
  readonly issuer: x509.Name;
  readonly authorityKeyId: Uint8Array;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  /** Monotonic CRL number (RFC 5280 §5.2.3). */
  readonly number: bigint;
  readonly entries: readonly CrlEntry[];
}

/** DER of a v2 CRL signed by `sign`: AKI and CRL number extensions, a reason code on every entry. */
export async function signCrl(template: CrlTemplate, curve: CaCurve, sign: TbsSigner): Promise<Buffer> {
  const algorithm = signatureAlgorithm(curve);
  const aki = new x509.AuthorityKeyIdentifierExtension(
    Buffer.from(template.authorityKeyId).toString('hex'),
    false,
  );
  const tbs = new asn1X509.TBSCertList({
    version: asn1X509.Version.v2,
    signature: algorithm,
    issuer: toAsnName(template.issuer),
    thisUpdate: new asn1X509.Time(template.thisUpdate),
    nextUpdate: new asn1X509.Time(template.nextUpdate),
    // RFC 5280 §5.1.2.6: with no revoked certificate the list is absent, not empty.
    ...(template.entries.length === 0
      ? {}
      : {
          revokedCertificates: template.entries.map(
            (entry) =>
              new asn1X509.RevokedCertificate({
                userCertificate: arrayBuffer(serialBytes(entry.serial)),
                revocationDate: new asn1X509.Time(new Date(entry.revokedAt)),
                crlEntryExtensions: [
                  rawExtension(
                    OID.crlReason,
                    new Uint8Array(AsnConvert.serialize(new asn1X509.CRLReason(REASON_CODE[entry.reason]))),
                  ),
                ],
              }),
          ),
        }),
    crlExtensions: [toAsnExtension(aki), rawExtension(OID.crlNumber, derInteger(template.number))],
  });
  const signature = await sign(Buffer.from(AsnConvert.serialize(tbs)));
  const crl = new asn1X509.CertificateList({
    tbsCertList: tbs,
    signatureAlgorithm: algorithm,
    signature: arrayBuffer(signature),
  });
  return Buffer.from(AsnConvert.serialize(crl));
}

// ---- parsing -------------------------------------------------------------------------------------------------

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;

/** The DER bodies of the PEM blocks with one of the given labels, in order. Other blocks are ignored. */
export function pemBlocks(text: string, labels: readonly string[]): Buffer[] {
  const blocks: Buffer[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    if (labels.includes(match[1] ?? ''))
      blocks.push(Buffer.from((match[2] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  return blocks;
}

export function toPem(der: Uint8Array, label: string): string {
  const base64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${(base64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
}

/** One DER object from bytes or a single PEM block (what a CSR or certificate upload is). */
function singleDer(
  input: string | Uint8Array,
  labels: readonly string[],
  limit: number,
  what: string,
): Buffer {
  if (typeof input !== 'string') {
    if (input.byteLength === 0 || input.byteLength > limit)
      throw new CaError(codeFor(what), `${what} is too large or empty`);
    return Buffer.from(input);
  }
  if (input.length > limit * 2) throw new CaError(codeFor(what), `${what} is too large`);
  const blocks = pemBlocks(input, labels);
  if (blocks.length !== 1 || (blocks[0]?.byteLength ?? 0) === 0) {
    throw new CaError(codeFor(what), `${what} must be exactly one PEM block (${labels[0] ?? ''})`);
  }
  return blocks[0] as Buffer;
}

function codeFor(what: string): 'invalid_csr' | 'invalid_certificate' | 'invalid_crl' {
  if (what === 'the CSR') return 'invalid_csr';
  if (what === 'the CRL') return 'invalid_crl';
  return 'invalid_certificate';
}

/**
 * A PKCS#10 request reduced to what the CA takes from it: its public key, after its self-signature (proof of
 * possession) verifies. Subject, extensions and attributes in the request are ignored: the CA decides the names.
 */
export async function publicKeyFromCsr(input: string | Uint8Array): Promise<LeafKeyInfo> {
  const der = singleDer(input, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'], MAX_CSR_BYTES, 'the CSR');
  let csr: x509.Pkcs10CertificateRequest;
  let spki: Buffer;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
    spki = Buffer.from(csr.publicKey.rawData);
  } catch (err) {
    throw new CaError('invalid_csr', 'the CSR is not a DER PKCS#10 certification request', { cause: err });
  }
  const key = checkLeafPublicKey(spki);
  let verified: boolean;
  try {
    verified = await csr.verify(webcrypto);
  } catch (err) {
    throw new CaError('csr_signature_invalid', 'the CSR signature could not be verified', { cause: err });
  }
  if (!verified) throw new CaError('csr_signature_invalid', 'the CSR signature does not verify');
  return key;
}

/** A certificate from DER bytes or one PEM block, parsed by OpenSSL (node:crypto). */
export function parseCertificate(input: string | Uint8Array): NodeX509Certificate {
  const der = singleDer(input, ['CERTIFICATE'], MAX_CERTIFICATE_BYTES, 'the certificate');
  try {
    return new NodeX509Certificate(der);
  } catch (err) {
    throw new CaError('invalid_certificate', 'not a DER X.509 certificate', { cause: err });
  }
}

/** Every certificate of a PEM bundle (none is an error). */
export function parseCertificates(pem: string): NodeX509Certificate[] {
  const blocks = pemBlocks(pem, ['CERTIFICATE']);
  if (blocks.length === 0) throw new CaError('invalid_certificate', 'no PEM certificate found');
  return blocks.map((der) => parseCertificate(der));
}

export function crlDer(input: string | Uint8Array): Buffer {
  return singleDer(input, ['X509 CRL'], MAX_CRL_BYTES, 'the CRL');
}
