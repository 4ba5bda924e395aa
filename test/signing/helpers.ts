// @peculiar/x509 needs the Reflect metadata shim loaded first; tests get x509 from here, never directly.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { ModelSigningError } from '../../src/signing/index.ts';
import { vectorPath } from '../support/vectors.ts';

export { x509 };

/**
 * A bundle as raw JSON, typed loosely enough that tests can break it on purpose: fields they overwrite with wrong
 * types are `unknown`, and every object accepts extra keys.
 */
export interface RawBundle {
  mediaType: unknown;
  verificationMaterial: {
    publicKey?: { hint?: unknown; rawBytes?: unknown; keyDetails?: unknown; [extra: string]: unknown };
    x509CertificateChain?: { certificates: { rawBytes: string }[] };
    certificate?: { rawBytes: string };
    tlogEntries?: unknown;
    timestampVerificationData?: unknown;
    [extra: string]: unknown;
  };
  dsseEnvelope: {
    payload: string;
    payloadType: unknown;
    signatures: { sig?: unknown; keyid?: unknown; [extra: string]: unknown }[];
    [extra: string]: unknown;
  };
  [extra: string]: unknown;
}

/** Path inside the shared OMS v1.0 test vectors; a missing folder fails the test. */
export function omsVectors(...parts: string[]): string {
  return vectorPath('model-signing', 'test-vectors', 'v1.0', ...parts);
}

/** Raw bytes of a shared OMS v1.0 vector, e.g. `valid/key.bundle.json`. */
export function vectorBytes(rel: string): Buffer {
  return readFileSync(omsVectors(rel));
}

/** A shared OMS v1.0 vector parsed as JSON (a fresh copy each call). */
export function vectorBundle(rel: string): RawBundle {
  return JSON.parse(vectorBytes(rel).toString('utf8')) as RawBundle;
}

const created: string[] = [];
// Registered at import, at the top level of the test file, so it runs once after all of the file's tests (an
// `after` registered from inside a hook or test would run when that scope ends).
after(() => Promise.all(created.map((dir) => rm(dir, { recursive: true, force: true }))));

/** A fresh directory under the OS temp dir, removed when the test file finishes. */
export async function tempDir(prefix = 'warden-signing-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Writes files (POSIX relative path → content) under `root`, creating directories. */
export async function writeTree(root: string, files: Record<string, string | Uint8Array>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, ...rel.split('/'));
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
  }
}

/** Asserts `fn` rejects with an instance of `cls`, and returns the error for further checks. */
export async function rejectsWith<T extends Error>(
  fn: () => Promise<unknown>,
  cls: abstract new (...args: never[]) => T,
): Promise<T> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof cls) return err;
    throw new Error(`expected ${cls.name}, got ${String(err)}`, { cause: err });
  }
  throw new Error(`expected ${cls.name}, but it resolved`);
}

export function throwsWith<T extends Error>(fn: () => unknown, cls: abstract new (...args: never[]) => T): T {
  try {
    fn();
  } catch (err) {
    if (err instanceof cls) return err;
    throw new Error(`expected ${cls.name}, got ${String(err)}`, { cause: err });
  }
  throw new Error(`expected ${cls.name}, but it returned`);
}

/** Only the domain's own errors may escape a parser, whatever the input. */
export function onlyTypedErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ModelSigningError)) throw err;
  }
}

const subtle = webcrypto.subtle;

export type EcCurve = 'P-256' | 'P-384';

export interface IssuedCertificate {
  readonly cert: x509.X509Certificate;
  readonly keys: webcrypto.CryptoKeyPair;
  readonly privateKey: KeyObject;
}

const ecdsa = (curve: EcCurve): webcrypto.EcKeyGenParams => ({ name: 'ECDSA', namedCurve: curve });
const hashOf = (curve: EcCurve): string => (curve === 'P-256' ? 'SHA-256' : 'SHA-384');

export interface CertificateSpec {
  readonly subject: string;
  readonly curve?: EcCurve;
  readonly issuer?: IssuedCertificate;
  readonly ca?: boolean;
  readonly pathLength?: number;
  /** Bits of x509.KeyUsageFlags. */
  readonly keyUsage?: number;
  readonly extendedKeyUsage?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly extraExtensions?: readonly x509.Extension[];
}

/** Issues a certificate with @peculiar/x509 (self-signed when no issuer is given). */
export async function issue(spec: CertificateSpec): Promise<IssuedCertificate> {
  const curve = spec.curve ?? 'P-256';
  const keys = await subtle.generateKey(ecdsa(curve), true, ['sign', 'verify']);
  const extensions: x509.Extension[] = [...(spec.extraExtensions ?? [])];
  if (spec.ca !== undefined)
    extensions.push(new x509.BasicConstraintsExtension(spec.ca, spec.pathLength, true));
  if (spec.keyUsage !== undefined) {
    // Several usages are a bitwise OR of KeyUsageFlags members, which TypeScript types as a plain number.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
    extensions.push(new x509.KeyUsagesExtension(spec.keyUsage, true));
  }
  if (spec.extendedKeyUsage !== undefined)
    extensions.push(new x509.ExtendedKeyUsageExtension([...spec.extendedKeyUsage]));
  const issuerCurve =
    spec.issuer === undefined
      ? curve
      : ((spec.issuer.keys.privateKey.algorithm as webcrypto.EcKeyAlgorithm).namedCurve as EcCurve);
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${spec.subject}`,
    issuer: spec.issuer === undefined ? `CN=${spec.subject}` : spec.issuer.cert.subject,
    publicKey: keys.publicKey,
    signingKey: spec.issuer === undefined ? keys.privateKey : spec.issuer.keys.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: hashOf(issuerCurve) },
    notBefore: spec.notBefore ?? new Date(Date.now() - 3600_000),
    notAfter: spec.notAfter ?? new Date(Date.now() + 365 * 86400_000),
    extensions,
  });
  return { cert, keys, privateKey: KeyObject.from(keys.privateKey) };
}

export const CA_USAGE: number = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
export const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
export const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/** Root → intermediate → code-signing leaf, the usual shape of a private signing PKI. */
export async function pki(leafCurve: EcCurve = 'P-256'): Promise<{
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  leaf: IssuedCertificate;
}> {
  const root = await issue({ subject: 'Warden Test Root', curve: 'P-384', ca: true, keyUsage: CA_USAGE });
  const intermediate = await issue({
    subject: 'Warden Test Intermediate',
    issuer: root,
    ca: true,
    pathLength: 0,
    keyUsage: CA_USAGE,
  });
  const leaf = await issue({
    subject: 'Warden Model Signer',
    curve: leafCurve,
    issuer: intermediate,
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extendedKeyUsage: [CODE_SIGNING],
  });
  return { root, intermediate, leaf };
}

export const der = (c: IssuedCertificate): Uint8Array => new Uint8Array(c.cert.rawData);
