import { createWriteStream } from 'node:fs';
import { lstat, readFile, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import {
  eventMatchesLeaf,
  MerkleProofError,
  NoteVerificationError,
  openCheckpoint,
  parseVerifierKey,
  verifyConsistency,
  verifyExportFile,
  verifyInclusion,
} from '../../audit/index.ts';
import type { PreviousCheckpoint, VerifyExportReport } from '../../audit/index.ts';
import { AuditClient } from '../../client/index.ts';
import type { AuditEventQuery } from '../../client/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import type { Output } from '../output.ts';
import { publishDurably, temporaryBeside } from '../../durable/index.ts';
import { actionFor, connectHttp, promptHidden, readStdin, withConnectionOptions } from './kms.ts';
import type { ConnectionOptions, KmsCliIo } from './kms.ts';

/**
 * `warden audit …`: the tamper-evident audit log. `verify` works offline on an export, a verifier key and an
 * optional checkpoint saved earlier; the other commands call the server (`/v1/audit/...`) and check every proof
 * they receive against a signed checkpoint before printing it.
 */

const fromHex = (hex: string): Buffer => Buffer.from(hex, 'hex');

async function withAudit<T>(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  fn: (audit: AuditClient) => Promise<T>,
): Promise<T> {
  const http = await connectHttp(io, options, out);
  try {
    return await fn(new AuditClient(http));
  } finally {
    await http.close();
  }
}

function sizeArg(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^(0|[1-9][0-9]{0,14})$/.test(text)) {
    throw new CliError('usage', `${name} must be a non-negative integer`, ExitCode.usage);
  }
  return Number(text);
}

/**
 * Runs a check of what the server sent (or of a checkpoint saved earlier): a signature or proof that does not
 * verify is evidence of tampering, exit 4 like `audit verify`, said with `what` was being checked.
 */
function verifying<T>(what: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof NoteVerificationError || err instanceof MerkleProofError) {
      throw new CliError('verification_failed', `${what}: ${err.message}`, ExitCode.authentication);
    }
    throw err;
  }
}

async function verifierKeyFrom(text: string): Promise<string> {
  const value = text.startsWith('@') ? (await readFile(text.slice(1), 'utf8')).trim() : text.trim();
  try {
    parseVerifierKey(value);
  } catch {
    throw new CliError(
      'usage',
      'not a verifier key (<name>+<id>+<base64>), or @file holding one',
      ExitCode.usage,
    );
  }
  return value;
}

/** The key checkpoints are checked with, where it came from, and the origin they must name. */
interface CheckpointKey {
  readonly verifierKey: string;
  readonly verifier: ReturnType<typeof parseVerifierKey>;
  readonly origin: string;
  readonly source: 'pinned' | 'server';
}

/**
 * The key a command checks checkpoints with: the one given with `--key` (an auditor's own copy, read as `audit
 * verify` reads it; the origin is its name, as Warden's checkpoint key is named after the log's origin), else the
 * one the server publishes, with the server's origin — which proves only that the server is consistent with itself.
 */
async function checkpointKey(client: AuditClient, key: unknown): Promise<CheckpointKey> {
  if (typeof key === 'string') {
    const verifierKey = await verifierKeyFrom(key);
    const verifier = parseVerifierKey(verifierKey);
    return { verifierKey, verifier, origin: verifier.keyName, source: 'pinned' };
  }
  const { verifierKey, origin } = await client.verifierKey();
  return { verifierKey, verifier: parseVerifierKey(verifierKey), origin, source: 'server' };
}

/** The line the human output of a proof ends with: which key vouched for the checkpoint. */
function checkedWith(key: CheckpointKey): string {
  const id = key.verifierKey.split('+').slice(0, 2).join('+');
  return key.source === 'pinned'
    ? `checked with the pinned verifier key ${id}`
    : `checked with the verifier key the server publishes (not pinned: give --key): ${id}`;
}

const PIN_KEY_HELP =
  'the log verifier key to check the checkpoint with, or @file holding it, as audit verify takes it ' +
  '(default: the key the server publishes, which a compromised server could replace)';

