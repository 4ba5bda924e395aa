import { generateKeyPairSync } from 'node:crypto';
import { isIP } from 'node:net';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { WardenHttp } from '../../client/index.ts';
import { makeDirectoryDurably, writeFileDurably } from '../../durable/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import type { Output } from '../output.ts';
import { actionFor, connectHttp, withConnectionOptions } from './kms.ts';
import type { ConnectionOptions, KmsCliIo } from './kms.ts';

/**
 * `warden ca ...`: Warden's internal CA over its HTTP API (docs/ca.md). Connection as for `warden keys`
 * (`WARDEN_ADDR`, `WARDEN_CACERT`, `WARDEN_TOKEN`/`WARDEN_TOKEN_FILE`). Private keys are generated here, written
 * 0600 into `--out`, and never sent anywhere: the CA receives the public key (or a CSR) only.
 */

interface CaInfo {
  serial: string;
  subject: string;
  keyVersion: number;
  notBefore: string;
  notAfter: string;
  certificate: string;
}

interface Issued {
  serial: string;
  profile: string;
  identity: string;
  notBefore: string;
  notAfter: string;
  certificate: string;
  chain: string;
  caCertificate: string;
}

interface CertificateRecordView {
  serial: string;
  profile: string;
  identity: string;
  notAfter: string;
  revokedAt: string | null;
  revocationReason: string | null;
}

const MAX_CSR_FILE_BYTES = 32 * 1024;
const REASONS = [
  'unspecified',
  'keyCompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
];

async function withHttp<T>(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  fn: (http: WardenHttp) => Promise<T>,
  needsToken = true,
): Promise<T> {
  const http = await connectHttp(io, options, out, needsToken);
  try {
    return await fn(http);
  } finally {
    await http.close();
  }
}

/** `30m`, `12h`, `1d` (or plain seconds) as seconds. */
function lifetimeOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d{1,7})([smhd]?)$/.exec(text.trim());
  if (match === null) throw new CliError('usage', '--lifetime is a number with s, m, h or d', ExitCode.usage);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

function list(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

async function writeOut(file: string, data: string, mode: number, force: boolean): Promise<void> {
  try {
    await writeFileDurably(file, data, { mode, exclusive: !force });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CliError('output_exists', `${file} already exists (use --force to replace it)`, ExitCode.io);
    }
    throw err;
  }
}

/**
 * Refuses before anything is issued when an output file exists (unless `force`): finding out afterwards would
 * leave a certificate issued whose key was thrown away, or a new key.pem next to the old cert.pem.
 */
async function refuseExisting(files: readonly string[], force: boolean): Promise<void> {
  if (force) return;
  for (const file of files) {
    if ((await lstat(file).catch(() => undefined)) !== undefined) {
      throw new CliError('output_exists', `${file} already exists (use --force to replace it)`, ExitCode.io);
    }
  }
}

function describeCa(info: CaInfo): string {
  return `${info.subject.replace(/\n/g, ', ')}  key version ${info.keyVersion}  serial ${info.serial}\n  valid ${info.notBefore} .. ${info.notAfter}`;
}

function describeIssued(issued: Issued, files: readonly string[]): string {
  const lines = [
    `issued ${issued.profile} certificate ${issued.serial}`,
    `  identity  ${issued.identity}`,
    `  valid     ${issued.notBefore} .. ${issued.notAfter}`,
  ];
  for (const f of files) lines.push(`  wrote     ${f}`);
  return lines.join('\n');
}

interface IssueOptions {
  csr?: string;
  server?: string;
  client?: string;
  dns?: string[];
  ip?: string[];
  lifetime?: string;
  out?: string;
  force?: boolean;
}

