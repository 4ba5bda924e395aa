import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatSseEvent, SseError, SseParser } from '../../src/gateway/index.ts';

function parseAll(chunks: readonly string[], options?: { maxEventChars?: number }) {
  const parser = new SseParser(options);
  return chunks.flatMap((c) => parser.push(c));
}

/** Splits text at the given cut points (sorted, deduplicated, within bounds). */
function split(text: string, cuts: readonly number[]): string[] {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let last = 0;
  for (const p of points) {
    out.push(text.slice(last, p));
    last = p;
  }
  out.push(text.slice(last));
  return out;
}

describe('SSE parser', () => {
  it('follows the event-stream rules: fields, comments, multi-line data, ids, retry, BOM', () => {
    const events = parseAll([
      '\uFEFF: comment\nevent: delta\nid: 7\nretry: 1500\ndata: a\ndata:b\ndata\n\n',
      'data: second\n\n',
      'id: bad\0id\nevent:\ndata:  spaced\nunknown: x\n\n',
      'data: no blank line at the end',
    ]);
    assert.deepEqual(events, [
      { event: 'delta', data: 'a\nb\n', id: '7', retry: 1500 },
      { event: 'message', data: 'second', id: '7' },
      { event: 'message', data: ' spaced', id: '7' },
    ]);
  });

  it('accepts CRLF, CR and LF line breaks, also when CRLF is split across chunks', () => {
    assert.deepEqual(
      parseAll(['data: x\r', '\ndata: y\r\n\r', '\n']).map((e) => e.data),
      ['x\ny'],
    );
    assert.deepEqual(
      parseAll(['data: x\r\rdata: y\n\n']).map((e) => e.data),
      ['x', 'y'],
    );
    assert.deepEqual(
      parseAll(['data: x\r', '\r']).map((e) => e.data),
      ['x'],
    );
  });

  it('ignores events without data and bounds the buffered event size', () => {
    assert.deepEqual(parseAll(['event: ping\n\n', ': keep-alive\n\n']), []);
    assert.throws(() => parseAll(['data: ' + 'x'.repeat(100)], { maxEventChars: 50 }), SseError);
    assert.throws(() => parseAll(['data: aaaa\n'.repeat(20)], { maxEventChars: 50 }), SseError);
  });

  it('formatSseEvent cannot be used to inject fields or end an event early', () => {
    const wire = formatSseEvent('a\r\nevent: evil\n\ndata: b\rc');
    assert.deepEqual(parseAll([wire]), [{ event: 'message', data: 'a\nevent: evil\n\ndata: b\nc', id: '' }]);
    assert.throws(() => formatSseEvent('x', { event: 'a\nb' }), TypeError);
    assert.throws(() => formatSseEvent('x', { id: 'a\rb' }), TypeError);
  });

  it('property: formatted events parse back identically under any chunking', () => {
    const data = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/\r/g, ''));
    fc.assert(
      fc.property(
        fc.array(fc.record({ data, event: fc.constantFrom(undefined, 'delta', 'x y') }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (events, cuts) => {
          const wire = events
            .map((e) => formatSseEvent(e.data, e.event === undefined ? {} : { event: e.event }))
            .join('');
          const parsed = parseAll(split(wire, cuts));
          assert.deepEqual(
            parsed.map((e) => ({ data: e.data, event: e.event })),
            events.map((e) => ({ data: e.data, event: e.event ?? 'message' })),
          );
        },
      ),
    );
  });

  it('property: chunking never changes the result, and arbitrary input never throws below the bound', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 10 }), (text, cuts) => {
        assert.deepEqual(parseAll(split(text, cuts)), parseAll([text]));
      }),
    );
  });
});