function describeReport(report: VerifyExportReport): string {
  if (report.ok) {
    return [
      `verified: ${report.entriesChecked} entries, ${report.bodiesChecked} bodies, tree size ${String(report.treeSize)}`,
      `root ${Buffer.from(report.root).toString('hex')}`,
      ...(report.from !== undefined &&
      report.to !== undefined &&
      (report.from > 0 || report.to < (report.treeSize ?? 0))
        ? [
            report.from === report.to
              ? 'no event bodies: a time-range export with an empty range (hashes verified)'
              : `event bodies only for entries ${report.from}..${report.to - 1} (a time-range export; the others' hashes verified)`,
          ]
        : []),
      ...(report.prunedBodies > 0
        ? [`${report.prunedBodies} bodies pruned by retention (hashes verified)`]
        : []),
    ].join('\n');
  }
  const lines = report.problems.map((p) => {
    const where =
      p.index !== undefined
        ? `entry ${p.index}`
        : p.range !== undefined
          ? `entries ${p.range[0]}..${p.range[1] - 1}`
          : p.line !== undefined
            ? `line ${p.line}`
            : 'export';
    return `  ${p.kind} at ${where}: ${p.message}`;
  });
  if (report.problemsOmitted > 0) lines.push(`  … and ${report.problemsOmitted} more`);
  return `TAMPERING OR DAMAGE DETECTED:\n${lines.join('\n')}`;
}

