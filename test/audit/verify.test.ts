import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  MemoryMerkleTree,
  leafHash,
  localEd25519NoteSigner,
  signCheckpoint,
  type Ed25519NoteSigner,
} from '../../src/audit/index.ts';
import { canonicalBytes, canonicalJson, scanCanonicalObject } from '../../src/audit/canonical.ts';
import {
  readExportLines,
  verifyExport,
  verifyExportFile,
  type ExportProblemKind,
  type VerifyExportReport,
} from '../../src/audit/verify.ts';

const ORIGIN = 'audit.warden.test/log';

function ed25519Key(seedByte: number): KeyObject {
  const der = Buffer.concat([
    Buffer.from('302e020100300506032b657004220420', 'hex'),
    Buffer.alloc(32, seedByte),
  ]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

const signer: Ed25519NoteSigner = localEd25519NoteSigner(ed25519Key(7), ORIGIN);
const otherSigner: Ed25519NoteSigner = localEd25519NoteSigner(ed25519Key(9), ORIGIN);

type Event = Record<string, unknown> & { index: number; time: string };

function makeEvent(i: number, salt = ''): Event {
  return {
    index: i,
    time: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString(),
    action: i % 3 === 0 ? 'kms.decrypt' : 'auth.login',
    principal: { id: `user-${i % 7}${salt}`, authMethod: 'token' },
    resource: `key/${i % 13}`,
    outcome: i % 5 === 0 ? 'denied' : 'success',
    requestId: `req-${i}`,
    details: { n: i, note: 'quote " backslash \\ é \u2028', ok: i % 2 === 0 },
  };
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

interface Built {
  lines: string[];
  events: Event[];
  leaves: Uint8Array[];
  tree: MemoryMerkleTree;
  note: string;
}

/** Builds an export per docs/spec/audit-export.md. */
async function buildExport(
  n: number,
  o: {
    from?: number;
    to?: number;
    pruned?: ReadonlySet<number>;
    events?: Event[];
    signWith?: Ed25519NoteSigner;
    origin?: string;
  } = {},
): Promise<Built> {
  const events = o.events ?? Array.from({ length: n }, (_, i) => makeEvent(i));
  const from = o.from ?? 0;
  const to = o.to ?? n;
  const tree = new MemoryMerkleTree();
  const leaves: Uint8Array[] = [];
  const lines = [
    JSON.stringify({
      type: 'warden-audit-export',
      version: 1,
      origin: o.origin ?? ORIGIN,
      treeSize: n,
      from,
      to,
    }),
  ];
  events.forEach((e, i) => {
    const h = leafHash(canonicalBytes(e));
    leaves.push(h);
    tree.appendLeafHash(h);
    const body = i >= from && i < to && !(o.pruned?.has(i) ?? false) ? e : null;
    lines.push(JSON.stringify({ type: 'entry', index: i, leafHash: b64(h), event: body }));
  });
  const note = await signCheckpoint(
    { origin: o.origin ?? ORIGIN, treeSize: n, rootHash: tree.root(), extensions: [] },
    o.signWith ?? signer,
  );
  lines.push(JSON.stringify({ type: 'checkpoint', note }));
  return { lines, events, leaves, tree, note };
}

const opts = { verifierKey: signer.verifierKey };

/** The indexes `[0, n)`: retention prunes the bodies of the oldest entries, a prefix of the log. */
const oldest = (n: number): Set<number> => new Set(Array.from({ length: n }, (_, i) => i));

function kinds(r: VerifyExportReport): ExportProblemKind[] {
  return r.problems.map((p) => p.kind);
}

function entryLine(i: number, e: Event | null, hash: Uint8Array): string {
  return JSON.stringify({ type: 'entry', index: i, leafHash: b64(hash), event: e });
}

/** Rewrites an event list into a consistent export where entry `at` is deleted and later ones renumbered. */
function deleteAndRenumber(events: readonly Event[], at: number): Event[] {
  return events.filter((_, i) => i !== at).map((e, i) => ({ ...e, index: i }));
}

describe('verifyExport: valid exports', () => {
  it('a valid export verifies', async () => {
    const b = await buildExport(37);
    const r = await verifyExport(b.lines, opts);
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(r.treeSize, 37);
    assert.equal(r.entriesChecked, 37);
    assert.equal(r.bodiesChecked, 37);
    assert.equal(r.origin, ORIGIN);
    assert.deepEqual(Buffer.from(r.root), Buffer.from(b.tree.root()));
    assert.deepEqual(Buffer.from(r.checkpoint!.rootHash), Buffer.from(b.tree.root()));
  });

  it('an empty log (size 0) verifies', async () => {
    const b = await buildExport(0);
    const r = await verifyExport(b.lines, opts);
    assert.deepEqual(r.problems, []);
    assert.equal(r.treeSize, 0);
  });

  it('pruned bodies and time-range exports still verify', async () => {
    const b = await buildExport(40, { from: 10, to: 30, pruned: oldest(13) });
    const r = await verifyExport(b.lines, opts);
    assert.deepEqual(r.problems, []);
    assert.equal(r.bodiesChecked, 17);
    assert.equal(r.prunedBodies, 3);
  });

  it('a body left out after bodies of earlier entries is withheld-body, not pruned', async () => {
    // Retention drops the oldest bodies only: a null body after a present one was removed from the export.
    const b = await buildExport(40, { from: 10, to: 30, pruned: new Set([10, 11, 25]) });
    // The general path and the writer-format fast path.
    for (const input of [b.lines, writerFormat(b).map((l) => Buffer.from(l))]) {
      const r = await verifyExport(input, opts);
      assert.deepEqual(kinds(r), ['withheld-body']);
      assert.equal(r.problems[0]!.index, 25);
      assert.equal(r.problems[0]!.line, 1 + 25 + 1);
      assert.equal(r.prunedBodies, 2);
      assert.equal(r.ok, false);
    }
  });

  it('accepts an async iterable of byte lines and an explicit origin', async () => {
    const b = await buildExport(5);
    async function* gen(): AsyncGenerator<Uint8Array> {
      for (const l of b.lines) yield await Promise.resolve(Buffer.from(l));
    }
    const r = await verifyExport(gen(), { ...opts, origin: ORIGIN });
    assert.equal(r.ok, true);
  });

  it('a previous checkpoint the export extends verifies (as size/root and as a note)', async () => {
    const b = await buildExport(50);
    const prevNote = await signCheckpoint(
      { origin: ORIGIN, treeSize: 20, rootHash: b.tree.rootAt(20), extensions: [] },
      signer,
    );
    for (const previous of [
      { size: 20, rootHash: b.tree.rootAt(20) },
      { note: prevNote },
      { size: 0, rootHash: createHash('sha256').digest() },
      { size: 50, rootHash: b.tree.root() },
    ]) {
      const r = await verifyExport(b.lines, { ...opts, previous });
      assert.deepEqual(r.problems, [], JSON.stringify(previous));
    }
  });

  it('a trusted earlier export that is a prefix verifies (compareWith)', async () => {
    const b = await buildExport(50);
    const older = await buildExport(30, { events: b.events.slice(0, 30) });
    const r = await verifyExport(b.lines, { ...opts, compareWith: older.lines });
    assert.deepEqual(r.problems, []);
  });
});

describe('verifyExport: tampering is detected and located', () => {
  it('edited body → body-mismatch at its index, root still fine', async () => {
    const b = await buildExport(30);
    const e = {
      ...b.events[11]!,
      outcome: 'success' as const,
      principal: { id: 'admin', authMethod: 'token' },
    };
    b.lines[1 + 11] = entryLine(11, e, b.leaves[11]!);
    const r = await verifyExport(b.lines, opts);
    assert.equal(r.ok, false);
    assert.deepEqual(kinds(r), ['body-mismatch']);
    assert.equal(r.problems[0]!.index, 11);
    assert.equal(r.problems[0]!.line, 13);
  });

  it('event.index edited → body-mismatch', async () => {
    const b = await buildExport(10);
    b.lines[1 + 4] = entryLine(4, { ...b.events[4]!, index: 5 }, b.leaves[4]!);
    const r = await verifyExport(b.lines, opts);
    assert.deepEqual(kinds(r), ['body-mismatch']);
    assert.equal(r.problems[0]!.index, 4);
  });

  it('deleted entry → index-gap at the missing index, truncated count, root mismatch', async () => {
    const b = await buildExport(30);
    b.lines.splice(1 + 7, 1);
    const r = await verifyExport(b.lines, opts);
    assert.equal(r.ok, false);
    assert.equal(r.problems[0]!.kind, 'index-gap');
    assert.equal(r.problems[0]!.index, 7);
    assert.ok(kinds(r).includes('truncated'));
    assert.ok(kinds(r).includes('size-mismatch'));
    assert.ok(kinds(r).includes('root-mismatch'));
  });

  it('reordered entries → index-gap at the first swapped index', async () => {
    const b = await buildExport(30);
    const [x, y] = [b.lines[1 + 3]!, b.lines[1 + 4]!];
    b.lines[1 + 3] = y;
    b.lines[1 + 4] = x;
    const r = await verifyExport(b.lines, opts);
    assert.equal(r.problems[0]!.kind, 'index-gap');
    assert.equal(r.problems[0]!.index, 3);
    assert.ok(kinds(r).includes('root-mismatch'));
  });

  it('inserted entry → index-gap at the insertion point', async () => {
    const b = await buildExport(30);
    const forged = { ...makeEvent(6, '-forged') };
    b.lines.splice(1 + 6, 0, entryLine(6, forged, leafHash(canonicalBytes(forged))));
    const r = await verifyExport(b.lines, opts);
    assert.equal(r.problems[0]!.kind, 'index-gap');
    assert.equal(r.problems[0]!.index, 7);
    assert.equal(r.problems[0]!.line, 9);
    assert.ok(kinds(r).includes('size-mismatch'));
    assert.ok(kinds(r).includes('root-mismatch'));
  });

  it('edited leaf hash → body-mismatch at its index (body present) or root-mismatch (pruned)', async () => {
    const b = await buildExport(30, { pruned: oldest(21) });
    const bad = Buffer.from(b.leaves[24]!);
    bad[0]! ^= 1;
    b.lines[1 + 24] = entryLine(24, b.events[24]!, bad);
    let r = await verifyExport(b.lines, opts);
    assert.deepEqual(kinds(r), ['body-mismatch', 'root-mismatch']);
    assert.equal(r.problems[0]!.index, 24);

    const c = await buildExport(30, { pruned: oldest(21) });
    const bad2 = Buffer.from(c.leaves[20]!);
    bad2[31]! ^= 0x80;
    c.lines[1 + 20] = entryLine(20, null, bad2);
    r = await verifyExport(c.lines, opts);
    assert.deepEqual(kinds(r), ['root-mismatch']);
    assert.equal(r.problems[0]!.index, undefined);
    // Located with a trusted earlier export:
    const older = await buildExport(25, { events: c.events.slice(0, 25) });
    r = await verifyExport(c.lines, { ...opts, compareWith: older.lines });
    assert.deepEqual(kinds(r), ['root-mismatch', 'inconsistent-with-previous']);
    assert.equal(r.problems[0]!.index, 20);
    assert.equal(r.problems[1]!.index, 20);
  });

  it('consistent rewrite (entry deleted, later ones renumbered and rehashed) → root-mismatch located', async () => {
    const orig = await buildExport(40);
    const older = await buildExport(32, { events: orig.events.slice(0, 32) });
    const rewritten = await buildExport(39, { events: deleteAndRenumber(orig.events, 10) });
    // The attacker cannot sign: they keep the genuine checkpoint line.
    rewritten.lines[rewritten.lines.length - 1] = orig.lines.at(-1)!;
    rewritten.lines[0] = orig.lines[0]!; // and the genuine header
    let r = await verifyExport(rewritten.lines, opts);
    assert.ok(!kinds(r).includes('index-gap'));
    assert.ok(!kinds(r).includes('body-mismatch'));
    assert.ok(kinds(r).includes('root-mismatch'));
    assert.equal(r.problems.find((p) => p.kind === 'root-mismatch')!.index, undefined);
    // Said in words `warden audit verify` users can act on: the CLI has no option named like the library's.
    assert.match(
      r.problems.find((p) => p.kind === 'root-mismatch')!.message,
      /^recomputed root differs from the checkpoint \(entries deleted, inserted, reordered or rewritten\)$/,
    );

    r = await verifyExport(rewritten.lines, { ...opts, compareWith: older.lines });
    assert.equal(r.problems.find((p) => p.kind === 'root-mismatch')!.index, 10);
    assert.equal(r.problems.find((p) => p.kind === 'inconsistent-with-previous')!.index, 10);

    // With the previous checkpoint's frontier (size 32 = one perfect subtree [0,32)): range localisation.
    const prevTree = new MemoryMerkleTree();
    for (const h of orig.leaves.slice(0, 24)) prevTree.appendLeafHash(h);
    const frontier = prevTree.frontier().serialize(); // size 24 = [0,16) + [16,24)
    r = await verifyExport(rewritten.lines, {
      ...opts,
      previous: { size: 24, rootHash: prevTree.root(), frontier },
    });
    const inc = r.problems.find((p) => p.kind === 'inconsistent-with-previous')!;
    assert.deepEqual(inc.range, [0, 16]);
    const prevTree2 = new MemoryMerkleTree();
    for (const h of orig.leaves.slice(0, 10)) prevTree2.appendLeafHash(h);
    r = await verifyExport(rewritten.lines, {
      ...opts,
      previous: { size: 10, rootHash: prevTree2.root(), frontier: prevTree2.frontier().serialize() },
    });
    assert.ok(!kinds(r).includes('inconsistent-with-previous'), 'prefix before the deletion is intact');
  });

  it('truncated export (lines cut, or cut mid-line) → truncated', async () => {
    const b = await buildExport(30);
    let r = await verifyExport(b.lines.slice(0, 20), opts);
    assert.ok(kinds(r).includes('truncated'));
    const t = r.problems.find((p) => p.kind === 'truncated' && p.index !== undefined)!;
    assert.equal(t.index, 19);
    // Mid-line cut of the checkpoint.
    const cut = [...b.lines.slice(0, -1), b.lines.at(-1)!.slice(0, 40)];
    r = await verifyExport(cut, opts);
    assert.deepEqual(kinds(r), ['malformed-line', 'truncated']);
    r = await verifyExport([], opts);
    assert.deepEqual(kinds(r), ['truncated']);
  });

  it('wrong key, forged signature → bad-signature', async () => {
    const b = await buildExport(10);
    let r = await verifyExport(b.lines, { verifierKey: otherSigner.verifierKey });
    assert.deepEqual(kinds(r), ['bad-signature']);
    assert.match(r.problems[0]!.message, /no_trusted_signature/);
    assert.equal(r.checkpoint, undefined);

    const forged = await buildExport(10, { signWith: otherSigner });
    r = await verifyExport(forged.lines, opts);
    assert.deepEqual(kinds(r), ['bad-signature']);

    // Same key name and key ID, signature bytes flipped.
    const note = b.note.replace(/ (\S+)\n$/, (_m, sig: string) => {
      const raw = Buffer.from(sig, 'base64');
      raw[10]! ^= 1;
      return ` ${raw.toString('base64')}\n`;
    });
    b.lines[b.lines.length - 1] = JSON.stringify({ type: 'checkpoint', note });
    r = await verifyExport(b.lines, opts);
    assert.deepEqual(kinds(r), ['bad-signature']);
    assert.match(r.problems[0]!.message, /invalid_signature/);
  });

  it('wrong origin → origin-mismatch', async () => {
    const b = await buildExport(10);
    const r = await verifyExport(b.lines, { ...opts, origin: 'other.example/log' });
    assert.deepEqual(kinds(r), ['origin-mismatch', 'origin-mismatch']);
  });

  it('checkpoint for another size → size-mismatch and root-mismatch', async () => {
    const b = await buildExport(30);
    const older = await signCheckpoint(
      { origin: ORIGIN, treeSize: 25, rootHash: b.tree.rootAt(25), extensions: [] },
      signer,
    );
    b.lines[b.lines.length - 1] = JSON.stringify({ type: 'checkpoint', note: older });
    const r = await verifyExport(b.lines, opts);
    assert.deepEqual(kinds(r), ['size-mismatch', 'size-mismatch', 'root-mismatch']);
  });

  it('a previous checkpoint the export does not extend (fork) → inconsistent-with-previous', async () => {
    const b = await buildExport(40);
    const forkEvents = b.events.slice(0, 20).map((e, i) => (i === 3 ? makeEvent(3, '-fork') : e));
    const fork = await buildExport(20, { events: forkEvents });
    let r = await verifyExport(b.lines, { ...opts, previous: { note: fork.note } });
    assert.deepEqual(kinds(r), ['inconsistent-with-previous']);
    r = await verifyExport(b.lines, {
      ...opts,
      previous: { size: 20, rootHash: fork.tree.root(), frontier: fork.tree.frontier().serialize() },
    });
    assert.deepEqual(kinds(r), ['inconsistent-with-previous']);
    assert.deepEqual(r.problems[0]!.range, [0, 16]);
    // Located exactly against the fork's export used as the reference.
    r = await verifyExport(b.lines, { ...opts, compareWith: fork.lines });
    assert.deepEqual(kinds(r), ['inconsistent-with-previous']);
    assert.equal(r.problems[0]!.index, 3);
    // Export shorter than the previous checkpoint (rolled back).
    const longer = await buildExport(45, {
      events: [...b.events, ...[40, 41, 42, 43, 44].map((i) => makeEvent(i))],
    });
    r = await verifyExport(b.lines, { ...opts, previous: { note: longer.note } });
    assert.deepEqual(kinds(r), ['inconsistent-with-previous']);
    assert.equal(r.problems[0]!.index, 40);
    r = await verifyExport(b.lines, { ...opts, compareWith: longer.lines });
    assert.deepEqual(kinds(r), ['inconsistent-with-previous']);
    assert.equal(r.problems[0]!.index, 40);
  });

  it('an invalid previous checkpoint or reference export is reported, not trusted', async () => {
    const b = await buildExport(20);
    const foreign = await buildExport(10, { signWith: otherSigner });
    let r = await verifyExport(b.lines, { ...opts, previous: { note: foreign.note } });
    assert.deepEqual(kinds(r), ['previous-invalid']);
    const badRef = [...foreign.lines];
    r = await verifyExport(b.lines, { ...opts, compareWith: badRef });
    assert.deepEqual(kinds(r), ['reference-invalid']);
  });

  it('structural errors: unknown type, repeated header, entry after checkpoint, range violation', async () => {
    const b = await buildExport(10, { from: 2, to: 8 });
    const withBody = entryLine(9, b.events[9]!, b.leaves[9]!);
    const lines = [...b.lines];
    lines[1 + 9] = withBody;
    lines.splice(3, 0, JSON.stringify({ type: 'comment' }));
    lines.splice(5, 0, b.lines[0]!);
    lines.push(b.lines[1]!);
    const r = await verifyExport(lines, opts);
    assert.deepEqual(kinds(r), ['malformed-line', 'unexpected-line', 'range-violation', 'unexpected-line']);
    assert.equal(r.problems[2]!.index, 9);
  });
});

describe('verifyExport: parser robustness (fast-check)', () => {
  const allowed = new Set<string>([
    'malformed-line',
    'unexpected-line',
    'index-gap',
    'body-mismatch',
    'range-violation',
    'withheld-body',
    'truncated',
    'size-mismatch',
    'root-mismatch',
    'malformed-checkpoint',
    'bad-signature',
    'origin-mismatch',
    'inconsistent-with-previous',
    'previous-invalid',
    'reference-invalid',
  ]);
  let base: Built;
  before(async () => {
    base = await buildExport(8, { pruned: oldest(1) });
  });

  it('arbitrary lines never throw and yield only typed problems', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.string(),
            fc.json(),
            fc.uint8Array({ maxLength: 64 }),
            fc.constantFrom(...base.lines),
            fc
              .record({
                type: fc.constantFrom('entry', 'checkpoint', 'warden-audit-export', 'x'),
                index: fc.oneof(fc.nat(), fc.double(), fc.string()),
                leafHash: fc.oneof(fc.base64String(), fc.constant(b64(base.leaves[0]!))),
                event: fc.oneof(fc.constant(null), fc.object(), fc.jsonValue()),
                note: fc.oneof(fc.string(), fc.constant(base.note)),
              })
              .map((o) => JSON.stringify(o)),
          ),
          { maxLength: 20 },
        ),
        async (lines) => {
          const r = await verifyExport(lines, opts);
          assert.equal(typeof r.ok, 'boolean');
          for (const p of r.problems) assert.ok(allowed.has(p.kind), p.kind);
          assert.equal(r.ok, r.problems.length === 0);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('single-character mutations of a valid export are always detected or harmless', async () => {
    const text = base.lines.join('\n');
    await fc.assert(
      fc.asyncProperty(fc.nat(text.length - 1), fc.integer({ min: 32, max: 126 }), async (pos, code) => {
        const mutated = text.slice(0, pos) + String.fromCharCode(code) + text.slice(pos + 1);
        const r = await verifyExport(mutated.split('\n'), opts);
        if (r.ok) {
          // Only semantically neutral edits may pass: the parsed export must be identical.
          assert.deepEqual(
            mutated.split('\n').map((l) => JSON.parse(l) as unknown),
            base.lines.map((l) => JSON.parse(l) as unknown),
          );
        }
      }),
      { numRuns: 300 },
    );
  });
});

/** The same export with every event written as its canonical bytes, exactly as `AuditLog.export` writes it. */
function writerFormat(b: Built): string[] {
  return b.lines.map((l) => {
    const o = JSON.parse(l) as { type: string; index: number; leafHash: string; event: unknown };
    if (o.type !== 'entry') return l;
    const event = o.event === null ? 'null' : canonicalJson(o.event);
    return `{"type":"entry","index":${o.index},"leafHash":"${o.leafHash}","event":${event}}`;
  });
}

/** What the recogniser must report for a parsed object. */
function expectedScan(o: Record<string, unknown>): { index: number | undefined; time: string | undefined } {
  const index = !('index' in o) ? undefined : typeof o.index === 'number' ? o.index : Number.NaN;
  const time =
    typeof o.time === 'string' && /^[\u0020-\u007f]*$/.test(o.time) && !/[\\"]/.test(o.time)
      ? o.time
      : undefined;
  return { index, time };
}

describe('canonical recogniser (scanCanonicalObject)', () => {
  const utf8 = new TextDecoder('utf-8', { fatal: true });

  /** Soundness: whatever it accepts is valid UTF-8 JSON, an object, and byte-identical to its canonical form. */
  function checkSound(bytes: Uint8Array): void {
    const scan = scanCanonicalObject(bytes);
    if (scan === undefined) return;
    const text = utf8.decode(bytes);
    const parsed = JSON.parse(text) as unknown;
    assert.ok(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed));
    assert.equal(canonicalJson(parsed), text);
    const want = expectedScan(parsed as Record<string, unknown>);
    assert.ok(Object.is(scan.index, want.index), `index ${String(scan.index)} vs ${String(want.index)}`);
    if (scan.time !== undefined) assert.equal(scan.time, want.time);
  }

  it('recognises canonical audit entries and reports their index and time', () => {
    for (let i = 0; i < 50; i++) {
      const e = makeEvent(i);
      const scan = scanCanonicalObject(canonicalBytes(e));
      assert.ok(scan !== undefined, `entry ${i}`);
      assert.equal(scan.index, i);
      assert.equal(scan.time, e.time);
    }
    assert.deepEqual(scanCanonicalObject(Buffer.from('{}')), { index: undefined, time: undefined });
    assert.ok(Number.isNaN(scanCanonicalObject(Buffer.from('{"index":"3"}'))?.index));
    assert.equal(scanCanonicalObject(Buffer.from('{"index":1.5,"time":"x"}'))?.index, 1.5);
  });

  it('rejects what is not canonical, or leaves it to the general path', () => {
    for (const text of [
      '',
      '[]',
      '"x"',
      '{"b":1,"a":2}',
      '{"a":1,"a":1}',
      '{ "a":1}',
      '{"a":1 }',
      '{"a":01}',
      '{"a":-0}',
      '{"a":1.0}',
      '{"a":1e3}',
      '{"a":1E3}',
      '{"a":"\\/"}',
      '{"a":"\\u0041"}',
      '{"a":"\\u000a"}',
      '{"a":"\\u001F"}',
      '{"a":tru}',
      '{"a":[1,]}',
      '{"a":{}',
      '{"a":1}x',
      '{"\\n":1}',
      '{"é":1}',
      `{"a":${'['.repeat(100)}${']'.repeat(100)}}`,
    ]) {
      assert.equal(scanCanonicalObject(Buffer.from(text)), undefined, text);
    }
    // Invalid UTF-8 inside a string value.
    assert.equal(
      scanCanonicalObject(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d])),
      undefined,
    );
    // The escapes JSON.stringify emits are canonical.
    assert.ok(
      scanCanonicalObject(Buffer.from(canonicalJson({ a: 'q"b\\\n\u0001\u007f é 😀' }))) !== undefined,
    );
  });

  it('canonical bytes of arbitrary JSON objects are recognised or left alone, never misjudged (fast-check)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 })), (o) => {
        const bytes = Buffer.from(canonicalJson(o), 'utf8');
        checkSound(bytes);
        const ascii = Object.keys(o).every(
          (k) => /^[\u0020-\u007e]*$/.test(k) && !k.includes('\\') && !k.includes('"'),
        );
        if (ascii && JSON.stringify(o).length < 2000 && !/\\u[dD][89a-fA-F]/.test(canonicalJson(o))) {
          // Nested keys may be non-ASCII too: only require recognition when every key at every depth is plain.
          const plainKeys = (v: unknown): boolean =>
            typeof v !== 'object' || v === null
              ? true
              : Array.isArray(v)
                ? v.every(plainKeys)
                : Object.entries(v).every(
                    ([k, x]) => /^[\u0020-\u007e]*$/.test(k) && !/["\\]/.test(k) && plainKeys(x),
                  );
          if (plainKeys(o)) assert.ok(scanCanonicalObject(bytes) !== undefined, canonicalJson(o));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('arbitrary text and byte mutations of canonical bytes are never misjudged (fast-check)', () => {
    const base = canonicalBytes(makeEvent(3));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json().map((t) => Buffer.from(t, 'utf8')),
          fc.string().map((t) => Buffer.from(t, 'utf8')),
          fc.uint8Array({ maxLength: 64 }),
          fc
            .tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }))
            .map(([pos, v]) => Buffer.concat([base.subarray(0, pos), Buffer.of(v), base.subarray(pos + 1)])),
          fc
            .tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }))
            .map(([pos, v]) => Buffer.concat([base.subarray(0, pos), Buffer.of(v), base.subarray(pos)])),
          fc
            .nat(base.length - 1)
            .map((pos) => Buffer.concat([base.subarray(0, pos), base.subarray(pos + 1)])),
        ),
        (bytes) => {
          checkSound(bytes);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('verifyExport: the writer-format fast path', () => {
  let base: Built;
  let lines: string[];
  before(async () => {
    base = await buildExport(40, { pruned: oldest(1) });
    lines = writerFormat(base);
  });

  it('verifies the writer format as bytes and as strings, with the same report as the general path', async () => {
    const general = await verifyExport(base.lines, opts);
    for (const input of [lines, lines.map((l) => Buffer.from(l))]) {
      const r = await verifyExport(input, opts);
      assert.deepEqual(r.problems, []);
      assert.equal(r.bodiesChecked, general.bodiesChecked);
      assert.equal(r.prunedBodies, 1);
      assert.deepEqual(Buffer.from(r.root), Buffer.from(general.root));
    }
  });

  it('detects an edited body, an edited event index and an edited leaf hash in the writer format', async () => {
    const edited = [...lines];
    edited[1 + 7] = (edited[1 + 7] as string).replace('"outcome":"', '"outcome":"x');
    assert.deepEqual(
      kinds(
        await verifyExport(
          edited.map((l) => Buffer.from(l)),
          opts,
        ),
      ),
      ['body-mismatch'],
    );
    const reindexed = [...lines];
    reindexed[1 + 9] = (reindexed[1 + 9] as string).replace('"index":9,"outcome"', '"index":8,"outcome"');
    const r = await verifyExport(
      reindexed.map((l) => Buffer.from(l)),
      opts,
    );
    assert.deepEqual(kinds(r), ['body-mismatch']);
    assert.equal(r.problems[0]?.index, 9);
    const rehashed = [...lines];
    rehashed[1 + 3] = entryLine(3, null, base.leaves[4]!).replace(
      '"event":null',
      `"event":${canonicalJson(base.events[3])}`,
    );
    assert.deepEqual(
      kinds(
        await verifyExport(
          rehashed.map((l) => Buffer.from(l)),
          opts,
        ),
      ),
      ['body-mismatch', 'root-mismatch'],
    );
  });

  it('single-byte mutations of the writer format are always detected or harmless (fast-check)', async () => {
    const text = Buffer.from(lines.join('\n'));
    await fc.assert(
      fc.asyncProperty(fc.nat(text.length - 1), fc.integer({ min: 0, max: 255 }), async (pos, v) => {
        if (text[pos] === 0x0a || v === 0x0a) return;
        const mutated = Buffer.from(text);
        mutated[pos] = v;
        const split: Buffer[] = [];
        for (let at = 0; at <= mutated.length;) {
          const nl = mutated.indexOf(0x0a, at);
          const end = nl < 0 ? mutated.length : nl;
          split.push(mutated.subarray(at, end));
          at = end + 1;
        }
        const r = await verifyExport(split, opts);
        if (r.ok) {
          assert.deepEqual(
            split.map((l) => JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(l)) as unknown),
            lines.map((l) => JSON.parse(l) as unknown),
          );
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('verifyExportFile', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warden-verify-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('verifies a file; detects a truncated file, invalid UTF-8 and CRLF lines', async () => {
    const b = await buildExport(100);
    const path = join(dir, 'export.jsonl');
    await writeFile(path, b.lines.join('\n') + '\n');
    let r = await verifyExportFile(path, opts);
    assert.deepEqual(r.problems, []);
    assert.equal(r.lines, 102);

    const full = await readFile(path);
    await writeFile(path, full.subarray(0, full.length - 200));
    r = await verifyExportFile(path, opts);
    assert.ok(kinds(r).includes('truncated'));

    await writeFile(
      path,
      Buffer.concat([full.subarray(0, 300), Buffer.from([0xc3, 0x28]), full.subarray(302)]),
    );
    r = await verifyExportFile(path, opts);
    assert.equal(r.problems[0]!.kind, 'malformed-line');
    assert.equal(r.problems[0]!.message, 'not valid UTF-8');

    await writeFile(path, b.lines.join('\r\n'));
    r = await verifyExportFile(path, opts);
    assert.equal(r.ok, false);

    await writeFile(path, b.lines.join('\n')); // no final newline: fine
    r = await verifyExportFile(path, opts);
    assert.equal(r.ok, true);

    const lines: string[] = [];
    for await (const l of readExportLines(path)) lines.push(Buffer.from(l).toString());
    assert.deepEqual(lines, b.lines);
  });

  it("worker threads judging the entries give exactly the calling thread's report", async () => {
    // ~2.3 MB: several 1 MiB read batches, so batches are judged by different workers and reassembled in order.
    const b = await buildExport(6000, { pruned: oldest(3) });
    const lines = writerFormat(b);
    const variants: [string, (l: string[]) => void][] = [
      ['valid', () => undefined],
      ['edited body', (l) => (l[1 + 7] = l[1 + 7]!.replace('"outcome":"', '"outcome":"x'))],
      ['edited event index', (l) => (l[1 + 5000] = l[1 + 5000]!.replace('"index":5000,"', '"index":4999,"'))],
      ['bad time', (l) => (l[1 + 5900] = l[1 + 5900]!.replace(/"time":"[^"]*"/, '"time":"yesterday"'))],
      ['deleted entry', (l) => l.splice(1 + 3000, 1)],
      ['swapped entries', (l) => ([l[1 + 20], l[1 + 21]] = [l[1 + 21]!, l[1 + 20]!])],
      ['header repeated late', (l) => l.splice(1 + 5500, 0, l[0]!)],
      ['general-path line', (l) => (l[1 + 100] = JSON.stringify(JSON.parse(l[1 + 100]!)).replace('{', '{ '))],
      ['entry after checkpoint', (l) => l.push(l[1 + 1]!)],
      ['no header', (l) => l.shift()],
    ];
    for (const [name, edit] of variants) {
      const edited = [...lines];
      edit(edited);
      const path = join(dir, 'judged.jsonl');
      await writeFile(path, edited.join('\n') + '\n');
      const alone = await verifyExportFile(path, { ...opts, threads: 1 });
      const judged = await verifyExportFile(path, { ...opts, threads: 3 });
      assert.deepEqual(judged, alone, name);
      assert.equal(alone.ok, name === 'valid' || name === 'general-path line', name);
    }
    await assert.rejects(verifyExportFile(join(dir, 'judged.jsonl'), { ...opts, threads: 0 }), RangeError);
  });

  it('speed: full verification vs raw SHA-256 over the same bytes (reported, not asserted)', async (t) => {
    const n = 100_000;
    const b = await buildExport(n);
    const path = join(dir, 'big.jsonl');
    const text = b.lines.join('\n') + '\n';
    await writeFile(path, text);
    const bytes = Buffer.from(text);

    const heapBefore = process.memoryUsage().heapUsed;
    let t0 = performance.now();
    const r = await verifyExportFile(path, opts);
    const verifyMs = performance.now() - t0;
    const heapAfter = process.memoryUsage().heapUsed;
    assert.equal(r.ok, true);

    t0 = performance.now();
    createHash('sha256').update(bytes).digest();
    const shaStreamMs = performance.now() - t0;
    t0 = performance.now();
    for (const l of b.lines) createHash('sha256').update(l).digest();
    const shaLinesMs = performance.now() - t0;
    const mb = bytes.length / 1e6;
    const msg =
      `verify ${n} entries, ${mb.toFixed(1)} MB: ${verifyMs.toFixed(0)} ms (${(mb / (verifyMs / 1000)).toFixed(0)} MB/s); ` +
      `SHA-256 one stream ${shaStreamMs.toFixed(0)} ms (${(mb / (shaStreamMs / 1000)).toFixed(0)} MB/s), ` +
      `per line ${shaLinesMs.toFixed(0)} ms; ratio vs stream ${((shaStreamMs / verifyMs) * 100).toFixed(1)}%, ` +
      `vs per-line ${((shaLinesMs / verifyMs) * 100).toFixed(1)}%; heap delta ${((heapAfter - heapBefore) / 1e6).toFixed(1)} MB`;
    t.diagnostic(msg);
    console.log(`# ${msg}`);
  });
});
