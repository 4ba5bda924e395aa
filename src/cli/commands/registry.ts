import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { KmsClientError, RegistryClient } from '../../client/index.ts';
import type { DatasetReference, LineageInput, Sensitivity, Stage } from '../../registry/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import type { Output } from '../output.ts';
import {
  actionFor,
  connectHttp,
  withConnectionOptions,
  type ConnectionOptions,
  type KmsCliIo,
} from './kms.ts';

/**
 * `warden model ...` and `warden dataset ...`: the registry through the HTTP API of a running server (address and
 * token from WARDEN_ADDR / WARDEN_TOKEN_FILE / WARDEN_CACERT, as every client command). Uploads and downloads
 * stream file by file with a progress bar on a TTY.
 */

type Options = ConnectionOptions & Record<string, unknown>;

function defaultIo(): KmsCliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

async function withRegistry<T>(
  io: KmsCliIo,
  options: Options,
  out: Output,
  fn: (client: RegistryClient) => Promise<T>,
): Promise<T> {
  const http = await connectHttp(io, options, out);
  try {
    return await fn(new RegistryClient(http));
  } finally {
    await http.close();
  }
}

function need(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new CliError('usage', `${what} is required`, ExitCode.usage);
  return value;
}

/** `name@version` */
function ref(text: string | undefined): { name: string; version: string } {
  const s = need(text, 'NAME@VERSION');
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1)
    throw new CliError('usage', `expected NAME@VERSION, got ${s}`, ExitCode.usage);
  return { name: s.slice(0, at), version: s.slice(at + 1) };
}

function datasetRef(text: string): DatasetReference {
  if (/^(sha256:)?[0-9a-f]{64}$/.test(text)) return { digest: text };
  return ref(text);
}