export function registerAuditCommands(program: Command, ioOverrides: Partial<KmsCliIo> = {}): void {
  const io: KmsCliIo = {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    ...ioOverrides,
  };
  const action = actionFor(io);
  const audit = withConnectionOptions(
    program.command('audit').description('the tamper-evident audit log: verify, proofs, queries, export'),
  );

  audit
    .command('verify <export>')
    .description(
      'verify an exported log offline: every entry, the root, the signed checkpoint, an earlier one',
    )
    .requiredOption('--key <vkey>', 'the log verifier key, or @file holding it')
    .option('--previous <file>', 'a checkpoint note saved earlier: the export must be consistent with it')
    .option('--origin <origin>', 'expected log origin (default: the key name)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [file]) => {
        const verifierKey = await verifierKeyFrom(String(options.key));
        const previousFile = typeof options.previous === 'string' ? options.previous : undefined;
        const previous: PreviousCheckpoint | undefined =
          previousFile === undefined
            ? undefined
            : { note: await naming(previousFile, () => readFile(previousFile, 'utf8')) };
        const report = await naming(String(file), () =>
          verifyExportFile(String(file), {
            verifierKey,
            ...(typeof options.origin === 'string' ? { origin: options.origin } : {}),
            ...(previous === undefined ? {} : { previous }),
          }),
        );
        out.result(describeReport(report), { ...report, root: Buffer.from(report.root).toString('hex') });
        if (!report.ok) {
          throw new CliError('verification_failed', 'the export does not verify', ExitCode.authentication);
        }
      }),
    );

  audit
    .command('checkpoint')
    .description('show the latest signed checkpoint, checked against the verifier key')
    .option('--key <vkey>', PIN_KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options) => {
        await withAudit(io, options, out, async (client) => {
          const key = await checkpointKey(client, options.key);
          const cp = await client.checkpoint();
          verifying("the server's checkpoint does not verify", () =>
            openCheckpoint(cp.note, [key.verifier], key.origin),
          );
          // The note alone (it is saved for a later `audit consistency`); the key's source is in --json.
          out.result(cp.note.trimEnd(), {
            ...cp,
            verifierKey: key.verifierKey,
            verifierKeySource: key.source,
          });
        });
      }),
    );

  audit
    .command('query')
    .description('events by principal, action, resource, outcome and time range (all pages)')
    .option('--principal <id>')
    .option('--action <action>')
    .option('--resource <resource>')
    .option('--outcome <outcome>', 'success | failure | denied')
    .option('--from <time>', 'RFC 3339 or epoch ms, inclusive')
    .option('--to <time>', 'RFC 3339 or epoch ms, exclusive')
    .option('--limit <n>', 'stop after this many events', '1000')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options) => {
        const limit = sizeArg('--limit', String(options.limit)) ?? 1000;
        const q: AuditEventQuery = {
          ...(typeof options.principal === 'string' ? { principal: options.principal } : {}),
          ...(typeof options.action === 'string' ? { action: options.action } : {}),
          ...(typeof options.resource === 'string' ? { resource: options.resource } : {}),
          ...(typeof options.outcome === 'string'
            ? { outcome: options.outcome as 'success' | 'failure' | 'denied' }
            : {}),
          ...(typeof options.from === 'string' ? { from: options.from } : {}),
          ...(typeof options.to === 'string' ? { to: options.to } : {}),
        };
        await withAudit(io, options, out, async (client) => {
          const events = [];
          // One event past the limit tells whether the answer was cut short (`--limit 0` included).
          let more = false;
          for await (const e of client.allEvents(q)) {
            if (events.length >= limit) {
              more = true;
              break;
            }
            events.push(e);
          }
          if (more) out.warn(`more events match: stopped at --limit ${limit}`);
          // A body edited in the store no longer hashes to its leaf (which proofs tie to the signed root).
          const altered = new Set(
            events
              .filter((e) => e.event !== null && !eventMatchesLeaf(e.index, fromHex(e.leafHash), e.event))
              .map((e) => e.index),
          );
          const human = events
            .map((e) => {
              const ev = e.event as {
                action?: string;
                principal?: { id?: string };
                resource?: string;
                outcome?: string;
              } | null;
              return ev === null
                ? `${e.index}\t${e.time}\t(body pruned)`
                : `${e.index}\t${e.time}\t${ev.principal?.id ?? '?'}\t${ev.action ?? '?'}\t${ev.resource ?? ''}\t${ev.outcome ?? ''}${altered.has(e.index) ? '\tALTERED: does not match its leaf hash' : ''}`;
            })
            .join('\n');
          out.result(human === '' ? (more ? '' : 'no matching events') : human, {
            events,
            more,
            altered: [...altered],
          });
          if (altered.size > 0) {
            throw new CliError(
              'verification_failed',
              `${altered.size} event${altered.size === 1 ? ' does' : 's do'} not match its leaf hash (entries ${[...altered].join(', ')}): the stored log was altered`,
              ExitCode.authentication,
            );
          }
        });
      }),
    );

  audit
    .command('proof <index>')
    .description('inclusion proof of one event, verified against the signed checkpoint')
    .option('--key <vkey>', PIN_KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [indexText]) => {
        const index = sizeArg('index', indexText) ?? 0;
        await withAudit(io, options, out, async (client) => {
          const key = await checkpointKey(client, options.key);
          const cp = await client.checkpoint();
          verifying("the server's checkpoint does not verify", () =>
            openCheckpoint(cp.note, [key.verifier], key.origin),
          );
          const proof = await client.inclusionProof(index, cp.treeSize);
          verifying(`event ${index} is not proven to be in the signed tree`, () => {
            verifyInclusion(
              fromHex(proof.leafHash),
              index,
              cp.treeSize,
              proof.proof.map(fromHex),
              fromHex(cp.rootHash),
            );
          });
          // The proof vouches for the leaf hash; the event the log shows for that index must be what it hashes.
          const shown = (await client.events({ ...(index === 0 ? {} : { after: index - 1 }), limit: 1 }))
            .events[0];
          if (
            shown?.index !== index ||
            shown.leafHash !== proof.leafHash ||
            (shown.event !== null && !eventMatchesLeaf(index, fromHex(shown.leafHash), shown.event))
          ) {
            throw new CliError(
              'verification_failed',
              `event ${index} as the log shows it does not match its leaf hash: the stored log was altered`,
              ExitCode.authentication,
            );
          }
          out.result(
            `event ${index} is included in the signed tree of size ${cp.treeSize} (${proof.proof.length} hashes)\n` +
              checkedWith(key),
            { ...proof, checkpoint: cp.note, verifierKey: key.verifierKey, verifierKeySource: key.source },
          );
        });
      }),
    );

  audit
    .command('consistency <previous-checkpoint-file>')
    .description('prove the current log extends a checkpoint saved earlier (nothing rewritten)')
    .option('--key <vkey>', PIN_KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [file]) => {
        const note = await readFile(String(file), 'utf8');
        await withAudit(io, options, out, async (client) => {
          const key = await checkpointKey(client, options.key);
          const old = verifying(
            `the saved checkpoint ${String(file)} does not verify with the log's key`,
            () => openCheckpoint(note, [key.verifier], key.origin).checkpoint,
          );
          const cp = await client.checkpoint();
          const current = verifying(
            "the server's checkpoint does not verify",
            () => openCheckpoint(cp.note, [key.verifier], key.origin).checkpoint,
          );
          if (current.treeSize < old.treeSize) {
            throw new CliError(
              'verification_failed',
              `the log of size ${current.treeSize} is smaller than the saved checkpoint of size ${old.treeSize}: entries were removed (rolled back or replaced log)`,
              ExitCode.authentication,
            );
          }
          const proof = await client.consistencyProof(old.treeSize, current.treeSize);
          verifying(
            `the log of size ${current.treeSize} does not extend the saved checkpoint of size ${old.treeSize} (forked or rewritten log)`,
            () => {
              verifyConsistency(
                old.treeSize,
                current.treeSize,
                proof.proof.map(fromHex),
                old.rootHash,
                current.rootHash,
              );
            },
          );
          out.result(
            `the log of size ${current.treeSize} extends the saved checkpoint of size ${old.treeSize}\n` +
              checkedWith(key),
            {
              ...proof,
              checkpoint: cp.note,
              verifierKey: key.verifierKey,
              verifierKeySource: key.source,
            },
          );
        });
      }),
    );

  audit
    .command('hash')
    .description('the keyed hash a sensitive value is recorded under (value read from stdin, never argv)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options) => {
        const value =
          io.stdin.isTTY === true
            ? await promptHidden(io, 'value: ')
            : (await readStdin(io, 65536)).toString('utf8').replace(/\r?\n$/, '');
        if (value === '') throw new CliError('usage', 'no value given on stdin', ExitCode.usage);
        await withAudit(io, options, out, async (client) => {
          const hash = await client.hash(value);
          out.result(hash, { hash });
        });
      }),
    );

  audit
    .command('export')
    .description('export the log (with bodies of events in [from, to)) for offline verification or a SIEM')
    .requiredOption('-o, --output <file>', 'where to write the export')
    .option('-f, --force', 'replace an existing output file')
    .option('--from <time>', 'RFC 3339 or epoch ms')
    .option('--to <time>', 'RFC 3339 or epoch ms')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options) => {
        const target = String(options.output);
        const force = options.force === true;
        // Checked before the export is requested, and again (atomically) when the file is published.
        if (!force && (await lstat(target).catch(() => undefined)) !== undefined) throw outputExists(target);
        await withAudit(io, options, out, async (client) => {
          const stream = await client.export({
            ...(typeof options.from === 'string' ? { from: options.from } : {}),
            ...(typeof options.to === 'string' ? { to: options.to } : {}),
          });
          const temporary = temporaryBeside(target);
          try {
            // Evidence handed to an auditor: on disk (file and directory entry) before the command reports it.
            await pipeline(stream, createWriteStream(temporary, { flags: 'wx', mode: 0o600, flush: true }));
          } catch (err) {
            await rm(temporary, { force: true });
            // Name the file the user asked for (a missing directory, no permission), not the temporary one.
            const errno = err as NodeJS.ErrnoException;
            if (errno.path === temporary) errno.path = target;
            throw err;
          }
          try {
            await publishDurably(temporary, target, { exclusive: !force });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw outputExists(target);
            throw err;
          }
          out.result(`exported to ${target}`, { output: target });
        });
      }),
    );
}

function outputExists(file: string): CliError {
  return new CliError('output_exists', `${file} already exists (use --force to replace it)`, ExitCode.io);
}

/** Names `file` in a file-system error that does not (reading a directory fails with EISDIR and no path). */
export async function naming<T>(file: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const errno = err as NodeJS.ErrnoException;
    if (typeof errno.syscall === 'string' && errno.path === undefined) errno.path = file;
    throw err;
  }
}
