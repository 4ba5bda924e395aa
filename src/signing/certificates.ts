import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPublicKey, type KeyObject } from 'node:crypto';
import { CertificateError } from './errors.ts';
import { algorithmOf } from './signer.ts';

/**
 * Certificate-method chain validation (§8.2): the bundle's chain (leaf first) must lead, issuer by issuer, to a
 * caller-supplied trust anchor; every certificate on the path must be valid at the verification time; issuers must
 * be CAs allowed to sign certificates; the leaf must be an ECDSA P-256/P-384 key allowed to sign code.
 *
 * Anchors may be roots or intermediates (a "partial chain" anchor), and an anchor may also appear in the bundle.
 * Certificates after the one that reaches an anchor are ignored, as TLS stacks ignore surplus chain entries.
 */

/** A certificate as DER bytes, or PEM text (which may hold several). */
export type CertificateInput = Uint8Array | string;

export interface ChainValidationOptions {
  readonly trustedRoots: readonly CertificateInput[];
  /**
   * The instant at which every certificate must be valid. Defaults to now: key- and certificate-method bundles
   * carry no trusted signing time. Pass a time only if it comes from something you trust (e.g. your own records).
   */
  readonly at?: Date;
}

export interface ValidatedChain {
  readonly leafKey: KeyObject;
  /** Leaf first, ending with the trust anchor. */
  readonly path: readonly x509.X509Certificate[];
}

const OID = {
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  codeSigning: '1.3.6.1.5.5.7.3.3',
} as const;

// Critical extensions this validator understands; any other critical extension makes a certificate unusable
// (RFC 5280 §4.2), e.g. name or policy constraints it would otherwise silently skip.
const UNDERSTOOD_CRITICAL = new Set<string>([
  OID.keyUsage,
  OID.subjectAltName,
  OID.basicConstraints,
  OID.extKeyUsage,
  OID.subjectKeyId,
  OID.authorityKeyId,
]);

function parseCertificate(der: Uint8Array, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(Buffer.from(der));
  } catch (err) {
    throw new CertificateError(`${what} is not a DER X.509 certificate`, { cause: err });
  }
}

function parseAnchors(inputs: readonly CertificateInput[]): x509.X509Certificate[] {
  const anchors: x509.X509Certificate[] = [];
  for (const [i, input] of inputs.entries()) {
    if (typeof input !== 'string') {
      anchors.push(parseCertificate(input, `trusted root #${i}`));
      continue;
    }
    let blocks: ArrayBuffer[];
    try {
      blocks = x509.PemConverter.decode(input);
    } catch (err) {
      throw new CertificateError(`trusted root #${i} is not PEM`, { cause: err });
    }
    if (blocks.length === 0) throw new CertificateError(`trusted root #${i} holds no PEM certificate`);
    for (const block of blocks) anchors.push(parseCertificate(new Uint8Array(block), `trusted root #${i}`));
  }
  if (anchors.length === 0) throw new CertificateError('no trusted roots given');
  return anchors;
}

const der = (c: x509.X509Certificate): Buffer => Buffer.from(c.rawData);
const describe = (c: x509.X509Certificate): string => JSON.stringify(c.subject);

/** `issuer` names `cert`'s issuer and its key verifies `cert`'s signature. */
async function issued(issuer: x509.X509Certificate, cert: x509.X509Certificate): Promise<boolean> {
  if (!Buffer.from(issuer.subjectName.toArrayBuffer()).equals(Buffer.from(cert.issuerName.toArrayBuffer()))) {
    return false;
  }
  try {
    return await cert.verify({ publicKey: issuer, signatureOnly: true });
  } catch {
    // Unsupported or malformed signature algorithms and keys cannot establish the link.
    return false;
  }
}

function checkTimeAndCriticals(cert: x509.X509Certificate, at: Date): void {
  if (at < cert.notBefore || at > cert.notAfter) {
    throw new CertificateError(
      `certificate ${describe(cert)} is not valid at ${at.toISOString()} ` +
        `(valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`,
    );
  }
  for (const ext of cert.extensions) {
    if (ext.critical && !UNDERSTOOD_CRITICAL.has(ext.type)) {
      throw new CertificateError(
        `certificate ${describe(cert)} has an unsupported critical extension ${ext.type}`,
      );
    }
  }
}

/** `cert` signs a path with `intermediatesBelow` CA certificates between it and the leaf. */
function checkIssuer(cert: x509.X509Certificate, intermediatesBelow: number): void {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca !== true) throw new CertificateError(`issuer ${describe(cert)} is not a CA (basicConstraints)`);
  if (bc.pathLength !== undefined && intermediatesBelow > bc.pathLength) {
    throw new CertificateError(`issuer ${describe(cert)} exceeds its pathLenConstraint`);
  }
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new CertificateError(`issuer ${describe(cert)} may not sign certificates (keyUsage)`);
  }
}

/**
 * The leaf must be usable for signing: keyUsage, if present, has digitalSignature; extendedKeyUsage, if present,
 * has codeSigning; and at least one of the two is present (a certificate that states no purpose is refused, as the
 * reference implementation refuses it).
 */
function checkLeaf(leaf: x509.X509Certificate): void {
  const ku = leaf.getExtension(x509.KeyUsagesExtension);
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  if (ku === null && eku === null) {
    throw new CertificateError(
      'signing certificate states no key usage (needs keyUsage or extendedKeyUsage)',
    );
  }
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0) {
    throw new CertificateError('signing certificate keyUsage lacks digitalSignature');
  }
  if (eku !== null && !eku.usages.map(String).includes(OID.codeSigning)) {
    throw new CertificateError('signing certificate extendedKeyUsage lacks codeSigning');
  }
}

export async function validateCertificateChain(
  chain: readonly Uint8Array[],
  options: ChainValidationOptions,
): Promise<ValidatedChain> {
  const anchors = parseAnchors(options.trustedRoots);
  const certs = chain.map((c, i) => parseCertificate(c, `certificate #${i} of the bundle`));
  const at = options.at ?? new Date();
  const leaf = certs[0];
  if (leaf === undefined) throw new CertificateError('the bundle certificate chain is empty');

  checkLeaf(leaf);
  let leafKey: KeyObject;
  try {
    leafKey = createPublicKey({ key: Buffer.from(leaf.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CertificateError('signing certificate public key cannot be read', { cause: err });
  }
  algorithmOf(leafKey);

  const path: x509.X509Certificate[] = [];
  let current = leaf;
  for (let i = 0; ; i++) {
    checkTimeAndCriticals(current, at);
    if (i > 0) checkIssuer(current, i - 1);
    path.push(current);
    const currentDer = der(current);
    if (anchors.some((a) => der(a).equals(currentDer))) return { leafKey, path };
    for (const anchor of anchors) {
      if (await issued(anchor, current)) {
        checkTimeAndCriticals(anchor, at);
        checkIssuer(anchor, i);
        path.push(anchor);
        return { leafKey, path };
      }
    }
    const next = certs[i + 1];
    if (next === undefined) throw new CertificateError('certificate chain does not lead to a trusted root');
    if (!(await issued(next, current))) {
      throw new CertificateError(`certificate #${i + 1} of the bundle did not issue certificate #${i}`);
    }
    current = next;
  }
}