function parameterValue(text: string): string | number | boolean {
  if (text === 'true' || text === 'false') return text === 'true';
  const n = Number(text);
  return text.trim() !== '' && Number.isFinite(n) ? n : text;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

async function progressed<T>(
  out: Output,
  label: string,
  run: (onProgress: (done: number, total: number) => void) => Promise<T>,
): Promise<T> {
  let bar: ReturnType<Output['progress']> | undefined;
  try {
    return await run((done, total) => {
      bar ??= out.progress(label, total);
      bar.update(done);
    });
  } finally {
    bar?.stop();
  }
}

type Ref = { name: string; version: string };

/** The action of a command on one `name@version`: the registry call, then its summary (or JSON with --json). */
function onVersion<T>(
  io: KmsCliIo,
  call: (c: RegistryClient, target: Ref, options: Options) => Promise<T>,
  summary: (result: T) => string,
) {
  return actionFor(io)(async (out, options, [text]) => {
    const target = ref(text);
    const result = await withRegistry(io, options, out, (c) => call(c, target, options));
    out.result(summary(result), result);
  });
}

/** `--bundle <file>`, read before connecting so that a wrong path fails first. */
async function bundleOption(options: Options): Promise<string | undefined> {
  return options['bundle'] === undefined ? undefined : readFile(options['bundle'] as string, 'utf8');
}

const deepOption = (options: Options): { deep: boolean } => ({ deep: options['deep'] === true });

function registerModel(program: Command, io: KmsCliIo): void {
  const model = withConnectionOptions(program.command('model').description('model registry'));
  const action = actionFor(io);

  model
    .command('register <name@version> <dir>')
    .description('upload every file of <dir>, then hash, scan, encrypt and record the version')
    .option('--description <text>')
    .option('--framework <name>')
    .option('--license <spdx>')
    .option('--dataset <name@version|digest>', 'training dataset (repeatable)', collect)
    .option('--commit <sha>', 'code commit')
    .option('--repository <url>', 'code repository')
    .option('--param <key=value>', 'training parameter (repeatable)', collect)
    .option('--parent <version|name@version>', 'parent version')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target, dir]) => {
        const { name, version } = ref(target);
        const params: Record<string, string | number | boolean> = {};
        for (const p of (options['param'] as string[] | undefined) ?? []) {
          const eq = p.indexOf('=');
          if (eq <= 0) throw new CliError('usage', `--param wants key=value, got ${p}`, ExitCode.usage);
          params[p.slice(0, eq)] = parameterValue(p.slice(eq + 1));
        }
        const parent = options['parent'] as string | undefined;
        const lineage: LineageInput = {
          ...(options['dataset'] === undefined
            ? {}
            : { datasets: (options['dataset'] as string[]).map(datasetRef) }),
          ...(options['commit'] === undefined ? {} : { codeCommit: options['commit'] as string }),
          ...(options['repository'] === undefined ? {} : { codeRepository: options['repository'] as string }),
          ...(Object.keys(params).length === 0 ? {} : { parameters: params }),
          ...(parent === undefined
            ? {}
            : {
                parent: parent.includes('@')
                  ? { model: ref(parent).name, version: ref(parent).version }
                  : { version: parent },
              }),
        };
        const metadata = Object.fromEntries(
          ['description', 'framework', 'license'].flatMap((k) =>
            options[k] === undefined ? [] : [[k, options[k] as string]],
          ),
        );
        const v = await withRegistry(io, options, out, (c) =>
          progressed(out, 'upload', (onProgress) =>
            c.registerModel(name, version, need(dir, 'DIR'), { metadata, lineage, onProgress }),
          ),
        );
        out.result(
          `registered ${v.model}@${v.version}\ndigest sha256:${v.digest}\nfiles ${v.fileCount}, ${v.size} bytes, format ${v.format}\nscan ${v.scan.verdict ?? 'none'} (rules ${v.scan.rulesVersion ?? '-'})`,
          v,
        );
      }),
    );

  model
    .command('sign <name@version>')
    .description("sign with the registry's KMS key, or attach an OMS bundle with --bundle <file>")
    .option('--bundle <file>', 'externally produced Sigstore bundle (JSON)')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target]) => {
        const { name, version } = ref(target);
        const bundle = await bundleOption(options);
        const s = await withRegistry(io, options, out, (c) => c.sign(name, version, bundle));
        out.result(
          `signed by ${s.signerIdentity}${s.verifiedWith === null ? ' (NOT a trusted signer)' : `, verified with ${s.verifiedWith}`}`,
          s,
        );
      }),
    );

  model
    .command('verify <name@version>')
    .description('verify the signature against the trusted signers and stored digests')
    .option('--deep', 'also decrypt and re-hash every stored file')
    .option('--json', 'JSON output')
    .action(
      onVersion(
        io,
        (c, { name, version }, options) => c.verify(name, version, deepOption(options)),
        (r) =>
          `verified: ${r.signerIdentity} (trusted as ${r.verifiedWith}), ${r.filesChecked} files re-hashed`,
      ),
    );

  model
    .command('scan [name@version]')
    .description('re-scan a version with the current rules (without argument: every outdated version)')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target]) => {
        if (target === undefined) {
          const r = await withRegistry(io, options, out, (c) => c.rescanOutdated());
          out.result(
            [
              ...r.rescanned.map((x) => `${x.kind} ${x.name}@${x.version}: ${x.verdict ?? 'none'}`),
              ...r.failed.map((x) => `${x.kind} ${x.name}@${x.version}: FAILED ${x.code}`),
              `${r.rescanned.length} rescanned, ${r.failed.length} failed`,
            ].join('\n'),
            r,
          );
          return;
        }
        const { name, version } = ref(target);
        const s = await withRegistry(io, options, out, (c) => c.scan(name, version));
        out.result(`${name}@${version}: ${s.verdict ?? 'none'} (rules ${s.rulesVersion ?? '-'})`, s);
      }),
    );

  model
    .command('promote <name@version> <stage>')
    .description('move a stage alias (dev|staging|prod) to the version; prod files an approval request')
    .option('--approve <id>', 'approve a pending request instead (as a second person)')
    .option(
      '--waive <reason>',
      'first record an audited waiver of the current scan verdict (none when the scan is clean)',
    )
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target, stage]) => {
        const { name, version } = ref(target);
        const r = await withRegistry(io, options, out, async (c) => {
          if (options['approve'] !== undefined) return c.approve(name, options['approve'] as string);
          const waiver =
            options['waive'] !== undefined &&
            (await c.getVersion(name, version)).version.scan.verdict !== 'clean'
              ? await c.waive(name, version, options['waive'] as string)
              : undefined;
          try {
            return await c.promote(name, version, need(stage, 'STAGE') as Stage);
          } catch (err) {
            // The waiver is an audited decision of its own: it stays, and the user must know it does.
            if (waiver !== undefined && err instanceof KmsClientError) {
              throw new KmsClientError(
                err.code,
                err.status,
                `${err.message} (the waiver ${waiver.id} was recorded and stays)`,
              );
            }
            throw err;
          }
        });
        out.result(
          r.status === 'promoted'
            ? `${name}: ${r.stage} -> ${r.version}`
            : `approval required: a second person runs\n  warden model promote ${name}@${version} ${r.stage} --approve ${r.approvalId}`,
          r,
        );
      }),
    );

  model
    .command('quarantine <name[@version]>')
    .description('quarantine a model or one version (immediate), or lift it with --release')
    .option('--reason <text>', 'why (required unless --release)')
    .option('--release', 'lift the quarantine')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target]) => {
        const t = need(target, 'NAME');
        const { name, version } = t.includes('@') ? ref(t) : { name: t, version: undefined };
        const r = await withRegistry(io, options, out, (c) =>
          options['release'] === true
            ? c.release(name, version)
            : c.quarantine(name, need(options['reason'] as string | undefined, '--reason'), version),
        );
        out.result(`${options['release'] === true ? 'released' : 'quarantined'} ${t} (epoch ${r.epoch})`, r);
      }),
    );

  model
    .command('lineage <name@version>')
    .description('parent chain, children and training datasets')
    .option('--json', 'JSON output')
    .action(
      onVersion(
        io,
        (c, { name, version }) => c.lineage(name, version),
        (a) =>
          [
            `${a.version.model}@${a.version.version} sha256:${a.version.digest}`,
            ...a.version.lineage.datasets.map(
              (d) => `  trained on ${d.name ?? '?'}@${d.version ?? '?'} sha256:${d.digest}`,
            ),
            ...a.ancestors.map((p) => `  derived from ${p.model}@${p.version}`),
            ...a.children.map((p) => `  parent of ${p.model}@${p.version}`),
          ].join('\n'),
      ),
    );

  model
    .command('bom <name@version>')
    .description('CycloneDX 1.6 ML-BOM (JSON on stdout)')
    .action(
      action(async (out, options, [target]) => {
        const { name, version } = ref(target);
        const bom = await withRegistry(io, options, out, (c) => c.bom(name, version));
        io.stdout.write(`${JSON.stringify(bom, null, 2)}\n`);
      }),
    );

  model
    .command('download <name@version> <dir>')
    .description('download and verify every file into an empty directory')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target, dir]) => {
        const { name, version } = ref(target);
        const r = await withRegistry(io, options, out, (c) =>
          progressed(out, 'download', (onProgress) =>
            c.downloadModel(name, version, need(dir, 'DIR'), onProgress),
          ),
        );
        out.result(`${r.files} files, ${r.bytes} bytes verified`, r);
      }),
    );
}

