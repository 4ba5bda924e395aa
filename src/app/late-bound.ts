import { KmsSealedError } from '../kms/index.ts';

/**
 * A stand-in for a service that can only open once the KMS is unsealed (it needs keys to start), so that its
 * routes can be registered at start-up: every property access is forwarded to the real instance, and answers
 * 503 `sealed` while there is none. `fixed` supplies values needed before that (e.g. a body limit read at route
 * registration).
 */
export function lateBound<T extends object>(current: () => T | undefined, fixed: Partial<T> = {}): T {
  return new Proxy({} as T, {
    get: (_target, property) => {
      if (Object.hasOwn(fixed, property)) return (fixed as Record<PropertyKey, unknown>)[property];
      const service = current();
      if (service === undefined) throw new KmsSealedError();
      const value: unknown = Reflect.get(service, property, service);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(service) : value;
    },
  });
}
