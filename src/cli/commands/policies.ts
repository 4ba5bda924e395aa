import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { PoliciesClient } from '../../client/index.ts';
import type { SimulatedDecision, SimulatedRequest } from '../../client/index.ts';
import { validatePolicies } from '../../policy/index.ts';
import type { PolicyDiagnostic } from '../../policy/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { naming } from './audit.ts';
import { actionFor, connectHttp, withConnectionOptions } from './kms.ts';
import type { ConnectionOptions, KmsCliIo } from './kms.ts';
import type { Output } from '../output.ts';

/**
 * `warden policies …`: Cedar policies. `validate` works offline against the Warden schema (for CI pipelines that
 * keep policies in a repository); the others call `/v1/policies`.
 */

/** Runs `fn` with an SDK client on the configured server, closing the connection after. */
async function withPolicies<T>(
  io: KmsCliIo,
  options: ConnectionOptions,
  out: Output,
  fn: (client: PoliciesClient) => Promise<T>,
): Promise<T> {
  const http = await connectHttp(io, options, out);
  try {
    return await fn(new PoliciesClient(http));
  } finally {
    await http.close();
  }
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** `Type::id` (or Cedar's `Warden::Type::"id"`) as an entity reference. */
function entityRef(text: string, what: string): { type: string; id: string } {
  const match = /^(?:Warden::)?([A-Za-z]+)::(?:"(.+)"|(.+))$/s.exec(text);
  const type = match?.[1];
  const id = match?.[2] ?? match?.[3];
  if (type === undefined || id === undefined) {
    throw new CliError(
      'usage',
      `${what} must be Type::id, e.g. User::alice or Key::payments`,
      ExitCode.usage,
    );
  }
  return { type, id };
}

/** `key=value` (a string) or `key:=<JSON>` (a number, boolean or list), as HTTPie writes them. */
function keyValues(items: readonly string[], what: string): Record<string, unknown> | undefined {
  if (items.length === 0) return undefined;
  const out: Record<string, unknown> = {};
  for (const item of items) {
    const typed = /^([^=:]+):=(.*)$/s.exec(item);
    const plain = typed === null ? /^([^=]+)=(.*)$/s.exec(item) : null;
    const key = typed?.[1] ?? plain?.[1];
    if (key === undefined) {
      throw new CliError('usage', `${what} ${item}: expected key=value or key:=<JSON>`, ExitCode.usage);
    }
    if (typed !== null) {
      try {
        out[key] = JSON.parse(typed[2] ?? '') as unknown;
      } catch {
        throw new CliError('usage', `${what} ${item}: the value after := is not JSON`, ExitCode.usage);
      }
    } else out[key] = plain?.[2];
  }
  return out;
}

/** Context values as the server takes them: the two non-string attributes converted when written key=value. */
function simulatedContext(items: readonly string[]): Record<string, unknown> | undefined {
  const context = keyValues(items, '--context');
  if (context === undefined) return undefined;
  if (typeof context.mfaAgeSeconds === 'string' && /^\d+$/.test(context.mfaAgeSeconds)) {
    context.mfaAgeSeconds = Number(context.mfaAgeSeconds);
  }
  if (context.networkChanged === 'true' || context.networkChanged === 'false') {
    context.networkChanged = context.networkChanged === 'true';
  }
  return context;
}

function describeSimulation(r: SimulatedDecision): string {
  const by =
    r.reasons.length > 0
      ? ` by ${r.reasons.join(', ')}`
      : r.decision === 'deny'
        ? ' (no policy permits it)'
        : '';
  const errors = r.errors.map((e) => `\nerror: ${e}`).join('');
  return `${r.decision}${by}${r.changed ? ' (with the change)' : ''}${errors}`;
}

function describeDiagnostic(file: string, d: PolicyDiagnostic): string {
  const where = d.line === undefined ? file : `${file}:${d.line}:${d.column ?? 0}`;
  return `${where}: ${d.severity}: ${d.message}${d.help === undefined ? '' : ` (${d.help})`}`;
}

export function registerPolicyCommands(program: Command, ioOverrides: Partial<KmsCliIo> = {}): void {
  const io: KmsCliIo = {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    ...ioOverrides,
  };
  const action = actionFor(io);
  const policies = withConnectionOptions(program.command('policies').description('Cedar access policies'));

  policies
    .command('validate <files...>')
    .description('validate .cedar files against the Warden schema, offline (exit 5 when any is invalid)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, _options, _args) => {
        const files = policies.commands.find((c) => c.name() === 'validate')?.args ?? [];
        const results = [];
        for (const file of files) {
          const result = validatePolicies(await naming(file, () => readFile(file, 'utf8')));
          results.push({ file, ok: result.ok, diagnostics: result.diagnostics });
        }
        const human = results
          .map((r) =>
            r.diagnostics.length === 0
              ? `${r.file}: ok`
              : r.diagnostics.map((d) => describeDiagnostic(r.file, d)).join('\n'),
          )
          .join('\n');
        out.result(human, { results });
        if (results.some((r) => !r.ok)) {
          throw new CliError('invalid_policy', 'some policies do not validate', ExitCode.malformed);
        }
      }),
    );

  policies
    .command('list')
    .description('every policy in force: built-in roles, guardrails, custom')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options) => {
        await withPolicies(io, options, out, async (client) => {
          const r = await client.list();
          out.result(
            r.policies
              .map(
                (p) =>
                  `${p.id}\t${p.source}\t${p.policyIds.length} polic${p.policyIds.length === 1 ? 'y' : 'ies'}`,
              )
              .join('\n'),
            r,
          );
        });
      }),
    );

  policies
    .command('show <id>')
    .description('the text of one policy in force')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [id]) => {
        const entry = await withPolicies(io, options, out, (client) => client.get(String(id)));
        out.result(entry.text, entry);
      }),
    );

  policies
    .command('put <id> <file>')
    .description('create or replace a custom policy from a .cedar file (validated by the server too)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [id, file]) => {
        const text = await naming(String(file), () => readFile(String(file), 'utf8'));
        const local = validatePolicies(text);
        if (!local.ok) {
          out.result(local.diagnostics.map((d) => describeDiagnostic(String(file), d)).join('\n'), local);
          throw new CliError('invalid_policy', `${String(file)} does not validate`, ExitCode.malformed);
        }
        // Installed all the same, but said: e.g. a `forbid` that tests a misspelt context attribute never applies.
        for (const d of local.diagnostics) out.warn(describeDiagnostic(String(file), d));
        const r = await withPolicies(io, options, out, (client) => client.put(String(id), text));
        out.result(`installed ${String(id)} (policy set version ${r.version})`, r);
      }),
    );

  policies
    .command('simulate <action> <resource>')
    .description(
      'what the policies in force decide about a request (e.g. kms.crypto.decrypt Key::payments); exit 9 on deny',
    )
    .requiredOption('--principal <Type::id>', 'who asks: User::alice or ServiceAccount::pipeline')
    .option('--role <role>', "a role of the principal's (repeatable)", collect, [])
    .option('--group <group>', "a group of the user's (repeatable)", collect, [])
    .option('--principal-attr <k=v>', 'a principal attribute, k=v or k:=<JSON> (repeatable)', collect, [])
    .option(
      '--resource-attr <k=v>',
      'a resource attribute, e.g. sensitivity=restricted (repeatable)',
      collect,
      [],
    )
    .option('--model <id>', 'the model of a ModelVersion resource')
    .option(
      '--context <k=v>',
      "request context: time=<ISO 8601>, sourceIp, mfaAgeSeconds, authMethod, environment (default: the server's), purpose, networkChanged (repeatable)",
      collect,
      [],
    )
    .option('--with <id=file>', 'decide as if the custom policy <id> were put from <file>')
    .option('--without <id>', 'decide as if the custom policy <id> were removed')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [actionId, resourceRef]) => {
        const o = options as Record<string, unknown>;
        const principal = entityRef(String(o.principal), '--principal');
        const resource = entityRef(String(resourceRef), 'the resource');
        if (o.with !== undefined && o.without !== undefined) {
          throw new CliError('usage', 'give --with or --without, not both', ExitCode.usage);
        }
        let change: SimulatedRequest['change'];
        if (typeof o.with === 'string') {
          const at = o.with.indexOf('=');
          if (at <= 0) throw new CliError('usage', '--with takes <id>=<file>', ExitCode.usage);
          const file = o.with.slice(at + 1);
          change = {
            put: { id: o.with.slice(0, at), text: await naming(file, () => readFile(file, 'utf8')) },
          };
        } else if (typeof o.without === 'string') change = { remove: o.without };
        const roles = o.role as string[];
        const groups = o.group as string[];
        const principalAttrs = keyValues(o.principalAttr as string[], '--principal-attr');
        const resourceAttrs = keyValues(o.resourceAttr as string[], '--resource-attr');
        const context = simulatedContext(o.context as string[]);
        // Types and shapes as typed on the command line: the server's schema checks them (400, exit 2).
        const body = {
          principal: {
            ...principal,
            ...(roles.length === 0 ? {} : { roles }),
            ...(groups.length === 0 ? {} : { groups }),
            ...(principalAttrs === undefined ? {} : { attrs: principalAttrs }),
          },
          action: String(actionId),
          resource: {
            ...resource,
            ...(resourceAttrs === undefined ? {} : { attrs: resourceAttrs }),
            ...(typeof o.model === 'string' ? { model: o.model } : {}),
          },
          ...(context === undefined ? {} : { context }),
          ...(change === undefined ? {} : { change }),
        } as SimulatedRequest;
        const r = await withPolicies(io, options, out, (client) => client.simulate(body));
        out.result(describeSimulation(r), r);
        if (r.decision === 'deny')
          throw new CliError('denied', 'the request would be denied', ExitCode.forbidden);
      }),
    );

  policies
    .command('delete <id>')
    .description('remove a custom policy (built-in roles, guardrails and policy-directory files cannot be)')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [id]) => {
        const removed = await withPolicies(io, options, out, (client) => client.remove(String(id)));
        if (!removed) throw new CliError('not_found', `no custom policy ${String(id)}`, ExitCode.usage);
        out.result(`removed ${String(id)}`, { removed });
      }),
    );
}