/** The issue request body: what to certify comes from the flags, never from the CSR. */
function issueBody(o: IssueOptions, key: { csr: string } | { publicKey: string }): Record<string, unknown> {
  const lifetimeSeconds = lifetimeOption(o.lifetime);
  const common = { ...key, ...(lifetimeSeconds === undefined ? {} : { lifetimeSeconds }) };
  if (o.client !== undefined) {
    if (o.server !== undefined || o.dns !== undefined || o.ip !== undefined) {
      throw new CliError('usage', '--client takes no --server, --dns or --ip', ExitCode.usage);
    }
    return { profile: 'client', identity: o.client, ...common };
  }
  const names = [...(o.server === undefined ? [] : [o.server]), ...(o.dns ?? [])];
  const dnsNames = names.filter((n) => isIP(n) === 0);
  const ipAddresses = [...names.filter((n) => isIP(n) !== 0), ...(o.ip ?? [])];
  if (dnsNames.length + ipAddresses.length === 0) {
    throw new CliError(
      'usage',
      'name the certificate: --server <name> or --client <identity>',
      ExitCode.usage,
    );
  }
  return {
    profile: 'server',
    ...(dnsNames.length === 0 ? {} : { dnsNames }),
    ...(ipAddresses.length === 0 ? {} : { ipAddresses }),
    ...common,
  };
}

