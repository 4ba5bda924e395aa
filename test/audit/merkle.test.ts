import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { vectorPath, hex } from '../support/vectors.ts';
import { InvalidInputError } from '../../src/crypto/errors.ts';
import {
  HASH_SIZE,
  MemoryMerkleTree,
  MerkleFrontier,
  MerkleProofError,
  assembleProof,
  consistencyProof,
  emptyRoot,
  frontierCoords,
  inclusionProof,
  isEmptyRoot,
  leafHash,
  nodeHash,
  planConsistencyProof,
  planInclusionProof,
  planRoot,
  rootAtSize,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
  type MerkleProofFailure,
  type SubtreeHashReader,
} from '../../src/audit/merkle.ts';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

/** Runs a verifier and returns the failure reason, or null when it verifies. */
function outcome(run: () => void): MerkleProofFailure | null {
  try {
    run();
    return null;
  } catch (err) {
    if (err instanceof MerkleProofError) return err.reason;
    throw err;
  }
}

function listJson(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listJson(p));
    else if (name.endsWith('.json')) out.push(p);
  }
  return out;
}

interface InclusionProbe {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

interface ConsistencyProbe {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

interface Roots {
  leafInputs: string[];
  rootHashes: string[];
  leafHashes: string[];
}

const roots = JSON.parse(readFileSync(vectorPath('merkle', 'roots.json'), 'utf8')) as Roots;

/** A tree over the roots.json leaves: the tree the probe files were generated from. */
function vectorTree(): MemoryMerkleTree {
  const t = new MemoryMerkleTree();
  for (const l of roots.leafInputs) t.appendLeaf(hex(l));
  return t;
}

describe('hashing and roots.json', () => {
  it('leaf hashes, node hash and the empty root follow RFC 6962', () => {
    assert.ok(roots.leafInputs.length > 0);
    assert.equal(roots.leafHashes.length, roots.leafInputs.length);
    roots.leafInputs.forEach((input, i) => {
      assert.equal(toHex(leafHash(hex(input))), roots.leafHashes[i]);
    });
    assert.equal(toHex(emptyRoot()), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.ok(isEmptyRoot(emptyRoot()));
    const l0 = hex(roots.leafHashes[0]);
    const l1 = hex(roots.leafHashes[1]);
    assert.equal(toHex(nodeHash(l0, l1)), roots.rootHashes[2]);
    assert.throws(() => nodeHash(l0, l1.subarray(1)), InvalidInputError);
  });

  it('root over the first n leaves, for every n, by every method', () => {
    assert.equal(roots.rootHashes.length, roots.leafInputs.length + 1);
    const leafHashes = roots.leafInputs.map((l) => leafHash(hex(l)));
    const tree = new MemoryMerkleTree();
    const frontier = new MerkleFrontier();
    for (let n = 0; n <= leafHashes.length; n++) {
      const want = roots.rootHashes[n];
      assert.equal(toHex(rootFromLeafHashes(leafHashes.slice(0, n))), want, `reference root ${n}`);
      assert.equal(toHex(frontier.root()), want, `frontier root ${n}`);
      assert.equal(toHex(tree.root()), want, `tree root ${n}`);
      const next = leafHashes[n];
      if (next !== undefined) {
        frontier.append(next);
        tree.appendLeafHash(next);
      }
    }
    for (let n = 0; n <= leafHashes.length; n++) {
      assert.equal(toHex(tree.rootAt(n)), roots.rootHashes[n], `historical root ${n}`);
    }
  });
});

describe('RFC 6962 probe vectors', () => {
  it('inclusion: every probe file fails exactly when wantErr is true', (t) => {
    const files = listJson(vectorPath('merkle', 'testdata', 'inclusion'));
    const tree = vectorTree();
    let wantErr = 0;
    let wantOk = 0;
    let crossChecked = 0;
    for (const file of files) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as InclusionProbe;
      const proof = (v.proof ?? []).map(b64);
      const reason = outcome(() => {
        verifyInclusion(b64(v.leafHash), v.leafIdx, v.treeSize, proof, b64(v.root));
      });
      assert.equal(
        reason !== null,
        v.wantErr,
        `${path.relative(vectorPath('merkle'), file)}: ${v.desc} (${reason})`,
      );
      if (!Number.isSafeInteger(v.leafIdx)) assert.equal(reason, 'invalid_size');
      if (v.wantErr) wantErr++;
      else wantOk++;
      // A valid probe over the roots.json leaves must be exactly the proof we generate.
      if (!v.wantErr && v.treeSize <= tree.size && toHex(b64(v.root)) === roots.rootHashes[v.treeSize]) {
        assert.deepEqual(tree.inclusionProof(v.leafIdx, v.treeSize).map(toHex), proof.map(toHex), file);
        crossChecked++;
      }
    }
    t.diagnostic(
      `inclusion files=${files.length} wantErr=true:${wantErr} false:${wantOk} generated=${crossChecked}`,
    );
    assert.equal(files.length, 98);
    assert.ok(wantOk > 0 && wantErr > 0 && crossChecked > 0);
  });

  it('consistency: every probe file fails exactly when wantErr is true', (t) => {
    const files = listJson(vectorPath('merkle', 'testdata', 'consistency'));
    const tree = vectorTree();
    let wantErr = 0;
    let wantOk = 0;
    let crossChecked = 0;
    for (const file of files) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as ConsistencyProbe;
      const proof = (v.proof ?? []).map(b64);
      const reason = outcome(() => {
        verifyConsistency(v.size1, v.size2, proof, b64(v.root1), b64(v.root2));
      });
      assert.equal(
        reason !== null,
        v.wantErr,
        `${path.relative(vectorPath('merkle'), file)}: ${v.desc} (${reason})`,
      );
      if (v.wantErr) wantErr++;
      else wantOk++;
      if (
        !v.wantErr &&
        v.size1 > 0 &&
        v.size2 <= tree.size &&
        toHex(b64(v.root2)) === roots.rootHashes[v.size2] &&
        toHex(b64(v.root1)) === roots.rootHashes[v.size1]
      ) {
        assert.deepEqual(tree.consistencyProof(v.size1, v.size2).map(toHex), proof.map(toHex), file);
        crossChecked++;
      }
    }
    t.diagnostic(
      `consistency files=${files.length} wantErr=true:${wantErr} false:${wantOk} generated=${crossChecked}`,
    );
    assert.equal(files.length, 98);
    assert.ok(wantOk > 0 && wantErr > 0 && crossChecked > 0);
  });
});

// One tree of distinct leaves, shared by the property tests; every prefix of it is a tree of that size.
const MAX = 300;
const big = new MemoryMerkleTree();
const bigLeaves: Uint8Array[] = [];
for (let i = 0; i < MAX; i++) {
  const h = leafHash(Buffer.from(`warden audit leaf ${i}`));
  bigLeaves.push(h);
  big.appendLeafHash(h);
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = Uint8Array.from(b);
  const i = Math.floor(bit / 8) % c.length;
  c[i] = (c[i] as number) ^ (1 << (bit % 8));
  return c;
}

const sizeAndIndex = fc
  .integer({ min: 1, max: MAX })
  .chain((size) => fc.tuple(fc.constant(size), fc.integer({ min: 0, max: size - 1 })));
const sizePair = fc
  .integer({ min: 1, max: MAX })
  .chain((size2) => fc.tuple(fc.integer({ min: 1, max: size2 }), fc.constant(size2)));
const bit = fc.integer({ min: 0, max: HASH_SIZE * 8 - 1 });

describe('proof properties (fast-check)', () => {
  it('roots: memory tree, frontier, reader and reference agree for every size', () => {
    const frontier = new MerkleFrontier();
    for (let n = 0; n <= MAX; n++) {
      const want = toHex(rootFromLeafHashes(bigLeaves.slice(0, n)));
      assert.equal(toHex(frontier.root()), want);
      assert.equal(toHex(rootAtSize(big, n)), want);
      const h = bigLeaves[n];
      if (h !== undefined) frontier.append(h);
    }
    assert.equal(toHex(big.root()), toHex(frontier.root()));
  });

  it('generated inclusion proofs verify; any single-bit flip in proof, root or leaf fails', () => {
    fc.assert(
      fc.property(sizeAndIndex, bit, fc.nat(), ([size, index], b, which) => {
        const proof = big.inclusionProof(index, size);
        const root = big.rootAt(size);
        const leaf = bigLeaves[index]!;
        assert.equal(
          outcome(() => {
            verifyInclusion(leaf, index, size, proof, root);
          }),
          null,
        );
        // flip a bit in the leaf, the root, or one proof entry
        const target = which % (proof.length + 2);
        const p2 = proof.map((e, i) => (i === target - 2 ? flipBit(e, b) : e));
        const leaf2 = target === 0 ? flipBit(leaf, b) : leaf;
        const root2 = target === 1 ? flipBit(root, b) : root;
        assert.equal(
          outcome(() => {
            verifyInclusion(leaf2, index, size, p2, root2);
          }),
          'root_mismatch',
        );
        // wrong index, dropped or extra entry (the tree size itself is bound by the signed checkpoint, not the proof)
        if (size > 1) {
          assert.notEqual(
            outcome(() => {
              verifyInclusion(leaf, (index + 1) % size, size, proof, root);
            }),
            null,
          );
        }
        assert.notEqual(
          outcome(() => {
            verifyInclusion(leaf, index, size, [...proof, leaf], root);
          }),
          null,
        );
        if (proof.length > 0) {
          assert.notEqual(
            outcome(() => {
              verifyInclusion(leaf, index, size, proof.slice(1), root);
            }),
            null,
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it('generated consistency proofs verify; any single-bit flip in proof or either root fails', () => {
    fc.assert(
      fc.property(sizePair, bit, fc.nat(), ([size1, size2], b, which) => {
        const proof = big.consistencyProof(size1, size2);
        const r1 = big.rootAt(size1);
        const r2 = big.rootAt(size2);
        assert.equal(
          outcome(() => {
            verifyConsistency(size1, size2, proof, r1, r2);
          }),
          null,
        );
        const target = which % (proof.length + 2);
        const p2 = proof.map((e, i) => (i === target - 2 ? flipBit(e, b) : e));
        const r1b = target === 0 ? flipBit(r1, b) : r1;
        const r2b = target === 1 ? flipBit(r2, b) : r2;
        assert.equal(
          outcome(() => {
            verifyConsistency(size1, size2, p2, r1b, r2b);
          }),
          'root_mismatch',
        );
        assert.notEqual(
          outcome(() => {
            verifyConsistency(size1, size2, [...proof, r1], r1, r2);
          }),
          null,
        );
        if (proof.length > 0) {
          assert.notEqual(
            outcome(() => {
              verifyConsistency(size1, size2, proof.slice(0, -1), r1, r2);
            }),
            null,
          );
        }
        if (size1 < size2) {
          assert.equal(
            outcome(() => {
              verifyConsistency(size2, size1, proof, r2, r1);
            }),
            'size_order',
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it('plan + assemble (the async-store path) equals the sync reader path, and stays inside the tree', () => {
    fc.assert(
      fc.property(sizeAndIndex, sizePair, ([size, index], [size1, size2]) => {
        for (const [plan, direct, limit] of [
          [planInclusionProof(index, size), big.inclusionProof(index, size), size],
          [planConsistencyProof(size1, size2), big.consistencyProof(size1, size2), size2],
          [planRoot(size), [big.rootAt(size)], size],
        ] as const) {
          for (const c of plan.nodes) assert.ok((c.index + 1) * 2 ** c.level <= limit);
          const fetched = plan.nodes.map((c) => big.getSubtreeHash(c.level, c.index));
          assert.deepEqual(assembleProof(plan, fetched).map(toHex), direct.map(toHex));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('frontier: serialise/restore round-trips and matches the reference root', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX }), fc.integer({ min: 0, max: 20 }), (n, more) => {
        const f = new MerkleFrontier();
        for (const h of bigLeaves.slice(0, n)) f.append(h);
        const bytes = f.serialize();
        assert.equal(bytes.length, 9 + frontierCoords(n).length * HASH_SIZE);
        const g = MerkleFrontier.deserialize(bytes);
        assert.equal(g.size, n);
        assert.equal(toHex(g.serialize()), toHex(bytes));
        assert.equal(toHex(g.root()), toHex(rootFromLeafHashes(bigLeaves.slice(0, n))));
        // the store's way back: fetch the frontier's subtrees from the node table
        const fromStore = MerkleFrontier.fromSubtreeHashes(
          n,
          frontierCoords(n).map((c) => big.getSubtreeHash(c.level, c.index)),
        );
        assert.equal(toHex(fromStore.serialize()), toHex(bytes));
        assert.deepEqual(
          g.subtrees().map((s) => [s.level, s.index, toHex(s.hash)]),
          frontierCoords(n).map((c) => [c.level, c.index, toHex(big.getSubtreeHash(c.level, c.index))]),
        );
        // a restored frontier keeps appending correctly
        const end = Math.min(MAX, n + more);
        for (const h of bigLeaves.slice(n, end)) g.append(h);
        assert.equal(toHex(g.root()), toHex(big.rootAt(end)));
      }),
      { numRuns: 200 },
    );
  });

  it('frontier.append reports exactly the newly completed perfect subtrees', () => {
    const f = new MerkleFrontier();
    const seen = new Map<string, string>();
    bigLeaves.slice(0, 64).forEach((h, i) => {
      const done = f.append(h);
      assert.deepEqual(done[0] && [done[0].level, done[0].index], [0, i]);
      for (const n of done) {
        const key = `${n.level}/${n.index}`;
        assert.ok(!seen.has(key), key);
        seen.set(key, toHex(n.hash));
        assert.equal(toHex(n.hash), toHex(big.getSubtreeHash(n.level, n.index)));
      }
    });
    assert.equal(seen.size, 127); // 64 + 32 + … + 1
  });
});

describe('malformed inputs', () => {
  const root = big.rootAt(10);
  const leaf = bigLeaves[3]!;
  const proof = big.inclusionProof(3, 10);

  it('verifiers reject bad sizes, indices and hash lengths with a reason', () => {
    const cases: [() => void, MerkleProofFailure][] = [
      [
        () => {
          verifyInclusion(leaf, -1, 10, proof, root);
        },
        'invalid_size',
      ],
      [
        () => {
          verifyInclusion(leaf, 3.5, 10, proof, root);
        },
        'invalid_size',
      ],
      [
        () => {
          verifyInclusion(leaf, 3, 2 ** 53, proof, root);
        },
        'invalid_size',
      ],
      [
        () => {
          verifyInclusion(leaf, 10, 10, proof, root);
        },
        'index_out_of_range',
      ],
      [
        () => {
          verifyInclusion(leaf, 0, 0, [], emptyRoot());
        },
        'index_out_of_range',
      ],
      [
        () => {
          verifyInclusion(leaf.subarray(1), 3, 10, proof, root);
        },
        'malformed_hash',
      ],
      [
        () => {
          verifyInclusion(leaf, 3, 10, [...proof.slice(1), new Uint8Array(33)], root);
        },
        'malformed_hash',
      ],
      [
        () => {
          verifyInclusion(leaf, 3, 10, proof, new Uint8Array(0));
        },
        'malformed_hash',
      ],
      [
        () => {
          verifyConsistency(4, 3, [], root, root);
        },
        'size_order',
      ],
      [
        () => {
          verifyConsistency(0, 3, [root], emptyRoot(), root);
        },
        'empty_tree',
      ],
      [
        () => {
          verifyConsistency(3, 10, [], root, root);
        },
        'proof_length',
      ],
      [
        () => {
          verifyConsistency(3, 3, [root], root, root);
        },
        'proof_length',
      ],
      [
        () => {
          verifyConsistency(0, 0, [], root, root);
        },
        'root_mismatch',
      ],
      [
        () => {
          verifyConsistency(3, 10, [new Uint8Array(31)], root, root);
        },
        'malformed_hash',
      ],
      [
        () => {
          verifyConsistency(Number.NaN, 10, [], root, root);
        },
        'invalid_size',
      ],
    ];
    for (const [run, reason] of cases) assert.equal(outcome(run), reason);
    assert.equal(
      outcome(() => {
        verifyConsistency(0, 0, [], emptyRoot(), emptyRoot());
      }),
      null,
    );
    const err = (() => {
      try {
        verifyInclusion(leaf, 3, 10, proof, big.rootAt(9));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(err instanceof MerkleProofError);
    assert.equal(err.code, 'verification_failed');
    assert.equal(err.proof, 'inclusion');
    assert.equal(err.name, 'MerkleProofError');
  });

  it('never throws anything but MerkleProofError on arbitrary input', () => {
    const anyHash = fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom(...bigLeaves.slice(0, 4), root),
    );
    const anyNum = fc.oneof(
      fc.integer({ min: -2, max: 40 }),
      fc.double(),
      fc.constantFrom(2 ** 53 - 1, 2 ** 53, 2 ** 64, Number.NaN, Infinity),
    );
    fc.assert(
      fc.property(anyHash, anyHash, anyNum, anyNum, fc.array(anyHash, { maxLength: 8 }), (a, b, x, y, p) => {
        for (const run of [
          () => {
            verifyInclusion(a, x, y, p, b);
          },
          () => {
            verifyConsistency(x, y, p, a, b);
          },
        ]) {
          try {
            run();
          } catch (e) {
            assert.ok(e instanceof MerkleProofError, String(e));
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('generators and the frontier reject bad arguments with InvalidInputError', () => {
    assert.throws(() => planInclusionProof(5, 5), InvalidInputError);
    assert.throws(() => planInclusionProof(-1, 5), InvalidInputError);
    assert.throws(() => planConsistencyProof(0, 5), InvalidInputError);
    assert.throws(() => planConsistencyProof(6, 5), InvalidInputError);
    assert.deepEqual(planConsistencyProof(5, 5), { nodes: [], entries: [] });
    assert.deepEqual(assembleProof(planRoot(0), []).map(toHex), [toHex(emptyRoot())]);
    assert.throws(() => assembleProof(planRoot(3), []), InvalidInputError);
    assert.throws(() => big.inclusionProof(0, MAX + 1), InvalidInputError);
    assert.throws(() => big.getSubtreeHash(9, 0), InvalidInputError); // 512 leaves: not there yet
    const partial: SubtreeHashReader = { getSubtreeHash: () => new Uint8Array(3) };
    assert.throws(() => inclusionProof(partial, 1, 4), InvalidInputError);
    assert.throws(() => consistencyProof(partial, 1, 4), InvalidInputError);
    assert.throws(() => new MerkleFrontier().append(new Uint8Array(31)), InvalidInputError);
    assert.throws(() => MerkleFrontier.fromSubtreeHashes(3, [leaf]), InvalidInputError);

    const good = big.frontier().serialize();
    const bad: Uint8Array[] = [
      new Uint8Array(0),
      good.subarray(0, 8),
      good.subarray(0, good.length - 1),
      Uint8Array.of(...good, 0),
      Uint8Array.of(2, ...good.subarray(1)),
      Uint8Array.of(1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
      Uint8Array.of(1, 0, 0x20, 0, 0, 0, 0, 0, 0), // 2^53
    ];
    for (const b of bad) assert.throws(() => MerkleFrontier.deserialize(b), InvalidInputError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          MerkleFrontier.deserialize(bytes);
        } catch (e) {
          assert.ok(e instanceof InvalidInputError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
