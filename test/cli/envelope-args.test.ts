import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Command, CommanderError } from 'commander';
import fc from 'fast-check';
import { parsePlainEnvelopeCommand, registerEnvelopeCommands } from '../../src/cli/commands/envelope.ts';

type Parsed = { command: string; input: string; options: Record<string, unknown> } | { error: string };

/** What commander makes of a command line: the action's input and options, or its usage error. */
function viaCommander(args: readonly string[]): Parsed {
  const program = new Command()
    .name('warden')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  registerEnvelopeCommands(program);
  let result: Parsed | undefined;
  for (const command of program.commands) {
    command.action((input: unknown, options: Record<string, unknown>) => {
      result = { command: command.name(), input: String(input), options: { ...options } };
    });
  }
  try {
    program.parse(['node', 'warden', ...args]);
  } catch (err) {
    if (err instanceof CommanderError) return { error: err.code };
    throw err;
  }
  assert.ok(result !== undefined, 'commander ran no action');
  return result;
}

const word = fc.constantFrom(
  'model.bin',
  'out.wenc',
  '-',
  '',
  'a=b',
  'team=risk',
  '1',
  '64KiB',
  '-1',
  '--json',
);
/** Mostly well-formed pieces of a command line, and now and then one that is not. */
const piece = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(fc.constantFrom('-o', '--output', '-k', '--key', '-c', '--context'), word),
  },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('--chunk-size', '--threads'), word) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom('--output=', '--key=', '--context=', '--chunk-size=', '--threads=', '-o', '-c'),
        word,
      )
      .map(([flag, value]) => [flag + value]),
  },
  {
    weight: 4,
    arbitrary: fc.constantFrom(['-f'], ['--force'], ['--json'], ['-fo', 'x.wenc'], ['-fc', 'k=v']),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      ['-x'],
      ['--unknown'],
      ['--force=yes'],
      ['--no-json'],
      ['-fk'],
      ['-h'],
      ['--help'],
      ['-V'],
      ['-o'],
      ['--'],
      ['other.bin'],
      ['--', 'other.bin'],
    ),
  },
);

describe('warden encrypt / decrypt without commander', () => {
  it('parses plain command lines exactly as commander does, and leaves every other one to commander', () => {
    let compared = 0;
    fc.assert(
      fc.property(
        fc.constantFrom('encrypt', 'decrypt'),
        fc.array(piece, { maxLength: 3 }),
        fc.constantFrom(['model.bin'], ['-'], ['--', '-odd-name'], ['--', 'model.bin']),
        fc.array(piece, { maxLength: 3 }),
        (command, before, input, after) => {
          const args = [command, ...before.flat(), ...input, ...after.flat()];
          const plain = parsePlainEnvelopeCommand(args);
          if (plain === undefined) return;
          compared++;
          assert.deepEqual(plain, viaCommander(args), JSON.stringify(args));
        },
      ),
      { numRuns: 3000 },
    );
    assert.ok(compared > 600, `only ${compared} command lines took the direct path`);
  });

  it('takes the usual command lines itself', () => {
    const usual = [
      ['encrypt', 'big.bin', '-o', 'big.wenc', '--force', '--threads', '1', '--json'],
      ['encrypt', 'model.bin', '-c', 'purpose=training', '-c', 'team=risk', '--key', 'ml-data'],
      ['encrypt', '-', '-o', '-', '--chunk-size', '64KiB'],
      ['encrypt', 'dir/', '--output=dir.wenc', '-f'],
      ['decrypt', 'big.wenc', '-o', 'big.bin', '--force', '--threads', '1', '--json'],
      ['decrypt', '-', '-c', 'purpose=training'],
      ['decrypt', 'model.bin.wenc'],
    ];
    for (const args of usual) {
      const plain = parsePlainEnvelopeCommand(args);
      assert.ok(plain !== undefined, JSON.stringify(args));
      assert.deepEqual(plain, viaCommander(args));
    }
    assert.deepEqual(parsePlainEnvelopeCommand(['encrypt', 'x'])?.options, {
      context: [],
      chunkSize: '1MiB',
    });
    assert.deepEqual(parsePlainEnvelopeCommand(['decrypt', 'x'])?.options, { context: [] });
  });

  it('leaves help, usage errors and other commands to commander', () => {
    const others = [
      ['encrypt'],
      ['encrypt', 'a', 'b'],
      ['encrypt', '--help'],
      ['decrypt', '-h', 'x'],
      ['encrypt', 'x', '-o'],
      ['encrypt', 'x', '-o', '--json'],
      ['decrypt', 'x', '--chunk-size', '1MiB'],
      ['decrypt', 'x', '--key', 'k'],
      ['encrypt', 'x', '--force=yes'],
      ['inspect', 'x'],
      ['rewrap', 'x'],
      [],
    ];
    for (const args of others) assert.equal(parsePlainEnvelopeCommand(args), undefined, JSON.stringify(args));
  });
});
