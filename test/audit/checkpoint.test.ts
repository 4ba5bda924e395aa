import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { InvalidInputError, InvalidKeyError } from '../../src/crypto/errors.ts';
import {
  MAX_NOTE_SIGNATURES,
  NoteFormatError,
  NoteVerificationError,
  ed25519NoteKeyId,
  ed25519NoteVerifier,
  emptyRoot,
  formatCheckpoint,
  formatVerifierKey,
  isValidKeyName,
  localEd25519NoteSigner,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  MemoryMerkleTree,
  type Checkpoint,
  type NoteFormatFailure,
  type NoteSigner,
  type NoteVerificationFailure,
} from '../../src/audit/index.ts';

const DASH = '\u2014';

/** Deterministic Ed25519 key from a one-byte seed pattern (PKCS#8 wrapping of the 32-byte seed). */
function ed25519Key(seedByte: number): KeyObject {
  const der = Buffer.concat([
    Buffer.from('302e020100300506032b657004220420', 'hex'),
    Buffer.alloc(32, seedByte),
  ]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

const logName = 'audit.warden.example/log1';
const logSigner = localEd25519NoteSigner(ed25519Key(1), logName);
const witnessSigner = localEd25519NoteSigner(ed25519Key(2), 'witness.example/w1');
const logVerifier = parseVerifierKey(logSigner.verifierKey);
const witnessVerifier = parseVerifierKey(witnessSigner.verifierKey);

function failure(run: () => unknown): NoteFormatFailure | NoteVerificationFailure | 'ok' {
  try {
    run();
    return 'ok';
  } catch (e) {
    if (e instanceof NoteFormatError || e instanceof NoteVerificationError) return e.reason;
    throw e;
  }
}

function sampleCheckpoint(size = 5, extensions: string[] = []): Checkpoint {
  const t = new MemoryMerkleTree();
  for (let i = 0; i < size; i++) t.appendLeaf(Buffer.from(`entry ${i}`));
  return { origin: logName, treeSize: size, rootHash: t.root(), extensions };
}

// Examples from the C2SP specifications (signed-note.md "Example", tlog-checkpoint.md).
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE = `This is an example message.\n\n${DASH} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n`;
const SPEC_CHECKPOINT = `example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n${DASH} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n`;

describe('C2SP specification examples', () => {
  it('parses the signed-note example vkey and verifies the example note', () => {
    const v = parseVerifierKey(SPEC_VKEY);
    assert.equal(v.keyName, 'example.com/foo');
    assert.equal(v.keyId, 0x530d903a);
    assert.equal(formatVerifierKey(v.keyName, v.publicKey), SPEC_VKEY);
    const opened = openNote(SPEC_NOTE, [v]);
    assert.equal(opened.text, 'This is an example message.\n');
    assert.deepEqual(
      opened.verified.map((s) => [s.keyName, s.keyId, s.signature.length]),
      [['example.com/foo', 0x530d903a, 64]],
    );
    assert.equal(openNote(new TextEncoder().encode(SPEC_NOTE), [v]).text, opened.text);
    assert.equal(
      failure(() => openNote(SPEC_NOTE.replace('example message', 'example massage'), [v])),
      'invalid_signature',
    );
    assert.equal(
      failure(() => openNote(SPEC_NOTE, [logVerifier])),
      'no_trusted_signature',
    );
  });

  it('parses the tlog-checkpoint example body; its signature is by a key we do not know', () => {
    const body = SPEC_CHECKPOINT.slice(0, SPEC_CHECKPOINT.indexOf('\n\n') + 1);
    const cp = parseCheckpoint(body);
    assert.equal(cp.origin, 'example.com/behind-the-sofa');
    assert.equal(cp.treeSize, 20852163);
    assert.equal(Buffer.from(cp.rootHash).toString('base64'), 'CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    assert.deepEqual(cp.extensions, []);
    assert.equal(formatCheckpoint(cp), body);
    assert.equal(
      failure(() => openCheckpoint(SPEC_CHECKPOINT, [parseVerifierKey(SPEC_VKEY)], cp.origin)),
      'no_trusted_signature',
    );
  });
});

describe('keys', () => {
  it('key ID is SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian', () => {
    const want = createHash('sha256')
      .update(Buffer.concat([Buffer.from(logName), Buffer.of(0x0a, 0x01), logSigner.publicKey]))
      .digest()
      .readUInt32BE(0);
    assert.equal(logSigner.keyId, want);
    assert.equal(ed25519NoteKeyId(logName, logSigner.publicKey), want);
    assert.equal(logVerifier.keyId, want);
    assert.equal(logSigner.verifierKey, formatVerifierKey(logName, logSigner.publicKey));
    assert.match(logSigner.verifierKey, /^audit\.warden\.example\/log1\+[0-9a-f]{8}\+A[A-Za-z0-9+/]{43}$/);
    assert.equal(ed25519NoteVerifier(logName, logSigner.publicKey).keyId, want);
  });

  it('key names: non-empty, no Unicode space, no plus, no control character', () => {
    for (const ok of ['a', 'example.com/log', 'é/ü', 'x—y']) assert.ok(isValidKeyName(ok), ok);
    for (const bad of [
      '',
      'a b',
      'a+b',
      'a\tb',
      'a\u00a0b',
      'a\u3000b',
      'a\u2028b',
      'a\u0085b',
      'a\u0000b',
      'a\ud800',
    ]) {
      assert.ok(!isValidKeyName(bad), JSON.stringify(bad));
    }
  });

  it('vkey parsing is strict', () => {
    const [name, id, material] = SPEC_VKEY.split('+') as [string, string, string];
    const type2 = Buffer.concat([Buffer.of(0x02), Buffer.from(material, 'base64').subarray(1)]).toString(
      'base64',
    );
    const short = Buffer.from(material, 'base64').subarray(0, 32).toString('base64');
    const cases: [string, NoteFormatFailure][] = [
      ['', 'verifier_key'],
      [name, 'verifier_key'],
      [`${name}+${id}`, 'verifier_key'],
      [`${name}+${id.toUpperCase()}+${material}`, 'verifier_key'],
      [`${name}+${id.slice(1)}+${material}`, 'verifier_key'],
      [`${name}+0${id}+${material}`, 'verifier_key'],
      [`+${id}+${material}`, 'key_name'],
      [`a b+${id}+${material}`, 'key_name'],
      [`${name}+${id}+`, 'verifier_key'],
      [`${name}+${id}+${material}=`, 'base64'],
      [`${name}+${id}+${material.slice(0, -1)}`, 'base64'],
      [`${name}+${id}+${material.slice(0, -2)}-_`, 'base64'],
      [`${name}+${id}+${type2}`, 'unsupported_key_type'],
      [`${name}+${id}+${short}`, 'public_key'],
      [`${name}x+${id}+${material}`, 'key_id'],
      [`${name}+530d903b+${material}`, 'key_id'],
    ];
    for (const [vkey, reason] of cases)
      assert.equal(
        failure(() => parseVerifierKey(vkey)),
        reason,
        vkey,
      );
  });

  it('the local signer only takes Ed25519 private keys', () => {
    const { privateKey: ec } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { publicKey } = generateKeyPairSync('ed25519');
    assert.throws(() => localEd25519NoteSigner(ec, 'a'), InvalidKeyError);
    assert.throws(() => localEd25519NoteSigner(publicKey, 'a'), InvalidKeyError);
    assert.throws(() => localEd25519NoteSigner(ed25519Key(3), 'a b'), NoteFormatError);
  });
});

describe('signed notes and checkpoints: round trips', () => {
  it('sign and open a checkpoint, with extension lines', async () => {
    for (const cp of [sampleCheckpoint(0), sampleCheckpoint(1), sampleCheckpoint(37, ['ext one', 'x'])]) {
      const note = await signCheckpoint(cp, logSigner);
      const body = formatCheckpoint(cp);
      assert.ok(note.startsWith(`${body}\n${DASH} ${logName} `));
      assert.ok(note.endsWith('\n'));
      const opened = openCheckpoint(note, [logVerifier], logName);
      assert.equal(opened.checkpoint.origin, cp.origin);
      assert.equal(opened.checkpoint.treeSize, cp.treeSize);
      assert.equal(Buffer.compare(opened.checkpoint.rootHash, cp.rootHash), 0);
      assert.deepEqual(opened.checkpoint.extensions, cp.extensions);
      assert.deepEqual(
        opened.verified.map((s) => s.keyName),
        [logName],
      );
      assert.equal(
        failure(() => openCheckpoint(note, [logVerifier], 'audit.warden.example/log2')),
        'origin_mismatch',
      );
    }
    assert.equal(
      formatCheckpoint(sampleCheckpoint(0)).split('\n')[2],
      Buffer.from(emptyRoot()).toString('base64'),
    );
  });

  it('several signers; unknown signatures are ignored but reported; repeats are dropped', async () => {
    const text = 'multi\n\nline text with a blank line\n';
    const note = await signNote(text, [logSigner, witnessSigner]);
    const both = openNote(note, [logVerifier, witnessVerifier]);
    assert.equal(both.text, text);
    assert.deepEqual(
      both.verified.map((s) => s.keyName),
      [logName, 'witness.example/w1'],
    );
    assert.deepEqual(both.unknown, []);
    const logOnly = openNote(note, [logVerifier]);
    assert.deepEqual(
      logOnly.verified.map((s) => s.keyName),
      [logName],
    );
    assert.deepEqual(
      logOnly.unknown.map((s) => [s.keyName, s.keyId]),
      [['witness.example/w1', witnessSigner.keyId]],
    );
    const lines = note.slice(text.length + 1);
    const doubled = `${note}${lines}`;
    const again = openNote(doubled, [logVerifier]);
    assert.equal(again.verified.length, 1);
    assert.equal(again.unknown.length, 1);
  });

  it('signatures from keys sharing only the name or only the key ID are ignored', async () => {
    const sameName = localEd25519NoteSigner(ed25519Key(9), logName); // same name, other key (other ID)
    const sameId: NoteSigner = {
      keyName: 'someone.else/log',
      keyId: logSigner.keyId,
      sign: (m) => logSigner.sign(m),
    };
    const note = await signNote('hello\n', [sameName, sameId]);
    assert.equal(
      failure(() => openNote(note, [logVerifier])),
      'no_trusted_signature',
    );
    const withLog = await signNote('hello\n', [sameName, sameId, logSigner]);
    assert.deepEqual(openNote(withLog, [logVerifier]).unknown.length, 2);
  });

  it('an invalid signature by a known key rejects the whole note, even beside a valid one', async () => {
    const forger: NoteSigner = {
      keyName: logName,
      keyId: logSigner.keyId,
      sign: () => Promise.resolve(new Uint8Array(64)),
    };
    const bad = await signNote('x\n', [forger]);
    assert.equal(
      failure(() => openNote(bad, [logVerifier])),
      'invalid_signature',
    );
    const good = await signNote('x\n', [logSigner]);
    const mixed = good + bad.slice('x\n\n'.length);
    assert.equal(
      failure(() => openNote(mixed, [logVerifier])),
      'invalid_signature',
    );
    const wrongLength: NoteSigner = { ...forger, sign: () => Promise.resolve(new Uint8Array(3)) };
    assert.equal(
      failure(() => openNote(signNoteSyncish(wrongLength), [logVerifier])),
      'invalid_signature',
    );
  });

  it('accepts up to MAX_NOTE_SIGNATURES signatures and rejects more', async () => {
    const note = await signNote('many\n', logSigner);
    const line = note.slice('many\n\n'.length);
    const unknownLine = `${DASH} other.example/k AAAAAAE=\n`;
    const at = (n: number): string => `${note}${unknownLine.repeat(n - 1)}`;
    assert.equal(openNote(at(MAX_NOTE_SIGNATURES), [logVerifier]).verified.length, 1);
    assert.equal(
      failure(() => openNote(at(MAX_NOTE_SIGNATURES + 1), [logVerifier])),
      'too_many_signatures',
    );
    assert.equal(
      failure(() => openNote(`many\n\n${line.repeat(MAX_NOTE_SIGNATURES + 1)}`, [logVerifier])),
      'too_many_signatures',
    );
  });

  it('signNote refuses bad text, signers and signatures', async () => {
    await assert.rejects(signNote('no newline', logSigner), NoteFormatError);
    await assert.rejects(signNote('tab\there\n', logSigner), NoteFormatError);
    await assert.rejects(signNote('cr\r\n', logSigner), NoteFormatError);
    await assert.rejects(signNote('\ud800\n', logSigner), NoteFormatError);
    await assert.rejects(signNote('x\n', []), InvalidInputError);
    await assert.rejects(signNote('x\n', [logSigner, logSigner]), InvalidInputError);
    await assert.rejects(signNote('x\n', { ...logSigner, keyName: 'a+b' }), NoteFormatError);
    await assert.rejects(signNote('x\n', { ...logSigner, keyId: 2 ** 32 }), InvalidInputError);
    await assert.rejects(
      signNote('x\n', { keyName: 'a', keyId: 1, sign: () => Promise.resolve(new Uint8Array(0)) }),
      InvalidInputError,
    );
    assert.throws(() => openNote('x\n\n', [logVerifier, logVerifier]), InvalidInputError);
  });

  it('formatCheckpoint refuses what it must never emit', () => {
    const cp = sampleCheckpoint(3);
    const cases: [Checkpoint, NoteFormatFailure][] = [
      [{ ...cp, origin: '' }, 'origin'],
      [{ ...cp, origin: 'has space' }, 'origin'],
      [{ ...cp, origin: 'a\nb' }, 'origin'],
      [{ ...cp, treeSize: -1 }, 'tree_size'],
      [{ ...cp, treeSize: 1.5 }, 'tree_size'],
      [{ ...cp, treeSize: 2 ** 53 }, 'tree_size'],
      [{ ...cp, rootHash: new Uint8Array(31) }, 'root_hash'],
      [{ ...cp, treeSize: 0 }, 'root_hash'],
      [{ ...cp, extensions: [''] }, 'extension_line'],
      [{ ...cp, extensions: ['a\nb'] }, 'extension_line'],
    ];
    for (const [bad, reason] of cases)
      assert.equal(
        failure(() => formatCheckpoint(bad)),
        reason,
        JSON.stringify(bad.origin),
      );
  });
});

/** A note whose single signature line is by `signer`, built synchronously for table-driven tests. */
function signNoteSyncish(signer: NoteSigner): string {
  return `x\n\n${DASH} ${signer.keyName} ${Buffer.concat([u32(signer.keyId), Buffer.alloc(3)]).toString('base64')}\n`;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

describe('malformed notes and checkpoints: each documented rejection', () => {
  const text = 'hello\n';
  const sigB64 = Buffer.concat([u32(logSigner.keyId), Buffer.alloc(64)]).toString('base64');
  const line = `${DASH} ${logName} ${sigB64}`;

  it('notes', () => {
    const cases: [string | Uint8Array, NoteFormatFailure | NoteVerificationFailure][] = [
      ['\ud800\n\n' + line + '\n', 'encoding'],
      [Uint8Array.of(0x68, 0xff, 0x0a, 0x0a), 'encoding'],
      [`hel\rlo\n\n${line}\n`, 'control_character'],
      [`hello\n\n${line}\r\n`, 'control_character'],
      [`he\u0000llo\n\n${line}\n`, 'control_character'],
      [`hello\n${line}\n`, 'no_signatures'],
      ['hello\n\n', 'no_signatures'],
      [`hello\n\n${line}\n\n`, 'no_signatures'],
      ['', 'no_signatures'],
      [`hello\n\n${line}`, 'signature_line'],
      [`hello\n\n- ${logName} ${sigB64}\n`, 'signature_line'],
      [`hello\n\n${DASH}${logName} ${sigB64}\n`, 'signature_line'],
      [`hello\n\n${DASH} ${logName}${sigB64}\n`, 'signature_line'],
      [`hello\n\n${DASH}  ${logName} ${sigB64}\n`, 'key_name'],
      [`hello\n\n${DASH} ${logName}  ${sigB64}\n`, 'base64'],
      [`hello\n\n${DASH} ${logName} ${sigB64} \n`, 'base64'],
      [`hello\n\n${DASH} a+b ${sigB64}\n`, 'key_name'],
      [`hello\n\n${DASH} a\u00a0b ${sigB64}\n`, 'key_name'],
      [`hello\n\n${DASH} ${logName} ${sigB64.replace(/=+$/, '')}\n`, 'base64'],
      [`hello\n\n${DASH} ${logName} AAAA-_AA\n`, 'base64'],
      [`hello\n\n${DASH} ${logName} AAAAAB==\n`, 'base64'], // non-zero padding bits
      [`hello\n\n${DASH} ${logName} AAAAAA==\n`, 'signature_length'],
      [`hello\n\n${line}\nnot a signature\n`, 'signature_line'],
      [`${text}\n${line}\n`, 'invalid_signature'],
      [`${text}\n${DASH} other.example ${sigB64}\n`, 'no_trusted_signature'],
    ];
    for (const [note, reason] of cases)
      assert.equal(
        failure(() => openNote(note, [logVerifier])),
        reason,
        JSON.stringify(note),
      );
  });

  it('checkpoint bodies', () => {
    const root = Buffer.from(sampleCheckpoint(3).rootHash).toString('base64');
    const empty = Buffer.from(emptyRoot()).toString('base64');
    const cases: [string, NoteFormatFailure][] = [
      [`o\n3\n${root}`, 'text'],
      [`o\n3\n`, 'checkpoint_lines'],
      [`o\n`, 'checkpoint_lines'],
      [`\n3\n${root}\n`, 'origin'],
      [`o\n03\n${root}\n`, 'tree_size'],
      [`o\n00\n${empty}\n`, 'tree_size'],
      [`o\n-3\n${root}\n`, 'tree_size'],
      [`o\n+3\n${root}\n`, 'tree_size'],
      [`o\n 3\n${root}\n`, 'tree_size'],
      [`o\n3.0\n${root}\n`, 'tree_size'],
      [`o\n0x3\n${root}\n`, 'tree_size'],
      [`o\n\n${root}\n`, 'tree_size'],
      [`o\n9007199254740992\n${root}\n`, 'tree_size'],
      [`o\n18446744073709551615\n${root}\n`, 'tree_size'],
      [`o\n3\n${root.replace('=', '')}\n`, 'root_hash'],
      [`o\n3\n${'-'.repeat(43)}=\n`, 'root_hash'],
      [`o\n3\n${Buffer.alloc(31).toString('base64')}\n`, 'root_hash'],
      [`o\n3\n${Buffer.alloc(33).toString('base64')}\n`, 'root_hash'],
      [`o\n3\n${root.slice(0, 42)}B=\n`, 'root_hash'], // non-canonical final character
      [`o\n3\n\n`, 'root_hash'],
      [`o\n0\n${root}\n`, 'root_hash'],
      [`o\n3\n${root}\n\n`, 'extension_line'],
      [`o\n3\n${root}\next\n\nmore\n`, 'extension_line'],
      [`o\n3\n${root}\x00\n`, 'control_character'],
      [`o\r\n3\n${root}\n`, 'control_character'],
    ];
    for (const [body, reason] of cases)
      assert.equal(
        failure(() => parseCheckpoint(body)),
        reason,
        JSON.stringify(body),
      );
    // The origin is not assumed to be URL-like: anything non-empty parses, and the caller compares it.
    assert.equal(parseCheckpoint(`any origin + spaces\n0\n${empty}\n`).origin, 'any origin + spaces');
    assert.equal(parseCheckpoint(`o\n9007199254740991\n${root}\nx\n`).treeSize, Number.MAX_SAFE_INTEGER);
  });
});

describe('parser fuzzing (fast-check): only typed errors, and a verified text is always the signed one', () => {
  const isTyped = (e: unknown): boolean => e instanceof NoteFormatError || e instanceof NoteVerificationError;
  const alphabet = fc.constantFrom(
    '\n',
    '\n',
    '\n',
    DASH,
    ' ',
    '+',
    '=',
    '/',
    'a',
    'Z',
    '0',
    '9',
    'A',
    '\r',
    '\t',
    '\u00a0',
    '\ud800',
    'é',
    '\u0000',
  );
  const structured = fc.string({ unit: alphabet, maxLength: 120 });
  const anyText = fc.oneof(
    structured,
    fc.string({ unit: 'binary', maxLength: 120 }),
    fc.string({ maxLength: 60 }),
  );

  it('parseCheckpoint and parseVerifierKey', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        for (const run of [() => parseCheckpoint(s), () => parseVerifierKey(s)]) {
          try {
            run();
          } catch (e) {
            assert.ok(e instanceof NoteFormatError, String(e));
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('openNote on arbitrary text', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        try {
          openNote(s, [logVerifier, witnessVerifier]);
          assert.fail('opened a random note');
        } catch (e) {
          assert.ok(isTyped(e), String(e));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('openNote on mutations of a valid signed checkpoint', async (t) => {
    const cp = sampleCheckpoint(12);
    const note = await signCheckpoint(cp, [logSigner, witnessSigner]);
    const body = formatCheckpoint(cp);
    const mutation = fc.tuple(
      fc.nat({ max: note.length }),
      fc.nat({ max: 4 }),
      fc.oneof(structured, fc.constantFrom(`\n${DASH} x AAAAAAE=\n`, '\n\n', '')),
    );
    let opens = 0;
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (muts) => {
        let s = note;
        for (const [at, del, ins] of muts) s = s.slice(0, at) + ins + s.slice(at + del);
        try {
          const opened = openCheckpoint(s, [logVerifier], logName);
          opens++;
          assert.equal(opened.checkpoint.treeSize, cp.treeSize);
          assert.equal(formatCheckpoint(opened.checkpoint), body);
        } catch (e) {
          assert.ok(isTyped(e), String(e));
        }
      }),
      { numRuns: 500 },
    );
    t.diagnostic(`mutated notes that still opened: ${opens}/500`);
  });
});
