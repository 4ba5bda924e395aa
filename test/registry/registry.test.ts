import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as CDX from '@cyclonedx/cyclonedx-library';
import { RULES_VERSION, scanFile, scanSource } from '../../src/scanner/index.ts';
import { rootDigest, serializeModel, verifyModel } from '../../src/signing/index.ts';
import {
  AuditFailedError,
  ConflictError,
  GateError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  RegistryForbiddenError,
  SelfApprovalError,
  TooLargeError,
  VerificationError,
  type RegistryScanner,
} from '../../src/registry/index.ts';
import { alice, bob, fixture, makeDataset, makeModel, mallory, workDir, type Fixture } from './support.ts';

async function rejectsWith(
  p: Promise<unknown>,
  type: new (...args: never[]) => Error,
  code?: string,
): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    if (code !== undefined) assert.equal((err as { code?: string }).code, code);
    return err;
  }
  assert.fail(`expected ${type.name}, but it resolved`);
}

async function* chunks(...parts: (string | Buffer)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) {
    await Promise.resolve();
    yield typeof p === 'string' ? Buffer.from(p) : p;
  }
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`registry end to end (${dialect})`, () => {
    let f: Fixture;
    let work: string;
    let cleanup: () => void;
    before(async () => {
      f = await fixture(dialect);
      ({ dir: work, cleanup } = workDir());
    });
    after(async () => {
      await f.close();
      cleanup();
    });

    it('registers a model: OMS root digest, per-file digests, detected formats, clean scan, encrypted blobs', async () => {
      const dir = makeModel(work, { seed: 3 });
      const v = await f.registry.registerModelVersion(alice, {
        model: 'sentiment',
        version: '1.0.0',
        dir,
        metadata: { description: 'a tiny model', framework: 'pytorch', license: 'Apache-2.0' },
        lineage: { codeCommit: 'a'.repeat(40), parameters: { lr: 0.001, epochs: 3, optimizer: 'adam' } },
      });
      const manifest = await serializeModel(dir, {
        method: 'files',
        hashAlgorithm: 'sha256',
        concurrency: 1,
      });
      assert.equal(v.digest, rootDigest(manifest.resources));
      assert.equal(v.fileCount, 3);
      assert.equal(v.format, 'pickle');
      assert.equal(v.scan.verdict, 'clean');
      assert.equal(v.scan.rulesVersion, RULES_VERSION);
      assert.deepEqual(v.lineage.parameters, { lr: 0.001, epochs: 3, optimizer: 'adam' });
      const { files } = await f.registry.getModelVersion(alice, 'sentiment', '1.0.0');
      assert.deepEqual(
        files.map((x) => [x.path, x.format]),
        [
          ['config.json', 'unknown'],
          ['tokenizer/vocab.txt', 'unknown'],
          ['weights.pkl', 'pickle'],
        ],
      );
      for (const file of files) {
        const stored = readFileSync(f.blobs.pathOf(file.blobId));
        assert.equal(stored.subarray(0, 4).toString('latin1'), 'WRDN');
        const plain = readFileSync(path.join(dir, file.path));
        assert.ok(!stored.includes(plain.subarray(0, Math.min(plain.length, 32))), 'blob holds plaintext');
      }
      const event = f.audit.events.findLast((e) => e.action === 'registry.model.register');
      assert.equal(event?.outcome, 'success');
      assert.equal(event.details?.['digest'], v.digest);
      await rejectsWith(
        f.registry.registerModelVersion(alice, { model: 'sentiment', version: '1.0.0', dir }),
        ConflictError,
      );
      // The same content under another label is the same identity: refused too.
      await rejectsWith(
        f.registry.registerModelVersion(alice, { model: 'sentiment', version: '1.0.1', dir }),
        ConflictError,
      );
    });

    it('signs with the KMS key over the stored digests; the bundle verifies the original directory', async () => {
      const sig = await f.registry.sign(alice, 'sentiment', '1.0.0');
      assert.equal(sig.signerIdentity, 'kms:registry-signing#1');
      assert.equal(sig.verifiedWith, 'registry-signing');
      const dir = path.join(
        work,
        readdirSync(work).find((d) => d.startsWith('model-'))!,
      );
      const trust = f.trusted[0]!.trust;
      const checked = await verifyModel(dir, sig.bundle, trust, { concurrency: 1 });
      assert.equal(checked.filesVerified, 3);
      const result = await f.registry.verify(alice, 'sentiment', '1.0.0', { deep: true });
      assert.equal(result.verifiedWith, 'registry-signing');
      assert.equal(result.filesChecked, 3);
    });

    it('downloads a version, verifying every file', async () => {
      const out = path.join(work, 'download-1');
      const progress: number[] = [];
      const r = await f.registry.download(alice, 'model', 'sentiment', '1.0.0', out, {
        onProgress: (n) => progress.push(n),
      });
      assert.equal(r.files, 3);
      const dir = path.join(
        work,
        readdirSync(work).find((d) => d.startsWith('model-'))!,
      );
      for (const rel of ['config.json', 'tokenizer/vocab.txt', 'weights.pkl']) {
        assert.deepEqual(readFileSync(path.join(out, rel)), readFileSync(path.join(dir, rel)));
      }
      assert.equal(progress.at(-1), r.bytes);
      await rejectsWith(f.registry.download(alice, 'model', 'sentiment', '1.0.0', out), InvalidInputError);
    });

    it('gates promotion: unsigned refused, signed and clean promoted, prod needs a distinct second approver', async () => {
      const v2 = makeModel(work, { seed: 5 });
      await f.registry.registerModelVersion(alice, { model: 'sentiment', version: '2.0.0', dir: v2 });
      await rejectsWith(
        f.registry.promote(alice, 'sentiment', '2.0.0', 'staging'),
        GateError,
        'gate_signature',
      );
      assert.equal((await f.registry.servable('sentiment', '2.0.0')).servable, false);

      const staged = await f.registry.promote(alice, 'sentiment', '1.0.0', 'staging');
      assert.deepEqual(staged, { status: 'promoted', stage: 'staging', version: '1.0.0' });
      assert.deepEqual(await f.registry.servable('sentiment', '1.0.0'), {
        servable: true,
        reasons: [],
        digest: (await f.registry.getModelVersion(alice, 'sentiment', '1.0.0')).version.digest,
        stages: ['staging'],
      });

      const pending = await f.registry.promote(alice, 'sentiment', '1.0.0', 'prod');
      assert.ok(pending.status === 'pending_approval');
      assert.equal((await f.registry.servable('sentiment', '1.0.0', 'prod')).servable, false);
      // Asking again returns the same pending request.
      const again = await f.registry.promote(alice, 'sentiment', '1.0.0', 'prod');
      assert.ok(again.status === 'pending_approval' && again.approvalId === pending.approvalId);
      await rejectsWith(f.registry.approve(alice, pending.approvalId), SelfApprovalError);
      assert.equal((await f.registry.servable('sentiment', '1.0.0', 'prod')).servable, false);
      const approved = await f.registry.approve(bob, pending.approvalId);
      assert.deepEqual(approved, { status: 'promoted', stage: 'prod', version: '1.0.0' });
      assert.equal((await f.registry.servable('sentiment', '1.0.0', 'prod')).servable, true);
      await rejectsWith(f.registry.approve(bob, pending.approvalId), ConflictError);
      const approvals = await f.registry.approvals(alice, 'sentiment');
      assert.deepEqual(
        approvals.map((a) => [a.status, a.requestedBy, a.approvedBy]),
        [['approved', 'user:alice', 'user:bob']],
      );
      const { stages } = await f.registry.getModel(alice, 'sentiment');
      assert.deepEqual(stages.map((s) => [s.stage, s.version]).sort(), [
        ['prod', '1.0.0'],
        ['staging', '1.0.0'],
      ]);
    });

    it('supersedes an older pending prod request: approving it cannot move prod back', async () => {
      for (const [version, seed] of [
        ['1', 41],
        ['2', 42],
      ] as const) {
        const dir = makeModel(work, { seed });
        await f.registry.registerModelVersion(alice, { model: 'ranker', version, dir });
        await f.registry.sign(alice, 'ranker', version);
      }
      const older = await f.registry.promote(alice, 'ranker', '1', 'prod');
      const newer = await f.registry.promote(alice, 'ranker', '2', 'prod');
      assert.ok(older.status === 'pending_approval' && newer.status === 'pending_approval');
      await f.registry.approve(bob, newer.approvalId);
      await rejectsWith(f.registry.approve(bob, older.approvalId), ConflictError);
      const { stages } = await f.registry.getModel(alice, 'ranker');
      assert.deepEqual(
        stages.map((s) => [s.stage, s.version]),
        [['prod', '2']],
      );
      assert.deepEqual(
        (await f.registry.approvals(alice, 'ranker')).map((a) => [a.version, a.status]),
        [
          ['1', 'superseded'],
          ['2', 'approved'],
        ],
      );
      // Another model's pending request is not touched.
      await f.registry.registerModelVersion(alice, {
        model: 'ranker-b',
        version: '1',
        dir: makeModel(work, { seed: 43 }),
      });
      await f.registry.sign(alice, 'ranker-b', '1');
      await f.registry.promote(alice, 'ranker-b', '1', 'prod');
      await f.registry.registerModelVersion(alice, {
        model: 'ranker',
        version: '3',
        dir: makeModel(work, { seed: 44 }),
      });
      await f.registry.sign(alice, 'ranker', '3');
      await f.registry.promote(alice, 'ranker', '3', 'prod');
      assert.deepEqual(
        (await f.registry.approvals(alice, 'ranker-b')).map((a) => a.status),
        ['pending'],
      );
    });

    it('refuses a malicious version until an audited waiver accepts it', async () => {
      const dir = makeModel(work, { malicious: true });
      const v = await f.registry.registerModelVersion(alice, { model: 'risky', version: '0.1', dir });
      assert.equal(v.scan.verdict, 'malicious');
      const scans = await f.registry.scanResults(alice, 'risky', '0.1');
      assert.ok(
        scans.find((s) => s.path === 'extra.pkl')?.findings.some((x) => x.rule === 'pickle.dangerous-global'),
      );
      await f.registry.sign(alice, 'risky', '0.1');
      await rejectsWith(f.registry.promote(alice, 'risky', '0.1', 'dev'), GateError, 'gate_scan');
      const waiver = await f.registry.waive(bob, 'risky', '0.1', {
        reason: 'red-team fixture, isolated endpoint',
      });
      assert.equal(waiver.coversVerdict, 'malicious');
      const waiveEvent = f.audit.events.find((e) => e.action === 'registry.model.waive');
      assert.equal(waiveEvent?.principal.id, 'user:bob');
      assert.equal(waiveEvent.details?.['waiverId'], waiver.id);
      assert.equal((await f.registry.promote(alice, 'risky', '0.1', 'dev')).status, 'promoted');
      assert.equal((await f.registry.servable('risky', '0.1')).servable, true);
      // A clean version has nothing to waive.
      await rejectsWith(f.registry.waive(bob, 'sentiment', '1.0.0', { reason: 'x' }), InvalidInputError);
    });

    it('quarantine takes effect at once and moves the epoch; release restores', async () => {
      const before = await f.registry.quarantineEpoch();
      await f.registry.quarantine(bob, 'sentiment', '1.0.0', 'incident 42');
      assert.deepEqual((await f.registry.servable('sentiment', '1.0.0')).reasons, ['quarantined']);
      const epoch = await f.registry.quarantineEpoch();
      assert.ok(epoch > before);
      const changes = await f.registry.changesSince(before);
      assert.deepEqual(
        changes.map((c) => [c.kind, c.model, c.version]),
        [['quarantine', 'sentiment', '1.0.0']],
      );
      await rejectsWith(f.registry.promote(alice, 'sentiment', '1.0.0', 'dev'), GateError, 'gate_quarantine');
      await rejectsWith(
        f.registry.download(alice, 'model', 'sentiment', '1.0.0', path.join(work, 'q')),
        GateError,
        'gate_quarantine',
      );
      await f.registry.release(bob, 'sentiment', '1.0.0');
      assert.equal((await f.registry.servable('sentiment', '1.0.0')).servable, true);
      // Whole-model quarantine covers every version.
      await f.registry.quarantine(bob, 'sentiment', undefined, 'model-wide');
      assert.equal((await f.registry.servable('sentiment', '1.0.0', 'prod')).servable, false);
      await f.registry.release(bob, 'sentiment', undefined);
      assert.equal((await f.registry.servable('sentiment', '1.0.0', 'prod')).servable, true);
      assert.deepEqual((await f.registry.servable('nope', '1')).reasons, ['not_found']);
    });

    it('records datasets and lineage; finds every version trained on a dataset; ancestry', async () => {
      const data = makeDataset(work, 500, 7);
      const d = await f.registry.registerDataset(alice, {
        dataset: 'reviews',
        version: '2024-01',
        dir: data,
        metadata: { sensitivity: 'confidential', owner: 'team-nlp', description: 'product reviews' },
      });
      assert.equal(d.sensitivity, 'confidential');
      await rejectsWith(f.registry.verifyDataset(alice, 'reviews', '2024-01'), VerificationError);
      await f.registry.signDataset(alice, 'reviews', '2024-01');
      const checked = await f.registry.verifyDataset(alice, 'reviews', '2024-01', { deep: true });
      assert.equal(checked.filesChecked, 2);
      const external = 'e'.repeat(64);
      const child = await f.registry.registerModelVersion(alice, {
        model: 'sentiment',
        version: '3.0.0',
        dir: makeModel(work, { seed: 11 }),
        lineage: {
          datasets: [
            { name: 'reviews', version: '2024-01' },
            { digest: `sha256:${external}`, name: 'public-crawl' },
          ],
          parent: { version: '1.0.0' },
          codeCommit: 'b'.repeat(40),
        },
      });
      assert.deepEqual(
        child.lineage.datasets.map((x) => [x.digest, x.name, x.version]).sort(),
        [
          [d.digest, 'reviews', '2024-01'],
          [external, 'public-crawl', null],
        ].sort(),
      );
      const trained = await f.registry.versionsTrainedOn(alice, { digest: d.digest });
      assert.deepEqual(
        trained.map((v) => `${v.model}@${v.version}`),
        ['sentiment@3.0.0'],
      );
      assert.deepEqual(
        (await f.registry.versionsTrainedOn(alice, { dataset: 'reviews', version: '2024-01' })).map(
          (v) => v.version,
        ),
        ['3.0.0'],
      );
      assert.equal((await f.registry.versionsTrainedOn(alice, { digest: external })).length, 1);
      assert.equal((await f.registry.versionsTrainedOn(alice, { digest: 'f'.repeat(64) })).length, 0);
      const grandchild = await f.registry.registerModelVersion(alice, {
        model: 'sentiment-distilled',
        version: '1',
        dir: makeModel(work, { seed: 13 }),
        lineage: { parent: { model: 'sentiment', version: '3.0.0' } },
      });
      const ancestry = await f.registry.ancestry(alice, grandchild.model, grandchild.version);
      assert.deepEqual(
        ancestry.ancestors.map((a) => `${a.model}@${a.version}`),
        ['sentiment@3.0.0', 'sentiment@1.0.0'],
      );
      const mid = await f.registry.ancestry(alice, 'sentiment', '3.0.0');
      assert.deepEqual(
        mid.children.map((c) => `${c.model}@${c.version}`),
        ['sentiment-distilled@1'],
      );
      await rejectsWith(
        f.registry.registerModelVersion(alice, {
          model: 'x',
          version: '1',
          dir: makeModel(work),
          lineage: { datasets: [{ name: 'reviews', version: 'missing' }] },
        }),
        NotFoundError,
      );
    });

    it('emits a CycloneDX 1.6 ML-BOM that validates strictly', async () => {
      const bom = await f.registry.bom(alice, 'sentiment', '3.0.0');
      const validator = new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6);
      assert.equal(await validator.validate(JSON.stringify(bom)), null);
      const metadata = bom['metadata'] as { component: Record<string, unknown> };
      assert.equal(metadata.component['type'], 'machine-learning-model');
      const card = metadata.component['modelCard'] as { modelParameters: { datasets: { ref: string }[] } };
      assert.equal(card.modelParameters.datasets.length, 2);
      const components = bom['components'] as {
        type: string;
        hashes?: { content: string }[];
        data?: unknown[];
      }[];
      const data = components.filter((c) => c.type === 'data');
      assert.equal(data.length, 2);
      assert.ok(data.every((c) => c.hashes?.[0]?.content.length === 64 && Array.isArray(c.data)));
      assert.equal(components.filter((c) => c.type === 'file').length, 3);
      const pedigree = metadata.component['pedigree'] as { ancestors: { version: string }[] };
      assert.equal(pedigree.ancestors[0]?.version, '1.0.0');
    });

    it('detects a tampered stored blob (verify, download, rescan) and a blob moved under another path', async () => {
      const dir = makeModel(work, { seed: 17 });
      await f.registry.registerModelVersion(alice, { model: 'victim', version: '1', dir });
      await f.registry.sign(alice, 'victim', '1');
      const { files } = await f.registry.getModelVersion(alice, 'victim', '1');
      const weights = files.find((x) => x.path === 'weights.pkl')!;
      const blob = f.blobs.pathOf(weights.blobId);
      const handle = await open(blob, 'r+');
      const byte = Buffer.alloc(1);
      const at = 200_000;
      await handle.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0x01;
      await handle.write(byte, 0, 1, at);
      await handle.close();
      // The signature still matches the records (it covers digests, not blobs); deep verification reads the bytes.
      await f.registry.verify(alice, 'victim', '1');
      await rejectsWith(f.registry.verify(alice, 'victim', '1', { deep: true }), IntegrityError);
      const out = path.join(work, 'download-tampered');
      await rejectsWith(f.registry.download(alice, 'model', 'victim', '1', out), IntegrityError);
      // The failed download takes back what it created (the directory, files verified before weights.pkl) ...
      assert.equal(existsSync(out), false);
      // ... but never a directory that was there before it started.
      mkdirSync(out);
      await rejectsWith(f.registry.download(alice, 'model', 'victim', '1', out), IntegrityError);
      assert.deepEqual(readdirSync(out), []);
      await rejectsWith(f.registry.scan(alice, 'victim', '1'), IntegrityError);

      // Swap two intact blobs between paths: the envelope context binds the path, so both fail to open.
      const other = await f.registry.registerModelVersion(alice, {
        model: 'victim',
        version: '2',
        dir: makeModel(work, { seed: 19 }),
      });
      const otherFiles = await f.repository.files('model', other.id);
      const cfg = otherFiles.find((x) => x.path === 'config.json')!;
      const vocab = otherFiles.find((x) => x.path === 'tokenizer/vocab.txt')!;
      const a = await readFile(f.blobs.pathOf(cfg.blobId));
      const b = await readFile(f.blobs.pathOf(vocab.blobId));
      writeFileSync(f.blobs.pathOf(cfg.blobId), b);
      writeFileSync(f.blobs.pathOf(vocab.blobId), a);
      await f.registry.sign(alice, 'victim', '2');
      await rejectsWith(f.registry.verify(alice, 'victim', '2', { deep: true }), IntegrityError);
    });

    it('rescans versions scanned with older rules; outdated scans block promotion until then', async () => {
      const flagged = new Set(['config.json']);
      const upgraded: RegistryScanner = {
        rulesVersion: 'test-rules-2',
        scanFile: (file) => scanFile(file).then((r) => ({ ...r, rulesVersion: 'test-rules-2' })),
        scanSource: async (source, name) => {
          const bytes = await source.read(0, source.size);
          assert.equal(bytes.length, source.size);
          return {
            verdict: flagged.has(name) ? 'suspicious' : 'clean',
            findings: flagged.has(name)
              ? [{ severity: 'medium', rule: 'test.new-rule', message: 'flagged by the new rules', path: '' }]
              : [],
            rulesVersion: 'test-rules-2',
            format: 'unknown',
          };
        },
      };
      const newer = f.reopen({ scanner: upgraded });
      await rejectsWith(newer.promote(alice, 'sentiment', '1.0.0', 'dev'), GateError, 'gate_scan');
      const result = await newer.rescanOutdated(bob);
      assert.ok(
        result.rescanned.some(
          (r) => r.name === 'sentiment' && r.version === '1.0.0' && r.verdict === 'suspicious',
        ),
      );
      assert.ok(result.rescanned.some((r) => r.kind === 'dataset' && r.name === 'reviews'));
      // The tampered version cannot be rescanned: reported, not fatal.
      assert.deepEqual(
        result.failed.map((x) => [x.name, x.version, x.code]),
        [
          ['victim', '1', 'integrity_failure'],
          ['victim', '2', 'integrity_failure'],
        ],
      );
      const v = await newer.getModelVersion(alice, 'sentiment', '1.0.0');
      assert.equal(v.version.scan.rulesVersion, 'test-rules-2');
      assert.equal(v.version.scan.verdict, 'suspicious');
      assert.equal((await newer.servable('sentiment', '1.0.0')).reasons.includes('scan_not_clean'), true);
      assert.equal((await newer.rescanOutdated(bob)).rescanned.length, 0);
    });

    it('binds a waiver to the rules version of the scan it accepted: a rescan under newer rules needs a new one', async () => {
      const dir = makeModel(work, { malicious: true });
      await f.registry.registerModelVersion(alice, { model: 'waived-risk', version: '1', dir });
      await f.registry.sign(alice, 'waived-risk', '1');
      const waiver = await f.registry.waive(bob, 'waived-risk', '1', { reason: 'red-team fixture' });
      assert.equal(waiver.rulesVersion, RULES_VERSION);
      assert.equal((await f.registry.promote(alice, 'waived-risk', '1', 'dev')).status, 'promoted');
      // The new rules find something more in the weights, and the verdict stays malicious: a verdict-only
      // waiver would cover it although nobody has looked at the new finding.
      const newer = f.reopen({
        scanner: {
          rulesVersion: 'test-rules-3',
          scanFile: (file) => scanFile(file).then((r) => ({ ...r, rulesVersion: 'test-rules-3' })),
          scanSource: async (source, name) => {
            const r = await scanSource(source, name);
            return name !== 'weights.pkl'
              ? { ...r, rulesVersion: 'test-rules-3' }
              : {
                  ...r,
                  verdict: 'malicious',
                  findings: [
                    ...r.findings,
                    { severity: 'critical', rule: 'test.new-rule', message: 'a backdoor', path: '' },
                  ],
                  rulesVersion: 'test-rules-3',
                };
          },
        },
      });
      // Upgrading the scanner alone takes nothing offline: the waived scan is still the version's scan.
      assert.equal((await newer.servable('waived-risk', '1')).servable, true);
      const summary = await newer.scan(alice, 'waived-risk', '1');
      assert.deepEqual([summary.verdict, summary.rulesVersion], ['malicious', 'test-rules-3']);
      await rejectsWith(newer.promote(alice, 'waived-risk', '1', 'staging'), GateError, 'gate_scan');
      assert.deepEqual((await newer.servable('waived-risk', '1')).reasons, ['scan_not_clean']);
      // A waiver of the new scan accepts it again.
      assert.equal(
        (await newer.waive(bob, 'waived-risk', '1', { reason: 'new finding reviewed' })).rulesVersion,
        'test-rules-3',
      );
      assert.equal((await newer.promote(alice, 'waived-risk', '1', 'staging')).status, 'promoted');
      assert.equal((await newer.servable('waived-risk', '1')).servable, true);
    });

    it('stages uploads file by file, then finalizes; refuses traversal and oversized files', async () => {
      const limited = f.reopen({ limits: { maxFileBytes: 1024, maxFiles: 3 } });
      const target = { kind: 'model' as const, name: 'uploaded', version: '1' };
      await limited.stageFile(alice, target, 'config.json', chunks('{"a":', '1}'));
      await limited.stageFile(alice, target, 'sub/dir/notes.txt', chunks('hello'));
      for (const bad of ['../escape', '/abs', 'a/../../b', 'a//b', 'a\\b', '.git/config', 'x.partial', '']) {
        await rejectsWith(limited.stageFile(alice, target, bad, chunks('x')), InvalidInputError);
      }
      await rejectsWith(
        limited.stageFile(alice, target, 'big.bin', chunks(Buffer.alloc(1025))),
        TooLargeError,
      );
      await limited.stageFile(alice, target, 'third.txt', chunks('3'));
      await rejectsWith(limited.stageFile(alice, target, 'fourth.txt', chunks('4')), TooLargeError);
      const v = await limited.finalizeModelVersion(alice, { model: 'uploaded', version: '1' });
      assert.equal(v.fileCount, 3);
      const { files } = await limited.getModelVersion(alice, 'uploaded', '1');
      assert.deepEqual(
        files.map((x) => x.path),
        ['config.json', 'sub/dir/notes.txt', 'third.txt'],
      );
      const opened = await limited.openFile(alice, 'model', 'uploaded', '1', 'sub/dir/notes.txt');
      const parts: Buffer[] = [];
      for await (const c of opened.content) parts.push(c);
      assert.equal(Buffer.concat(parts).toString(), 'hello');
      await rejectsWith(
        limited.finalizeModelVersion(alice, { model: 'uploaded', version: '2' }),
        NotFoundError,
      );
      await rejectsWith(limited.stageFile(alice, target, 'late.txt', chunks('x')), ConflictError);
    });

    it("stages each uploader apart: another principal's file never joins the version, and aborting is per uploader", async () => {
      const target = { kind: 'model' as const, name: 'shared-upload', version: '1' };
      await f.registry.stageFile(alice, target, 'weights.bin', chunks('alice'));
      // Bob may register models too, and stages under the same name@version before Alice finalizes.
      await f.registry.stageFile(bob, target, 'backdoor.py', chunks('import os'));
      await f.registry.stageFile(bob, target, 'weights.bin', chunks('bob'));
      await f.registry.finalizeModelVersion(alice, { model: 'shared-upload', version: '1' });
      const { files } = await f.registry.getModelVersion(alice, 'shared-upload', '1');
      assert.deepEqual(
        files.map((x) => x.path),
        ['weights.bin'],
      );
      const opened = await f.registry.openFile(alice, 'model', 'shared-upload', '1', 'weights.bin');
      const parts: Buffer[] = [];
      for await (const c of opened.content) parts.push(c);
      assert.equal(Buffer.concat(parts).toString(), 'alice');
      // Bob's staging is his: he can only abort it (the version now exists).
      await rejectsWith(
        f.registry.finalizeModelVersion(bob, { model: 'shared-upload', version: '1' }),
        ConflictError,
      );
      await f.registry.abortUpload(bob, 'model', 'shared-upload', '1');
      await rejectsWith(
        f.registry.finalizeModelVersion(bob, { model: 'shared-upload', version: '1' }),
        NotFoundError,
      );
    });

    it('rejects malformed names and versions, denies and audits unauthorised callers, fails closed on audit loss', async () => {
      const dir = makeModel(work);
      for (const model of ['', 'UPPER', '-lead', 'a/b', '../x', 'a'.repeat(129), 'sp ace']) {
        await rejectsWith(
          f.registry.registerModelVersion(alice, { model, version: '1', dir }),
          InvalidInputError,
        );
      }
      for (const version of ['', '.1', 'a/b', 'v 1', 'x'.repeat(65)]) {
        await rejectsWith(
          f.registry.registerModelVersion(alice, { model: 'ok', version, dir }),
          InvalidInputError,
        );
      }
      await rejectsWith(f.registry.promote(alice, 'sentiment', '1.0.0', 'production'), InvalidInputError);
      await rejectsWith(
        f.registry.registerModelVersion(alice, {
          model: 'ok',
          version: '1',
          dir: path.join(work, 'missing'),
        }),
        InvalidInputError,
      );
      await rejectsWith(
        f.registry.registerModelVersion(alice, {
          model: 'ok',
          version: '1',
          dir,
          lineage: { codeCommit: 'xyz' },
        }),
        InvalidInputError,
      );
      await rejectsWith(
        f.registry.registerModelVersion(alice, {
          model: 'ok',
          version: '1',
          dir,
          lineage: { parameters: { lr: Number.NaN } },
        }),
        InvalidInputError,
      );
      const tooSmall = f.reopen({ limits: { maxFileBytes: 100 } });
      await rejectsWith(
        tooSmall.registerModelVersion(alice, { model: 'ok', version: '1', dir }),
        TooLargeError,
      );
      assert.equal(await f.repository.getModelVersion('ok', '1'), undefined);

      await rejectsWith(
        f.registry.quarantine(mallory, 'sentiment', undefined, 'nope'),
        RegistryForbiddenError,
      );
      const denied = f.audit.events.at(-1);
      assert.deepEqual(
        [denied?.action, denied?.outcome, denied?.principal.id],
        ['registry.model.quarantine', 'denied', 'user:mallory'],
      );
      assert.ok(!(await f.registry.servable('sentiment', '1.0.0')).reasons.includes('quarantined'));
      const call = f.authz.calls.find((c) => c.action === 'model.promote');
      assert.equal(call?.resource.type, 'ModelVersion');
      assert.equal(call.resource.model, 'sentiment');

      f.audit.failing = true;
      try {
        await rejectsWith(f.registry.listModels(alice), AuditFailedError);
      } finally {
        f.audit.failing = false;
      }
    });
  });
}
