import { KEY_TYPES } from '../../kms/index.ts';
import { emptyBodyAsObject, fromBase64, kmsRoute, principalOf, toBase64 } from '../context.ts';
import type { RouteModule } from '../context.ts';
import { base64, errorResponses, keyInfoView, nameParams, object, versionNumberSchema } from '../schemas.ts';
import type { CreateKeyBody } from './keys.ts';
import { keyOptionSchemas } from './keys.ts';

/** Bring your own key (import under an RSA-OAEP wrapping key) and export of exportable keys. */

/** The largest import blob: 512 bytes of RSA-OAEP plus an AES-KWP-wrapped PKCS#8 key. */
const MAX_IMPORT_BLOB_BYTES = 16 * 1024;

export const IMPORT_ALGORITHM =
  'RSA-OAEP-SHA256(AES-256 ephemeral key) || AES-KWP(ephemeral key, key material)';

export const importExportRoutes: RouteModule = (app, { kms }) => {
  app.get(
    '/v1/kms/import-wrapping-key',
    {
      config: kmsRoute('keys.import-wrapping-key'),
      schema: {
        tags: ['keys'],
        summary: 'The RSA-4096 public key that import blobs are wrapped for',
        response: {
          200: object({ pem: { type: 'string' }, algorithm: { type: 'string' } }, ['pem', 'algorithm']),
          ...errorResponses,
        },
      },
    },
    async (request) => ({
      pem: await kms.importWrappingKey(principalOf(request)),
      algorithm: IMPORT_ALGORITHM,
    }),
  );

  app.post<{ Params: { name: string }; Body: Omit<CreateKeyBody, 'name'> & { blob: string } }>(
    '/v1/kms/keys/:name/import',
    {
      config: kmsRoute('keys.import'),
      schema: {
        tags: ['keys'],
        summary: 'Import key material: creates the key, or adds a version to an existing key of that type',
        description:
          'blob = RSA-OAEP-SHA256 of a fresh AES-256 key under the import wrapping key (512 bytes), followed by ' +
          'AES-KWP (RFC 5649) of the key material under that AES key. Material: 32 raw bytes for aes256-gcm and ' +
          'hmac-sha256; PKCS#8 DER (or a raw 32-byte seed for ed25519) for signing keys. The key options apply ' +
          'only when the import creates the key: into an existing key they are refused (400 invalid_request).',
        params: nameParams,
        body: object(
          {
            type: { type: 'string', enum: [...KEY_TYPES] },
            blob: base64(MAX_IMPORT_BLOB_BYTES, 'the wrapped key material'),
            ...keyOptionSchemas,
          },
          ['type', 'blob'],
        ),
        response: { 200: { $ref: 'KeyInfo#' }, ...errorResponses },
      },
    },
    async (request) => {
      const { blob, ...options } = request.body;
      const info = await kms.importKey(principalOf(request), {
        ...options,
        name: request.params.name,
        blob: fromBase64(blob),
      });
      return keyInfoView(info);
    },
  );

  app.post<{ Params: { name: string }; Body: { version?: number } }>(
    '/v1/kms/keys/:name/export',
    {
      config: kmsRoute('keys.export'),
      preValidation: emptyBodyAsObject,
      schema: {
        tags: ['keys'],
        summary: 'Export the key material of a key created exportable',
        params: nameParams,
        body: object({ version: { ...versionNumberSchema, description: 'default: latest' } }),
        response: {
          200: object(
            {
              version: { type: 'integer' },
              material: {
                type: 'string',
                description: 'raw bytes (symmetric) or PKCS#8 DER (signing keys), base64',
              },
            },
            ['version', 'material'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const exported = await kms.exportKey(principalOf(request), request.params.name, request.body.version);
      try {
        return { version: exported.version, material: toBase64(exported.material) };
      } finally {
        exported.material.fill(0);
      }
    },
  );
};
