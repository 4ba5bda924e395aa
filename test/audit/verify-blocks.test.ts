// The block decomposition behind AuditLog.verify() (src/audit/verify-blocks.ts): block summaries fold into the
// RFC 6962 root and the roots at every prefix size, bad rows name their entry, and the in-place index reader
// agrees with JSON.parse on every input.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AuditLogError, leafHash, rootFromLeafHashes } from '../../src/audit/index.ts';
import { canonicalBytes } from '../../src/audit/canonical.ts';
import { BLOCK_SIZE, BlockCombiner, indexOfBody, summarizeBlock } from '../../src/audit/verify-blocks.ts';
import type { EntryRow } from '../../src/audit/verify-blocks.ts';

function body(i: number): Uint8Array {
  return canonicalBytes({
    action: 'kms.encrypt',
    details: { index: i + 1, list: [{ index: -1 }] },
    index: i,
  });
}

/** `n` rows, the bodies of the first `pruned` dropped as retention drops them. */
function rows(n: number, pruned = 0): EntryRow[] {
  return Array.from({ length: n }, (_, i) => {
    const b = i < pruned ? null : body(i);
    return [i, leafHash(b ?? body(i)), b] as const;
  });
}

function summarizeAll(all: readonly EntryRow[], prefixSizes: readonly number[]) {
  const combiner = new BlockCombiner();
  const roots: { size: number; root: Uint8Array }[] = [];
  for (let start = 0; start < all.length; start += BLOCK_SIZE) {
    const count = Math.min(BLOCK_SIZE, all.length - start);
    const inside = prefixSizes.filter((s) => s > start && s < start + count);
    roots.push(...combiner.add(summarizeBlock(start, count, all.slice(start, start + count), inside)));
  }
  return { combiner, roots };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('audit verify blocks', () => {
  it('fold into the root of the whole log and of every prefix, whole blocks or not', () => {
    const all = rows(2 * BLOCK_SIZE + 37, BLOCK_SIZE + 5);
    const leaves = all.map((r) => r[1]);
    const prefixSizes = [1, 5, 5, BLOCK_SIZE - 1, BLOCK_SIZE + 3, 2 * BLOCK_SIZE + 36];
    const { combiner, roots } = summarizeAll(all, prefixSizes);
    assert.equal(combiner.size, all.length);
    assert.equal(hex(combiner.root()), hex(rootFromLeafHashes(leaves)));
    // One root per size, even for sizes two checkpoints share.
    assert.deepEqual(
      roots.map((r) => r.size),
      [...new Set(prefixSizes)],
    );
    for (const { size, root } of roots)
      assert.equal(hex(root), hex(rootFromLeafHashes(leaves.slice(0, size))));
    const pruned = all.filter((r) => r[2] === null).length;
    assert.equal(combiner.bodiesPruned, pruned);
    assert.equal(combiner.bodiesChecked, all.length - pruned);
  });

  it('name the first bad entry: edited body, wrong index, missing row, malformed hash or body', () => {
    const all = rows(40);
    const cases: [string, (r: EntryRow[]) => void, RegExp][] = [
      ['edited body', (r) => (r[7] = [7, r[7]![1], body(8)]), /entry 7 does not match its leaf hash/],
      ['wrong index', (r) => (r[9] = [9, leafHash(body(10)), body(10)]), /entry 9 has a wrong index/],
      ['missing row', (r) => r.splice(12, 1), /entry 12 is missing/],
      ['short hash', (r) => (r[3] = [3, new Uint8Array(31), null]), /entry 3 has a malformed leaf hash/],
      [
        'text body',
        (r) => (r[4] = [4, r[4]![1], 'x' as unknown as Uint8Array]),
        /entry 4 has a malformed body/,
      ],
      ['extra row', (r) => r.push([40, leafHash(body(40)), body(40)]), /entry 40 is unexpected/],
      [
        'body gone after bodies',
        (r) => (r[20] = [20, r[20]![1], null]),
        /entry 20 has no body although earlier/,
      ],
    ];
    for (const [name, edit, want] of cases) {
      const copy = all.slice();
      edit(copy);
      assert.throws(
        () => summarizeBlock(0, 40, copy),
        (e: unknown) => e instanceof AuditLogError && e.reason === 'integrity' && want.test(e.message),
        name,
      );
    }
  });

  it('refuse a block starting without bodies after a block with bodies', () => {
    const all = rows(BLOCK_SIZE + 10);
    for (let i = BLOCK_SIZE; i < BLOCK_SIZE + 3; i++) all[i] = [i, all[i]![1], null];
    assert.throws(
      () => summarizeAll(all, []),
      (e: unknown) =>
        e instanceof AuditLogError && /^entry 4096 has no body although earlier/.test(e.message),
    );
  });

  it('refuse blocks out of order', () => {
    const combiner = new BlockCombiner();
    const all = rows(BLOCK_SIZE + 1);
    assert.throws(() => combiner.add(summarizeBlock(BLOCK_SIZE, 1, all.slice(BLOCK_SIZE))), AuditLogError);
  });
});

describe('indexOfBody', () => {
  it('reads the top-level index of canonical bodies, whatever else they hold', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.nat(), (rest, index) => {
        assert.equal(indexOfBody(canonicalBytes({ ...rest, index })), index);
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with JSON.parse on any JSON object text, and never throws on bytes', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.oneof(fc.jsonValue(), fc.constant(undefined)), (value, index) => {
        const obj =
          typeof value === 'object' && value !== null && !Array.isArray(value) ? value : { v: value };
        const text = JSON.stringify(index === undefined ? obj : { ...obj, index });
        assert.deepEqual(indexOfBody(Buffer.from(text)), (JSON.parse(text) as { index?: unknown }).index);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        indexOfBody(bytes);
      }),
    );
  });

  it('leaves duplicate, escaped and non-integer index members to JSON.parse', () => {
    const cases = [
      '{"index":1,"index":2}',
      '{"ind\\u0065x":3}',
      '{"index":4.5}',
      '{"index":-1}',
      '{"index":"7"}',
      '{"index":007}',
      '{"a":"}","index":8}',
      '{"a":"\\"","index":9}',
      '{"a":[{"index":1}],"index":10}',
    ];
    for (const text of cases) {
      let want: unknown;
      try {
        want = (JSON.parse(text) as { index?: unknown }).index;
      } catch {
        want = undefined;
      }
      assert.deepEqual(indexOfBody(Buffer.from(text)), want, text);
    }
  });
});
