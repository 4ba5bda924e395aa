/**
 * The one import of the Cedar WebAssembly bindings. The package ships `nodejs` (CommonJS, loads the .wasm
 * synchronously from disk), `web` and bundler (`esm`) builds; only the `nodejs` build works under plain Node.js
 * ESM, so every module of the policy engine goes through this file.
 */
export {
  checkParseSchema,
  getCedarVersion,
  policySetTextToParts,
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  validate,
} from '@cedar-policy/cedar-wasm/nodejs';
export type {
  AuthorizationAnswer,
  CedarValueJson,
  DetailedError,
  EntityJson,
  EntityUidJson,
  StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
