// Custom policies: malformed and schema-invalid text rejected with positions, the store's add/remove/list and
// versions, and a fast-check fuzz showing validatePolicies never throws and always answers with typed diagnostics.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MAX_POLICY_TEXT_CHARS,
  PolicyStore,
  PolicyStoreError,
  PolicyValidationError,
  validatePolicies,
} from '../../src/policy/index.ts';
import type { PolicyDiagnostic } from '../../src/policy/index.ts';

const KINDS = new Set(['parse', 'validation', 'limit', 'internal']);

function firstError(text: string): PolicyDiagnostic {
  const result = validatePolicies(text);
  assert.equal(result.ok, false, text);
  const error = result.diagnostics.find((d) => d.severity === 'error');
  assert.ok(error, JSON.stringify(result));
  return error;
}

describe('validatePolicies', () => {
  it('accepts a valid custom policy', () => {
    const result = validatePolicies(
      `// fraud analysts may read confidential data
permit (principal in Warden::Group::"fraud", action == Warden::Action::"dataset.read", resource is Warden::Dataset)
when { resource.sensitivity != "restricted" };`,
    );
    assert.equal(result.ok, true, JSON.stringify(result.diagnostics));
    assert.equal(result.policies.length, 1);
  });

  it('reports a syntax error with line and column', () => {
    const e = firstError(
      'permit (principal, action, resource);\npermit (principal, action, resource) when { 1 + };',
    );
    assert.equal(e.kind, 'parse');
    assert.equal(e.line, 2);
    assert.equal(e.column, 49); // the `}` after `1 +`
    assert.equal(e.offset, 38 + 48);
  });

  it('counts columns in characters when the text has multi-byte characters', () => {
    const e = firstError('// données 😀\npermit (principal, action, resource) when { 1 + };');
    assert.equal(e.line, 2);
    assert.equal(e.column, 49);
  });

  it('rejects unknown actions, entity types and attributes with positions', () => {
    const cases: [string, RegExp, number, number][] = [
      ['permit (principal, action == Warden::Action::"dataset.steal", resource);', /dataset\.steal/, 1, 1],
      ['permit (principal is Warden::Robot, action, resource);', /Robot/, 1, 1],
      [
        'permit (principal, action == Warden::Action::"dataset.read", resource)\nwhen { resource.colour == "red" };',
        /colour/,
        2,
        8,
      ],
    ];
    for (const [text, pattern, line, column] of cases) {
      const e = firstError(text);
      assert.equal(e.kind, 'validation', text);
      assert.match(`${e.message} ${e.help ?? ''}`, pattern);
      assert.equal(e.line, line, text);
      assert.ok((e.column ?? 0) >= column, `${text}: ${e.column}`);
    }
  });

  it('rejects unguarded optional context attributes and type errors', () => {
    const e = firstError(
      'forbid (principal, action == Warden::Action::"endpoint.invoke", resource)\nwhen { context.mfaAgeSeconds > 10 };',
    );
    assert.equal(e.kind, 'validation');
    assert.match(e.help ?? '', /context has mfaAgeSeconds/);
    const t = firstError(
      'permit (principal, action == Warden::Action::"dataset.read", resource) when { resource.sensitivity > 1 };',
    );
    assert.equal(t.kind, 'validation');
  });

  it('rejects templates, empty text, oversized and ill-formed text', () => {
    assert.equal(firstError('permit (principal == ?principal, action, resource);').kind, 'validation');
    assert.equal(firstError('').kind, 'parse');
    assert.equal(firstError('// only a comment').kind, 'parse');
    assert.equal(firstError('x'.repeat(MAX_POLICY_TEXT_CHARS + 1)).kind, 'limit');
    assert.equal(firstError('permit (principal, action, resource) when { "\ud800" };').kind, 'limit');
  });

  it('fuzz: never throws, always typed diagnostics with sane positions', () => {
    const fragments = fc.constantFrom(
      'permit',
      'forbid',
      '(',
      ')',
      ';',
      'principal',
      'action',
      'resource',
      ',',
      '==',
      'in',
      'is',
      'when',
      'unless',
      '{',
      '}',
      'context has now',
      'Warden::Action::"dataset.read"',
      'Warden::Role::"admin"',
      'Warden::Dataset',
      'resource.sensitivity',
      '"restricted"',
      '&&',
      '||',
      'ip("10.0.0.0/8")',
      '.isInRange(',
      '@id("x")',
      '\n',
      ' ',
      '"',
      '\\',
      '?principal',
      '1',
      '-9223372036854775808',
      '😀',
    );
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.array(fragments, { maxLength: 40 }).map((parts) => parts.join(' ')),
      fc.array(fragments, { maxLength: 40 }).map((parts) => parts.join('')),
    );
    fc.assert(
      fc.property(text, (input) => {
        const result = validatePolicies(input);
        assert.equal(typeof result.ok, 'boolean');
        if (!result.ok) assert.ok(result.diagnostics.some((d) => d.severity === 'error'));
        for (const d of result.diagnostics) {
          assert.ok(KINDS.has(d.kind), d.kind);
          assert.equal(typeof d.message, 'string');
          if (d.line !== undefined) {
            assert.ok(d.line >= 1 && (d.column ?? 0) >= 1, JSON.stringify(d));
            assert.ok((d.offset ?? 0) <= input.length, JSON.stringify(d));
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('PolicyStore', () => {
  it('add / list / remove produce new versions; built-ins are fixed', () => {
    const store = new PolicyStore();
    const v0 = store.version;
    const builtIns = store.list().length;
    const v1 = store.add(
      'ops-freeze',
      'forbid (principal, action == Warden::Action::"model.deploy", resource);',
    );
    assert.equal(v1, v0 + 1);
    assert.equal(store.list().length, builtIns + 1);
    assert.equal(store.get('ops-freeze')?.source, 'custom');
    // Replacing keeps one entry and bumps.
    const v2 = store.add(
      'ops-freeze',
      `forbid (principal, action == Warden::Action::"model.deploy", resource);
       forbid (principal, action == Warden::Action::"model.promote", resource);`,
    );
    assert.equal(v2, v1 + 1);
    assert.deepEqual(store.get('ops-freeze')?.policyIds, ['ops-freeze#0', 'ops-freeze#1']);
    assert.ok('ops-freeze#1' in store.policies());
    assert.equal(store.remove('ops-freeze'), true);
    assert.equal(store.remove('ops-freeze'), false);
    assert.equal(store.version, v2 + 1);
    assert.throws(() => store.remove('role.admin'), PolicyStoreError);
    assert.throws(() => store.add('role.admin', 'permit (principal, action, resource);'), PolicyStoreError);
    assert.throws(() => store.add('bad id', 'permit (principal, action, resource);'), PolicyStoreError);
  });

  it('refuses invalid text with positioned diagnostics and leaves the version alone', () => {
    const store = new PolicyStore();
    const v = store.version;
    const onChange: number[] = [];
    store.onChange((version) => onChange.push(version));
    try {
      store.add('broken', 'permit (principal, action, resource)\nwhen { resource.nope };');
      assert.fail('expected PolicyValidationError');
    } catch (err) {
      assert.ok(err instanceof PolicyValidationError);
      assert.equal(err.diagnostics[0]?.line, 2);
      assert.match(err.message, /at 2:/);
    }
    assert.equal(store.version, v);
    store.add('ok', 'permit (principal, action == Warden::Action::"policy.read", resource);');
    assert.deepEqual(onChange, [v + 1]);
  });
});
