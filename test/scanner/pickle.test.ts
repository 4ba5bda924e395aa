import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { scanBuffer, classifyGlobal, allowList } from '../../src/scanner/index.ts';
import { OPCODES } from '../../src/scanner/pickle/opcodes.ts';
import { PickleWalker } from '../../src/scanner/pickle/walker.ts';
import { DEFAULT_LIMITS } from '../../src/scanner/rules.ts';
import { check, makeSamples, ruleIds } from './helpers.ts';

let dir = '';
let cleanup = (): void => undefined;
before(() => {
  ({ dir, cleanup } = makeSamples());
});
after(() => {
  cleanup();
});

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('pickle: code execution through every protocol and opcode family', () => {
  for (let p = 0; p <= 5; p++) {
    it(`os.system at protocol ${p} (GLOBAL or memoised STACK_GLOBAL)`, async () => {
      await check(dir, `pickle/os_system_p${p}.pkl`, {
        verdict: 'malicious',
        rules: ['pickle.dangerous-global'],
      });
    });
  }
  const cases: [string, string[]][] = [
    ['eval.pkl', ['pickle.dangerous-global']],
    ['py2_builtin.pkl', ['pickle.dangerous-global']],
    ['commands.pkl', ['pickle.dangerous-global']],
    ['pip_main.pkl', ['pickle.dangerous-global']],
    ['pkgutil_resolve.pkl', ['pickle.dangerous-global', 'pickle.indirect-call']],
    ['importlib.pkl', ['pickle.dangerous-global']],
    ['attrgetter.pkl', ['pickle.dangerous-global', 'pickle.indirect-call']],
    ['dotted.pkl', ['pickle.dangerous-global']],
    ['memo_stack_global.pkl', ['pickle.dangerous-global']],
    ['stack_global_computed.pkl', ['pickle.unresolved-global']],
    ['inst.pkl', ['pickle.dangerous-global']],
    ['obj.pkl', ['pickle.dangerous-global']],
    ['ext.pkl', ['pickle.ext-code']],
    ['ext4.pkl', ['pickle.ext-code']],
    ['unicode_escape.pkl', ['pickle.dangerous-global']],
    ['string_escape.pkl', ['pickle.dangerous-global']],
    ['second_pickle.pkl', ['pickle.dangerous-global']],
    ['truncated.pkl', ['pickle.dangerous-global', 'pickle.malformed']],
  ];
  for (const [file, rules] of cases) {
    it(`flags ${file}`, async () => {
      await check(dir, `pickle/${file}`, { verdict: 'malicious', rules });
    });
  }

  it('names the global in the finding, after Python 2 renames', async () => {
    const r = await check(dir, 'pickle/memo_stack_global.pkl', { verdict: 'malicious' });
    assert.ok(r.findings.some((f) => f.message.includes('os.system')));
    const p2 = await check(dir, 'pickle/py2_builtin.pkl', { verdict: 'malicious' });
    assert.ok(p2.findings.some((f) => f.message.includes('builtins.eval')));
  });

  it('scans the payload of pickle.loads, given as bytes or as _codecs.encode(text, latin1)', async () => {
    for (const file of ['nested_loads.pkl', 'nested_codecs.pkl']) {
      const r = await check(dir, `pickle/${file}`, {
        verdict: 'malicious',
        rules: ['pickle.dangerous-global'],
      });
      const inner = r.findings.find((f) => f.path.startsWith('<pickle.loads@'));
      assert.ok(inner !== undefined && inner.message.includes('posix.system'), file);
    }
  });

  it('flags BUILD tricks and unusual _codecs use without calling them malicious', async () => {
    await check(dir, 'pickle/build_dunder.pkl', {
      verdict: 'suspicious',
      rules: ['pickle.build-dunder-state'],
    });
    await check(dir, 'pickle/build_global.pkl', { verdict: 'suspicious', rules: ['pickle.build-on-global'] });
    await check(dir, 'pickle/codecs_unusual.pkl', {
      verdict: 'suspicious',
      rules: ['pickle.codecs-unusual'],
    });
    await check(dir, 'pickle/unknown_global.pkl', {
      verdict: 'suspicious',
      rules: ['pickle.unknown-global'],
    });
  });

  it('reports malformed pickles without throwing', async () => {
    await check(dir, 'pickle/underflow.pkl', { verdict: 'suspicious', rules: ['pickle.malformed'] });
    await check(dir, 'pickle/trailing_garbage.pkl', { verdict: 'clean', rules: ['pickle.trailing-data'] });
    // An unsupported protocol stops CPython at the first byte: nothing can run.
    await check(dir, 'pickle/not_proto.pkl', { verdict: 'clean', format: 'unknown' });
  });

  it('detects header-less pickles whose payload is followed by garbage or behind a long first line', async () => {
    let r = await scanBuffer(b("cos\nsystem\n(S'id'\ntR\xff\xfe garbage"));
    assert.equal(r.verdict, 'malicious');
    r = await scanBuffer(
      Buffer.concat([b("S'"), Buffer.alloc(100_000, 0x61), b("'\n0cos\nsystem\n(S'id'\ntR.")]),
    );
    assert.equal(r.verdict, 'malicious');
    r = await scanBuffer(b('change log\nfoo: bar\n'));
    assert.equal(r.format, 'unknown');
  });

  it('detects by content whatever the name, and notes a misleading extension', async () => {
    const bytes = b("cos\nsystem\n(S'id'\ntR.");
    for (const name of ['model.bin', 'notes.txt', 'weights.safetensors', undefined]) {
      const r = await scanBuffer(bytes, name);
      assert.equal(r.verdict, 'malicious', String(name));
      assert.equal(r.format, 'pickle');
      assert.equal(
        ruleIds(r).includes('format.extension-mismatch'),
        name === 'notes.txt' || name === 'weights.safetensors',
      );
    }
  });
});

