import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  InvalidInputError,
  parseArtifactPath,
  parseDigest,
  parseName,
  parseParameters,
  parseStage,
  parseVersion,
} from '../../src/registry/index.ts';

function outcome(fn: () => unknown): 'ok' | 'invalid' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof InvalidInputError, `unexpected ${String(err)}`);
    return 'invalid';
  }
}

const segment = fc.oneof(
  fc.string({ minLength: 0, maxLength: 12 }),
  fc.constantFrom('.', '..', '', '.git', 'a\\b', 'x\u0000', 'ok', 'dir', 'é', '\ud800'),
);

describe('registry input parsers', () => {
  it('artifact paths: anything accepted stays inside the root and is canonical; anything else is InvalidInputError', () => {
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), fc.boolean(), (parts, lead) => {
        const input = (lead ? '/' : '') + parts.join('/');
        if (outcome(() => parseArtifactPath(input)) === 'ok') {
          const root = path.resolve('/srv/staging/root');
          const joined = path.resolve(root, ...input.split('/'));
          assert.ok(joined.startsWith(root + path.sep), input);
          assert.equal(path.posix.normalize(input), input);
          assert.ok(!input.split('/').some((c) => c === '..' || c === '.' || c === ''));
          assert.ok(!input.includes('\\'));
          assert.equal(parseArtifactPath(input), input);
        }
      }),
      { numRuns: 3000 },
    );
    fc.assert(fc.property(fc.anything(), (value) => void outcome(() => parseArtifactPath(value))));
  });

  it('refuses the classic traversals and oversized paths', () => {
    for (const bad of [
      '../a',
      'a/..',
      '/etc/passwd',
      'a/./b',
      'a//b',
      'a/',
      'C:\\x',
      '\u0000',
      '.github/x',
    ]) {
      assert.equal(
        outcome(() => parseArtifactPath(bad)),
        'invalid',
        bad,
      );
    }
    assert.equal(
      outcome(() => parseArtifactPath('a'.repeat(256))),
      'invalid',
    );
    assert.equal(
      outcome(() => parseArtifactPath(Array(600).fill('ab').join('/'))),
      'invalid',
    );
    assert.equal(parseArtifactPath('sub/.git/config'), 'sub/.git/config');
  });

  it('names, versions, digests and stages: total, typed failures only', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 140 }), fc.anything()), (value) => {
        if (outcome(() => parseName(value)) === 'ok') assert.match(value as string, /^[a-z0-9][a-z0-9._-]*$/);
        if (outcome(() => parseVersion(value)) === 'ok') assert.ok(!(value as string).includes('/'));
        void outcome(() => parseDigest(value));
        void outcome(() => parseStage(value));
      }),
      { numRuns: 3000 },
    );
    assert.equal(parseDigest(`sha256:${'a'.repeat(64)}`), 'a'.repeat(64));
    assert.equal(
      outcome(() => parseDigest('A'.repeat(64))),
      'invalid',
    );
  });

  it('parameters: flat, bounded, no prototype pollution', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => void outcome(() => parseParameters(value))),
      { numRuns: 2000 },
    );
    const parsed = parseParameters(JSON.parse('{"__proto__": "x", "lr": 0.1}') as unknown);
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(parsed, '__proto__')?.value, 'x');
    assert.equal(
      outcome(() => parseParameters({ nested: { a: 1 } })),
      'invalid',
    );
    assert.equal(
      outcome(() => parseParameters({ inf: Infinity })),
      'invalid',
    );
  });
});
