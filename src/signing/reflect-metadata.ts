/**
 * @peculiar/x509 pulls in tsyringe, which refuses to load unless a Reflect metadata API is installed globally
 * (normally by the `reflect-metadata` package, which is not a dependency here). tsyringe and tslib only call
 * defineMetadata, getOwnMetadata and getMetadata, to read constructor parameter types that nothing in this process
 * records; this minimal implementation of those three satisfies them. It stands aside when a full polyfill is
 * already installed. Import it before @peculiar/x509.
 */

interface MetadataApi {
  defineMetadata(key: unknown, value: unknown, target: object, property?: PropertyKey): void;
  getOwnMetadata(key: unknown, target: object, property?: PropertyKey): unknown;
  getMetadata(key: unknown, target: object, property?: PropertyKey): unknown;
}

const reflect = Reflect as unknown as Partial<MetadataApi>;

if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<PropertyKey | undefined, Map<unknown, unknown>>>();
  const api: MetadataApi = {
    defineMetadata(key, value, target, property) {
      let byProperty = store.get(target);
      if (byProperty === undefined)
        store.set(target, (byProperty = new Map<PropertyKey | undefined, Map<unknown, unknown>>()));
      let values = byProperty.get(property);
      if (values === undefined) byProperty.set(property, (values = new Map<unknown, unknown>()));
      values.set(key, value);
    },
    getOwnMetadata(key, target, property) {
      return store.get(target)?.get(property)?.get(key);
    },
    getMetadata(key, target, property) {
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        const values = store.get(t)?.get(property);
        if (values?.has(key) === true) return values.get(key);
      }
      return undefined;
    },
  };
  Object.assign(Reflect, api);
}
