import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { scanBuffer } from '../../src/scanner/index.ts';
import { check, makeSamples, ruleIds } from './helpers.ts';

let dir = '';
let cleanup = (): void => undefined;
before(() => {
  ({ dir, cleanup } = makeSamples());
});
after(() => {
  cleanup();
});

describe('zip', () => {
  it('scans an entry whose encrypted bit is set but whose data is plain', async () => {
    await check(dir, 'zip/encrypted.zip', {
      verdict: 'malicious',
      rules: ['zip.encrypted', 'pickle.dangerous-global'],
    });
  });
  it('reads data-descriptor (flag bit 3) entries with sizes from the central directory', async () => {
    await check(dir, 'zip/descriptor.zip', { verdict: 'malicious', rules: ['pickle.dangerous-global'] });
    await check(dir, 'zip/descriptor_benign.zip', { verdict: 'clean' });
  });
  it('local header vs central directory: names, sizes, flags', async () => {
    await check(dir, 'zip/name_mismatch.zip', { verdict: 'malicious', rules: ['zip.header-mismatch'] });
    await check(dir, 'zip/size_mismatch.zip', { verdict: 'suspicious', rules: ['zip.header-mismatch'] });
    await check(dir, 'zip/flag_mismatch.zip', { verdict: 'suspicious', rules: ['zip.header-mismatch'] });
  });
  it('finds local entries missing from the central directory and scans them', async () => {
    const r = await check(dir, 'zip/gap_hidden.zip', {
      verdict: 'malicious',
      rules: ['zip.header-mismatch'],
    });
    assert.ok(r.findings.some((f) => f.path === 'evil.pkl' && f.rule === 'pickle.dangerous-global'));
  });
  it('path traversal: .., absolute, drive letters, backslashes', async () => {
    const r = await check(dir, 'zip/traversal.zip', {
      verdict: 'malicious',
      rules: ['archive.path-traversal', 'archive.unusual-path'],
    });
    assert.equal(r.findings.filter((f) => f.rule === 'archive.path-traversal').length, 4);
  });
  it('duplicate names, symlinks, overlapping entries', async () => {
    await check(dir, 'zip/duplicate.zip', { verdict: 'malicious', rules: ['archive.duplicate-entry'] });
    await check(dir, 'zip/symlink.zip', {
      verdict: 'malicious',
      rules: ['archive.link', 'archive.path-traversal'],
    });
    await check(dir, 'zip/overlap.zip', { verdict: 'suspicious', rules: ['zip.overlapping-entries'] });
  });
  it('zip bomb: ratio, and the inflation cap', async () => {
    await check(dir, 'zip/bomb.zip', { verdict: 'suspicious', rules: ['archive.bomb'] });
    await check(
      dir,
      'zip/bomb.zip',
      { verdict: 'suspicious', rules: ['archive.decompression-limit'] },
      { limits: { maxInflatedEntry: 1 << 20 } },
    );
  });
  it('inflation that exceeds its declared size is cut off by maxOutputLength', async () => {
    // Hand-made entry declaring 10 bytes that inflates to 8 MB: caught by the cap, never materialised.
    const data = deflateRawSync(Buffer.alloc(8 << 20));
    const name = Buffer.from('x.bin');
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(10, 22);
    local.writeUInt16LE(name.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(8, 10);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(10, 24);
    cd.writeUInt16LE(name.length, 28);
    const cdAt = 30 + name.length + data.length;
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(1, 8);
    eocd.writeUInt16LE(1, 10);
    eocd.writeUInt32LE(46 + name.length, 12);
    eocd.writeUInt32LE(cdAt, 16);
    const zip = Buffer.concat([local, name, data, cd, name, eocd]);
    const r = await scanBuffer(zip, 'x.zip', { limits: { maxInflatedEntry: 1 << 20 } });
    assert.ok(ruleIds(r).includes('archive.decompression-limit'), JSON.stringify(r.findings));
  });
  it('nested archives are followed, up to the depth cap', async () => {
    const r = await check(dir, 'zip/nested.zip', { verdict: 'malicious' });
    assert.ok(r.findings.some((f) => f.path === 'level3.zip!level2.zip!level1.zip!level0.zip!evil.pkl'));
    await check(
      dir,
      'zip/nested.zip',
      { verdict: 'suspicious', rules: ['archive.depth-limit'] },
      { limits: { maxDepth: 2 } },
    );
  });
  it('pickles under innocent names inside archives', async () => {
    await check(dir, 'zip/hidden_pickle.zip', { verdict: 'malicious', rules: ['archive.hidden-pickle'] });
  });
  it('prepended data and pickle/zip polyglots are scanned both ways', async () => {
    await check(dir, 'zip/prepended.zip', { verdict: 'malicious', rules: ['zip.prepended-data'] });
    const r = await check(dir, 'zip/polyglot.pkl', { verdict: 'malicious', rules: ['format.polyglot'] });
    assert.ok(r.findings.some((f) => f.path === 'evil.pkl' && f.rule === 'pickle.dangerous-global'));
  });
});

describe('tar', () => {
  it('path traversal', async () => {
    await check(dir, 'tar/traversal.tar', { verdict: 'malicious', rules: ['archive.path-traversal'] });
  });
  it('symlinks, hard links and FIFOs', async () => {
    const r = await check(dir, 'tar/links.tar', {
      verdict: 'malicious',
      rules: ['archive.link', 'archive.special-file', 'archive.path-traversal'],
    });
    assert.equal(r.findings.filter((f) => f.rule === 'archive.link').length, 2);
  });
  it('members are scanned, GNU long names included, and .tar.gz is inflated', async () => {
    await check(dir, 'tar/hidden.tar', {
      verdict: 'malicious',
      rules: ['archive.hidden-pickle', 'pickle.dangerous-global'],
    });
    const long = await check(dir, 'tar/long_name.tar', { verdict: 'malicious' });
    assert.ok(long.findings.some((f) => f.path.endsWith('/evil.pkl') && f.path.length > 100));
    const gz = await check(dir, 'tar/model.tar.gz', { verdict: 'malicious', format: 'gzip' });
    assert.ok(gz.findings.some((f) => f.path === '<gzip>!model.pkl'));
  });
});