describe('pickle: benign files stay clean', () => {
  for (const file of [
    'benign_p0.pkl',
    'benign_p1.pkl',
    'benign_p5.pkl',
    'state_dict.pkl',
    'state_dict_p4.pkl',
  ]) {
    it(file, async () => {
      await check(dir, `pickle/${file}`, { verdict: 'clean', format: 'pickle' });
    });
  }
});

describe('pickle walker details', () => {
  it('mirrors CPython on marks: POP removes a mark sitting on top of the stack', async () => {
    // MARK POP then a full malicious pickle: CPython accepts it, so must the walker.
    const r = await scanBuffer(b("(0cos\nsystem\n(S'id'\ntR."));
    assert.equal(r.verdict, 'malicious');
    assert.ok(!ruleIds(r).includes('pickle.malformed'));
  });

  it('resolves GET/PUT text memo operands', async () => {
    const r = await scanBuffer(b("Vos\np1\n0Vsystem\np2\n0g1\ng2\n\x93(S'id'\ntR."));
    assert.equal(r.verdict, 'malicious');
  });

  it('keeps walking after a harmless-but-failing op the walker cannot prove fails', async () => {
    // REDUCE on an int fails in CPython, but only at run time: keep scanning what follows.
    const r = await scanBuffer(b('\x80\x02K\x01)R0cos\nsystem\n)R.'));
    assert.equal(r.verdict, 'malicious');
  });

  it('stops where CPython stops: a missing memo key ends the pickle', async () => {
    const r = await scanBuffer(b('\x80\x02h\x05.'));
    assert.deepEqual(ruleIds(r), ['pickle.malformed']);
  });

  it('EXT with code 0 is rejected by CPython and not an import', async () => {
    const r = await scanBuffer(b('\x80\x02\x82\x00.'));
    assert.deepEqual(ruleIds(r), ['pickle.malformed']);
  });

  it('bounds work: opcode, memo, stack and mark caps give a finding', async () => {
    const many = Buffer.concat([b('\x80\x04'), Buffer.alloc(10_000, 0x4e), b('.')]); // NONE x 10000
    let r = await scanBuffer(many, undefined, { limits: { maxPickleOpcodes: 1000 } });
    assert.ok(ruleIds(r).includes('pickle.limit-exceeded'));
    r = await scanBuffer(many, undefined, { limits: { maxPickleStack: 100 } });
    assert.ok(ruleIds(r).includes('pickle.limit-exceeded'));
    const marks = Buffer.concat([b('\x80\x04'), Buffer.alloc(5000, 0x28), b('N.')]);
    r = await scanBuffer(marks, undefined, { limits: { maxPickleMarks: 100 } });
    assert.ok(ruleIds(r).includes('pickle.limit-exceeded'));
    const memo = Buffer.concat([b('\x80\x04N'), Buffer.alloc(5000, 0x94), b('.')]); // MEMOIZE x 5000
    r = await scanBuffer(memo, undefined, { limits: { maxPickleMemo: 100 } });
    assert.ok(ruleIds(r).includes('pickle.limit-exceeded'));
  });

  it('skips huge byte payloads by length without reading them', () => {
    // BINBYTES8 announcing 3 GB: only the header is in the buffer; the walker asks for what follows it.
    const head = Buffer.concat([b('\x80\x04\x8e'), Buffer.from([0, 0, 0, 0xc0, 0, 0, 0, 0])]);
    const w = new PickleWalker(0, DEFAULT_LIMITS, { report: () => undefined });
    const status = w.run(head, 0, 3 * 2 ** 30 + 100);
    assert.equal(status.kind, 'need');
    assert.equal(w.pos, 11 + 3 * 2 ** 30);
  });

  it('covers every pickletools opcode', () => {
    assert.equal(OPCODES.size, 68);
  });
});