function registerDataset(program: Command, io: KmsCliIo): void {
  const dataset = withConnectionOptions(program.command('dataset').description('dataset registry'));
  const action = actionFor(io);

  dataset
    .command('register <name@version> <dir>')
    .description(
      'upload every file of <dir>, then hash, scan, encrypt and record the version with its sensitivity label',
    )
    .requiredOption('--sensitivity <label>', 'public|internal|confidential|restricted')
    .requiredOption('--owner <owner>')
    .option('--description <text>')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target, dir]) => {
        const { name, version } = ref(target);
        const d = await withRegistry(io, options, out, (c) =>
          progressed(out, 'upload', (onProgress) =>
            c.registerDataset(name, version, need(dir, 'DIR'), {
              sensitivity: options['sensitivity'] as Sensitivity,
              owner: options['owner'] as string,
              ...(options['description'] === undefined
                ? {}
                : { description: options['description'] as string }),
              onProgress,
            }),
          ),
        );
        out.result(`registered ${d.dataset}@${d.version} sha256:${d.digest} (${d.sensitivity})`, d);
      }),
    );

  dataset
    .command('sign <name@version>')
    .description("sign with the registry's KMS key, or attach an OMS bundle with --bundle <file>")
    .option('--bundle <file>', 'externally produced Sigstore bundle (JSON)')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target]) => {
        const { name, version } = ref(target);
        const bundle = await bundleOption(options);
        const s = await withRegistry(io, options, out, (c) => c.signDataset(name, version, bundle));
        out.result(`signed by ${s.signerIdentity}`, s);
      }),
    );

  dataset
    .command('verify <name@version>')
    .description('verify before training use')
    .option('--deep', 'also decrypt and re-hash every stored file')
    .option('--json', 'JSON output')
    .action(
      onVersion(
        io,
        (c, { name, version }, options) => c.verifyDataset(name, version, deepOption(options)),
        (r) => `verified: ${r.signerIdentity}, ${r.filesChecked} files re-hashed`,
      ),
    );

  dataset
    .command('lineage <name@version|digest>')
    .description('model versions trained on the dataset (GDPR erasure impact)')
    .option('--json', 'JSON output')
    .action(
      action(async (out, options, [target]) => {
        const t = need(target, 'DATASET');
        const r = datasetRef(t);
        const versions = await withRegistry(io, options, out, (c) =>
          c.trainedOn('digest' in r ? { digest: r.digest } : { dataset: r.name, version: r.version }),
        );
        out.result(
          versions.length === 0
            ? 'no model version was trained on it'
            : versions.map((v) => `${v.model}@${v.version}`).join('\n'),
          versions,
        );
      }),
    );
}

export function registerRegistryCommands(program: Command, io: Partial<KmsCliIo> = {}): void {
  const full = { ...defaultIo(), ...io };
  registerModel(program, full);
  registerDataset(program, full);
}
