export { KmsClient } from './client.ts';
export type { CiphertextInput, KmsClientOptions } from './client.ts';
export { KmsClientError } from './errors.ts';
export { buildImportBlob } from './byok.ts';
export type * from './types.ts';
export { remoteDataKeyApi, remoteEnvelopeKeys } from './envelope-keys.ts';
export { WardenHttp } from './http.ts';
export type { RequestOptions, WardenHttpOptions } from './http.ts';
