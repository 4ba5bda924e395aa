/**
 * The request log's destination. Pino writes each line with its own `write`, and a write to a file or pipe (stderr
 * is synchronous there) is a system call on the event loop: under load that was about half of the logging cost
 * (~2.4 % of the KMS server's time at 64 connections). Lines are gathered here and handed to the target in one
 * write per event-loop turn, so no line waits longer than the turn that produced it; what an abrupt exit can lose
 * is that one turn's lines, never a request's audit event (the audit log is the record).
 */
export class TurnBatchedLog {
  readonly #target: NodeJS.WritableStream;
  #lines: string[] = [];
  #scheduled = false;

  constructor(target: NodeJS.WritableStream) {
    this.#target = target;
  }

  write(line: string): boolean {
    this.#lines.push(line);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.flush();
      });
    }
    return true;
  }

  /** Hands every gathered line to the target now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const text = this.#lines.join('');
    this.#lines = [];
    this.#target.write(text);
  }
}
