/**
 * A FIFO async mutex. A PKCS#11 session runs one operation at a time (`C_EncryptInit` then `C_Encrypt` is one
 * operation spread over two calls), and the `*Async` calls run on libuv's thread pool, so every use of a session
 * goes through `run`: callers queue in arrival order and never interleave across an `await`.
 */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
