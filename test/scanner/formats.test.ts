import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { detectFormat, scanBuffer } from '../../src/scanner/index.ts';
import { check, makeSamples } from './helpers.ts';

let dir = '';
let cleanup = (): void => undefined;
before(() => {
  ({ dir, cleanup } = makeSamples());
});
after(() => {
  cleanup();
});

describe('content type detection', () => {
  it('recognises each format from its bytes alone', () => {
    const cases: [string, string][] = [
      ['pickle/os_system_p0.pkl', 'pickle'],
      ['pickle/os_system_p1.pkl', 'pickle'],
      ['pickle/os_system_p4.pkl', 'pickle'],
      ['torch/legacy_benign.pt', 'pytorch-legacy'],
      ['torch/benign.pt', 'zip'],
      ['numpy/plain.npy', 'npy'],
      ['joblib/benign.joblib', 'joblib'],
      ['joblib/compressed.joblib', 'zlib'],
      ['joblib/gzip.pkl.gz', 'gzip'],
      ['st/valid.safetensors', 'safetensors'],
      ['onnx/benign.onnx', 'onnx'],
      ['gguf/benign.gguf', 'gguf'],
      ['keras/legacy.h5', 'hdf5'],
      ['tar/traversal.tar', 'tar'],
    ];
    for (const [rel, format] of cases) {
      const bytes = readFileSync(path.join(dir, rel));
      assert.equal(detectFormat(bytes.subarray(0, 65536), bytes.length), format, rel);
    }
    assert.equal(detectFormat(Buffer.from('just some text\n'), 15), 'unknown');
    assert.equal(detectFormat(Buffer.from('{"json": true}'), 14), 'unknown');
  });

  it('refines zips into PyTorch, NumPy npz and Keras archives', async () => {
    await check(dir, 'torch/benign.pt', { verdict: 'clean', format: 'pytorch-zip' });
    await check(dir, 'keras/benign.keras', { verdict: 'clean', format: 'keras' });
    await check(dir, 'numpy/archive.npz', { verdict: 'malicious', format: 'npz' });
  });
});

describe('PyTorch', () => {
  it('zip: benign state_dict is clean; a payload in data.pkl is found', async () => {
    await check(dir, 'torch/benign.pt', { verdict: 'clean' });
    const r = await check(dir, 'torch/malicious.pt', {
      verdict: 'malicious',
      rules: ['pickle.dangerous-global'],
    });
    assert.ok(r.findings.some((f) => f.path === 'archive/data.pkl'));
  });

  it('zip: a pickle hidden under another name is scanned and flagged', async () => {
    await check(dir, 'torch/hidden_pickle.pt', { verdict: 'malicious', rules: ['archive.hidden-pickle'] });
  });

  it('zip: storages are checked against data.pkl persistent ids', async () => {
    await check(dir, 'torch/missing_storage.pt', {
      verdict: 'suspicious',
      rules: ['torch.missing-storage', 'torch.unreferenced-entry'],
    });
  });

  it('legacy: all five pickles are walked, raw storages after them are not', async () => {
    await check(dir, 'torch/legacy_benign.pt', {
      verdict: 'clean',
      rules: ['torch.legacy-format'],
      absent: ['pickle.trailing-data'],
    });
    await check(dir, 'torch/legacy_malicious.pt', {
      verdict: 'malicious',
      rules: ['pickle.dangerous-global'],
    });
    await check(dir, 'torch/legacy_p4.pt', {
      verdict: 'clean',
      format: 'pytorch-legacy',
      absent: ['pickle.trailing-data'],
    });
  });
});

describe('NumPy', () => {
  it('plain, v2 and structured arrays are clean', async () => {
    for (const f of ['plain.npy', 'plain_v2.npy', 'structured.npy'])
      await check(dir, `numpy/${f}`, { verdict: 'clean' });
  });
  it('object dtype: the embedded pickle is scanned', async () => {
    await check(dir, 'numpy/object.npy', {
      verdict: 'malicious',
      rules: ['npy.object-dtype', 'pickle.dangerous-global'],
    });
  });
  it('a header that is not a strict literal dict is malformed', async () => {
    await check(dir, 'numpy/bad_header.npy', { verdict: 'suspicious', rules: ['npy.malformed'] });
  });
  it('npz: each array is scanned', async () => {
    const r = await check(dir, 'numpy/archive.npz', { verdict: 'malicious' });
    assert.ok(r.findings.some((f) => f.path === 'b.npy' && f.rule === 'pickle.dangerous-global'));
  });
});

