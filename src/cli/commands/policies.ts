import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { validatePolicies } from '../../policy/index.ts';
import type { PolicyDiagnostic } from '../../policy/index.ts';
import { CliError, ExitCode } from '../exit-codes.ts';
import { naming } from './audit.ts';
import { actionFor, connectHttp, withConnectionOptions } from './kms.ts';
import type { KmsCliIo } from './kms.ts';

/**
 * `warden policies …`: Cedar policies. `validate` works offline against the Warden schema (for CI pipelines that
 * keep policies in a repository); the others call `/v1/policies`.
 */

interface PolicyEntry {
  id: string;
  source: string;
  text: string;
  policyIds: string[];
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
        const http = await connectHttp(io, options, out);
        try {
          const r = await http.json<{ version: number; policies: PolicyEntry[] }>('GET', '/v1/policies');
          out.result(
            r.policies
              .map(
                (p) =>
                  `${p.id}\t${p.source}\t${p.policyIds.length} polic${p.policyIds.length === 1 ? 'y' : 'ies'}`,
              )
              .join('\n'),
            r,
          );
        } finally {
          await http.close();
        }
      }),
    );

  policies
    .command('show <id>')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [id]) => {
        const http = await connectHttp(io, options, out);
        try {
          const entry = await http.json<PolicyEntry>('GET', `/v1/policies/${encodeURIComponent(String(id))}`);
          out.result(entry.text, entry);
        } finally {
          await http.close();
        }
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
        const http = await connectHttp(io, options, out);
        try {
          const r = await http.json<{ version: number }>(
            'PUT',
            `/v1/policies/${encodeURIComponent(String(id))}`,
            {
              text,
            },
          );
          out.result(`installed ${String(id)} (policy set version ${r.version})`, r);
        } finally {
          await http.close();
        }
      }),
    );

  policies
    .command('delete <id>')
    .option('--json', 'machine-readable output')
    .action(
      action(async (out, options, [id]) => {
        const http = await connectHttp(io, options, out);
        try {
          const r = await http.json<{ removed: boolean }>(
            'DELETE',
            `/v1/policies/${encodeURIComponent(String(id))}`,
          );
          if (!r.removed) {
            throw new CliError('not_found', `no custom policy ${String(id)}`, ExitCode.usage);
          }
          out.result(`removed ${String(id)}`, r);
        } finally {
          await http.close();
        }
      }),
    );
}