export function registerCaCommands(program: Command, io: Partial<KmsCliIo> = {}): void {
  const resolved: KmsCliIo = {
    stdin: io.stdin ?? process.stdin,
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
  };
  const action = actionFor(resolved);
  const ca = withConnectionOptions(
    program.command('ca').description("Warden's internal certificate authority (mTLS certificates)"),
  );

  ca.command('init')
    .description('create the CA key in the KMS (if missing) and its CA certificate; idempotent')
    .option('--key-type <type>', 'ecdsa-p256 or ecdsa-p384', 'ecdsa-p256')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const keyType = options.keyType as string;
        if (keyType !== 'ecdsa-p256' && keyType !== 'ecdsa-p384') {
          throw new CliError('usage', '--key-type must be ecdsa-p256 or ecdsa-p384', ExitCode.usage);
        }
        const info = await withHttp(
          resolved,
          options,
          out,
          async (http) => (await http.request<CaInfo>('POST', '/v1/ca/init', { keyType })).body,
        );
        out.result(describeCa(info), info);
      }),
    );

  ca.command('rotate')
    .description('rotate the CA key: a new CA certificate; the old one stays trusted until it expires')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const info = await withHttp(
          resolved,
          options,
          out,
          async (http) => (await http.request<CaInfo>('POST', '/v1/ca/rotate', {})).body,
        );
        out.result(describeCa(info), info);
      }),
    );

  ca.command('show')
    .description('show the trust bundle (every CA certificate not yet expired)')
    .option('--out <file>', 'write the bundle as PEM to this file')
    .option('--force', 'replace an existing file')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const bundle = await withHttp(
          resolved,
          options,
          out,
          async (http) =>
            (
              await http.request<{ pem: string; certificates: CaInfo[] }>(
                'GET',
                '/v1/ca/certificates',
                undefined,
                {
                  anonymous: true,
                },
              )
            ).body,
          false,
        );
        if (bundle.certificates.length === 0) {
          throw new CliError(
            // The code the server's CA gives the same condition (`warden ca issue` before init).
            'ca_not_initialized',
            'the CA has no certificate yet: an administrator runs `warden ca init`',
            ExitCode.unavailable,
          );
        }
        const file = options.out as string | undefined;
        if (file !== undefined) await writeOut(file, bundle.pem, 0o644, options.force === true);
        const human = bundle.certificates.map(describeCa).join('\n');
        out.result(file === undefined ? `${human}\n\n${bundle.pem}` : `${human}\n  wrote ${file}`, bundle);
      }),
    );

  ca.command('issue')
    .description(
      'issue a certificate: --server <name> or --client <identity>; from --csr <file>, or a key generated here',
    )
    .option('--csr <file>', 'PKCS#10 request (PEM); only its public key is used')
    .option('--server <name>', 'server certificate for this DNS name or IP address')
    .option('--client <identity>', 'client certificate for service:<name> or user:<name>')
    .option('--dns <name>', 'additional DNS name (repeatable)', list)
    .option('--ip <address>', 'additional IP address (repeatable)', list)
    .option('--lifetime <duration>', 'e.g. 30m, 12h (defaults and maxima are the CA’s)')
    .option('--out <dir>', 'write cert.pem (chain), ca.pem and, for a generated key, key.pem (0600)')
    .option('--force', 'replace existing files')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const o = options as IssueOptions & ConnectionOptions;
        const force = o.force === true;
        let key: { csr: string } | { publicKey: string };
        let privatePem: string | undefined;
        if (o.csr !== undefined) {
          const csr = await readFile(o.csr);
          if (csr.length > MAX_CSR_FILE_BYTES)
            throw new CliError('usage', `${o.csr} is too large`, ExitCode.usage);
          key = { csr: csr.toString('utf8') };
        } else {
          if (o.out === undefined) {
            throw new CliError(
              'usage',
              'a generated private key is written to a file only: give --out <dir> (or bring a --csr)',
              ExitCode.usage,
            );
          }
          const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
          privatePem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
          key = { publicKey: pair.publicKey.export({ format: 'pem', type: 'spki' }).toString() };
        }
        const body = issueBody(o, key);
        const outFiles =
          o.out === undefined
            ? []
            : [...(privatePem === undefined ? [] : ['key.pem']), 'cert.pem', 'ca.pem'].map((name) =>
                path.join(o.out as string, name),
              );
        await refuseExisting(outFiles, force);
        const issued = await withHttp(
          resolved,
          o,
          out,
          async (http) => (await http.request<Issued>('POST', '/v1/ca/issue', body)).body,
        );
        const files: string[] = [];
        if (o.out !== undefined) {
          await makeDirectoryDurably(o.out);
          if (privatePem !== undefined) {
            const keyFile = path.join(o.out, 'key.pem');
            await writeOut(keyFile, privatePem, 0o600, force);
            files.push(keyFile);
          }
          for (const [name, pem] of [
            ['cert.pem', issued.chain],
            ['ca.pem', issued.caCertificate],
          ] as const) {
            const file = path.join(o.out, name);
            await writeOut(file, pem, 0o644, force);
            files.push(file);
          }
        }
        const human = describeIssued(issued, files);
        out.result(o.out === undefined ? `${human}\n\n${issued.chain}` : human, { ...issued, files });
      }),
    );

  ca.command('revoke')
    .description('revoke an issued certificate by serial number')
    .argument('<serial>', 'hex serial number (colons allowed)')
    .option('--reason <reason>', REASONS.join(', '), 'unspecified')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, args) => {
        const reason = options.reason as string;
        if (!REASONS.includes(reason)) {
          throw new CliError('usage', `--reason must be one of ${REASONS.join(', ')}`, ExitCode.usage);
        }
        const record = await withHttp(
          resolved,
          options,
          out,
          async (http) =>
            (
              await http.request<CertificateRecordView>('POST', '/v1/ca/revoke', {
                serial: args[0] ?? '',
                reason,
              })
            ).body,
        );
        out.result(`revoked ${record.serial} (${record.identity}): ${reason}`, record);
      }),
    );

  ca.command('crl')
    .description('fetch the current CRL')
    .option('--out <file>', 'write it as PEM to this file')
    .option('--force', 'replace an existing file')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const crl = await withHttp(
          resolved,
          options,
          out,
          async (http) =>
            (
              await http.request<{ crl: string; thisUpdate: string; nextUpdate: string; entries: number }>(
                'GET',
                '/v1/ca/crl?format=json',
                undefined,
                { anonymous: true },
              )
            ).body,
          false,
        );
        const file = options.out as string | undefined;
        if (file !== undefined) await writeOut(file, crl.crl, 0o644, options.force === true);
        const human = `CRL with ${crl.entries} revoked certificate(s), ${crl.thisUpdate} .. ${crl.nextUpdate}`;
        out.result(file === undefined ? `${human}\n\n${crl.crl}` : `${human}\n  wrote ${file}`, crl);
      }),
    );

  ca.command('list')
    .description('list issued certificates (unexpired unless --all)')
    .option('--profile <profile>', 'ca, server or client')
    .option('--all', 'include expired certificates')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options) => {
        const query = new URLSearchParams();
        if (typeof options.profile === 'string') query.set('profile', options.profile);
        if (options.all === true) query.set('includeExpired', 'true');
        const { certificates } = await withHttp(
          resolved,
          options,
          out,
          async (http) =>
            (
              await http.request<{ certificates: CertificateRecordView[] }>(
                'GET',
                `/v1/ca/issued${query.size === 0 ? '' : `?${query.toString()}`}`,
              )
            ).body,
        );
        const lines = certificates.map(
          (c) =>
            `${c.serial}  ${c.profile.padEnd(6)}  ${c.notAfter}  ${c.revokedAt === null ? 'valid  ' : 'REVOKED'}  ${c.identity}`,
        );
        out.result(lines.join('\n') || 'no certificates', certificates);
      }),
    );
}