describe('joblib', () => {
  it('skips raw array bytes exactly as joblib reads them (with and without alignment padding)', async () => {
    await check(dir, 'joblib/benign.joblib', { verdict: 'clean', format: 'joblib' });
    await check(dir, 'joblib/benign_p2.joblib', { verdict: 'clean', format: 'joblib' });
  });
  it('finds payloads in object arrays and after arrays', async () => {
    await check(dir, 'joblib/malicious_object.joblib', {
      verdict: 'malicious',
      rules: ['pickle.dangerous-global'],
    });
    await check(dir, 'joblib/malicious_after.joblib', {
      verdict: 'malicious',
      rules: ['pickle.dangerous-global'],
    });
  });
  it('inflates zlib and gzip compressed dumps', async () => {
    await check(dir, 'joblib/compressed.joblib', {
      verdict: 'malicious',
      rules: ['pickle.dangerous-global'],
    });
    await check(dir, 'joblib/gzip.pkl.gz', { verdict: 'malicious', rules: ['pickle.dangerous-global'] });
  });
});

describe('Keras', () => {
  it('benign Sequential is clean', async () => {
    await check(dir, 'keras/benign.keras', { verdict: 'clean' });
  });
  it('Lambda layers are flagged; dangerous bytecode names make them malicious', async () => {
    await check(dir, 'keras/lambda.keras', {
      verdict: 'malicious',
      rules: ['keras.lambda-layer', 'keras.lambda-dangerous-code'],
    });
    await check(dir, 'keras/lambda_harmless.keras', {
      verdict: 'suspicious',
      rules: ['keras.lambda-layer'],
      absent: ['keras.lambda-dangerous-code'],
    });
    await check(dir, 'keras/legacy.h5', {
      verdict: 'malicious',
      rules: ['keras.lambda-layer', 'keras.lambda-dangerous-code'],
    });
  });
  it('custom objects and foreign modules', async () => {
    await check(dir, 'keras/custom.keras', {
      verdict: 'suspicious',
      rules: ['keras.custom-object', 'keras.external-module'],
    });
    await check(dir, 'keras/dangerous.keras', { verdict: 'malicious', rules: ['keras.dangerous-module'] });
  });
});

describe('ONNX', () => {
  it('external data inside the model directory is only noted', async () => {
    await check(dir, 'onnx/benign.onnx', { verdict: 'clean', rules: ['onnx.external-data'] });
  });
  it('external data escaping the directory is critical', async () => {
    for (const f of ['traversal.onnx', 'absolute.onnx', 'windows.onnx']) {
      await check(dir, `onnx/${f}`, { verdict: 'malicious', rules: ['onnx.external-data-traversal'] });
    }
  });
  it('custom op domains are noted; truncation is malformed', async () => {
    await check(dir, 'onnx/custom_domain.onnx', { verdict: 'clean', rules: ['onnx.custom-domain'] });
    await check(dir, 'onnx/truncated.onnx', { verdict: 'suspicious', rules: ['onnx.malformed'] });
  });
});

describe('GGUF', () => {
  it('benign header is clean', async () => {
    await check(dir, 'gguf/benign.gguf', { verdict: 'clean' });
  });
  it('chat template injection', async () => {
    await check(dir, 'gguf/ssti.gguf', { verdict: 'malicious', rules: ['gguf.template-injection'] });
  });
  it('header bounds', async () => {
    for (const f of ['huge_count.gguf', 'bad_version.gguf', 'string_overflow.gguf', 'tensor_past_end.gguf']) {
      await check(dir, `gguf/${f}`, { verdict: 'suspicious', rules: ['gguf.malformed'] });
    }
  });
});

describe('unknown content', () => {
  it('is clean with an info finding', async () => {
    const r = await scanBuffer(Buffer.from('hello world, not a model'));
    assert.equal(r.verdict, 'clean');
    assert.deepEqual(
      r.findings.map((f) => f.rule),
      ['format.unknown'],
    );
  });
});