describe('global classification', () => {
  it('allow-list, deny-list and unknowns', () => {
    assert.equal(classifyGlobal('torch._utils', '_rebuild_tensor_v2').level, 'safe');
    assert.equal(classifyGlobal('collections', 'OrderedDict').level, 'safe');
    assert.equal(classifyGlobal('torch', 'FloatStorage').level, 'safe');
    assert.equal(classifyGlobal('numpy.dtypes', 'Float32DType').level, 'safe');
    assert.equal(classifyGlobal('_codecs', 'encode').level, 'conditional');
    for (const [m, n] of [
      ['os', 'system'],
      ['posix', 'system'],
      ['nt', 'system'],
      ['subprocess', 'Popen'],
      ['builtins', 'getattr'],
      ['__builtin__', 'eval'],
      ['builtins', 'exec'],
      ['runpy', '_run_code'],
      ['pip', 'main'],
      ['pip._internal', 'main'],
      ['pkgutil', 'resolve_name'],
      ['importlib', 'import_module'],
      ['operator', 'methodcaller'],
      ['_operator', 'itemgetter'],
      ['pickle', 'loads'],
      ['_pickle', 'loads'],
      ['shutil', 'rmtree'],
      ['socket', 'create_connection'],
      ['sys', 'modules'],
      ['code', 'interact'],
      ['pty', 'spawn'],
      ['webbrowser', 'open'],
      ['copyreg', 'add_extension'],
      ['torch', 'load'],
      ['torch.serialization', 'load'],
      ['numpy', 'load'],
      ['torch', 'serialization.os.system'],
      ['collections', 'OrderedDict.__class__'],
      ['mymodule', 'system'],
      ['posixpath', 'os'],
      ['torch.serialization', 'sys'],
    ] as const) {
      assert.equal(classifyGlobal(m, n).level, 'dangerous', `${m}.${n}`);
    }
    assert.equal(classifyGlobal('sklearn.linear_model', 'LinearRegression').level, 'unknown');
    assert.equal(classifyGlobal('__main__', 'MyModel').level, 'unknown');
    assert.equal(classifyGlobal('torch._utils', 'something_new').level, 'unknown');
    assert.ok(allowList().includes('torch._utils._rebuild_parameter'));
  });
});

describe('fuzz: the walker never throws and always yields a verdict', () => {
  const codes = [...OPCODES.keys()];
  const opcodeBytes = fc
    .array(
      fc.oneof(
        fc.constantFrom(...codes).map((c) => [c]),
        fc.uint8Array({ maxLength: 9 }).map((a) => [...a]),
        fc.constantFrom('os\n', 'system\n', "'id'\n", '1\n').map((s) => [...b(s)]),
      ),
      { maxLength: 60 },
    )
    .map((parts) => Uint8Array.from(parts.flat()));

  it('on opcode soup', async () => {
    await fc.assert(
      fc.asyncProperty(opcodeBytes, async (bytes) => {
        const r = await scanBuffer(Buffer.concat([b('\x80\x04'), bytes]));
        assert.ok(['clean', 'suspicious', 'malicious'].includes(r.verdict));
      }),
      { numRuns: 400 },
    );
  });

  it('on mutated real pickles', async () => {
    const seeds = [
      b("cos\nsystem\n(S'id'\ntR."),
      b(
        '\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01\x8c\x01b\x94]\x94(K\x02K\x03eu.',
      ),
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...seeds),
        fc.nat(),
        fc.nat(255),
        fc.nat(40),
        async (seed, at, byte, cut) => {
          const m = Buffer.from(seed);
          m[at % m.length] = byte;
          const r = await scanBuffer(m.subarray(0, Math.max(1, m.length - (cut % m.length))));
          assert.notEqual(r.verdict, 'error');
        },
      ),
      { numRuns: 400 },
    );
  });
});
