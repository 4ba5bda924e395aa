// TurnBatchedLog: the request log's lines reach their target in order, in one write per event-loop turn, and
// never later than the turn after the one that produced them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TurnBatchedLog } from '../../src/server/request-log.ts';

function target(): { stream: NodeJS.WritableStream; writes: string[] } {
  const writes: string[] = [];
  const stream = {
    write: (chunk: string) => {
      writes.push(chunk);
      return true;
    },
  } as unknown as NodeJS.WritableStream;
  return { stream, writes };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('TurnBatchedLog', () => {
  it('writes the lines of one turn in one write, in order, at the next turn', async () => {
    const { stream, writes } = target();
    const log = new TurnBatchedLog(stream);
    log.write('a\n');
    log.write('b\n');
    log.write('c\n');
    assert.deepEqual(writes, []);
    await turn();
    assert.deepEqual(writes, ['a\nb\nc\n']);
  });

  it('writes each turn separately and nothing for a turn without lines', async () => {
    const { stream, writes } = target();
    const log = new TurnBatchedLog(stream);
    log.write('1\n');
    await turn();
    await turn();
    log.write('2\n');
    await turn();
    assert.deepEqual(writes, ['1\n', '2\n']);
  });

  it('flush() writes at once, and the scheduled turn then has nothing left', async () => {
    const { stream, writes } = target();
    const log = new TurnBatchedLog(stream);
    log.write('x\n');
    log.flush();
    assert.deepEqual(writes, ['x\n']);
    await turn();
    assert.deepEqual(writes, ['x\n']);
    log.flush();
    assert.deepEqual(writes, ['x\n']);
  });
});
