import { KEY_TYPES } from '../../kms/index.ts';
import type { KeyType } from '../../kms/index.ts';
import { emptyBodyAsObject, kmsRoute, principalOf, versionNumber } from '../context.ts';
import type { RouteModule } from '../context.ts';
import {
  daysSchema,
  errorResponses,
  keyInfoView,
  keyView,
  nameParams,
  nameVersionParams,
  object,
  versionNumberSchema,
  versionView,
} from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/** Key administration: `/v1/kms/keys[/:name[/...]]`. */

export interface CreateKeyBody {
  name: string;
  type: KeyType;
  rotationPeriodDays?: number;
  autoFloorGraceDays?: number | null;
  exportable?: boolean;
  description?: string;
}

export interface UpdateKeyBody {
  rotationPeriodDays?: number;
  minDecryptionVersion?: number;
  autoFloorGraceDays?: number | null;
  description?: string;
}

export const keyOptionSchemas: Record<string, JsonSchema> = {
  rotationPeriodDays: daysSchema('days between automatic rotations; 0 disables them (default 90)'),
  autoFloorGraceDays: {
    type: ['number', 'null'],
    exclusiveMinimum: 0,
    maximum: 36500,
    description: 'raise the decryption floor automatically this many days after a version is superseded',
  },
  exportable: {
    type: 'boolean',
    description: 'whether the key material may ever be exported (default false)',
  },
  description: { type: 'string', maxLength: 1024 },
};

const keyResponse = (status: string, description: string) => ({
  [status]: { description, $ref: 'KeyInfo#' },
  ...errorResponses,
});
const versionResponse = {
  200: { type: 'object', required: ['version'], properties: { version: { $ref: 'KeyVersion#' } } },
  ...errorResponses,
};
const versionsResponse = {
  200: {
    type: 'object',
    required: ['versions'],
    properties: { versions: { type: 'array', items: { $ref: 'KeyVersion#' } } },
  },
  ...errorResponses,
};
const optionalVersionBody = object({
  version: { ...versionNumberSchema, description: 'one version; omitted: every version' },
});

export const keyRoutes: RouteModule = (app, { kms }) => {
  app.post<{ Body: CreateKeyBody }>(
    '/v1/kms/keys',
    {
      config: kmsRoute('keys.create'),
      schema: {
        tags: ['keys'],
        summary: 'Create a key (version 1)',
        body: object(
          {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,127}$' },
            type: { type: 'string', enum: [...KEY_TYPES] },
            ...keyOptionSchemas,
          },
          ['name', 'type'],
        ),
        response: keyResponse('201', 'the new key'),
      },
    },
    async (request, reply) => {
      const info = await kms.createKey(principalOf(request), request.body);
      return reply.code(201).send(keyInfoView(info));
    },
  );

  app.get(
    '/v1/kms/keys',
    {
      config: kmsRoute('keys.list'),
      schema: {
        tags: ['keys'],
        summary: 'List keys',
        response: {
          200: {
            type: 'object',
            required: ['keys'],
            properties: { keys: { type: 'array', items: { $ref: 'Key#' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (request) => ({ keys: (await kms.listKeys(principalOf(request))).map(keyView) }),
  );

  app.get<{ Params: { name: string } }>(
    '/v1/kms/keys/:name',
    {
      config: kmsRoute('keys.read'),
      schema: {
        tags: ['keys'],
        summary: 'Show a key and its versions',
        params: nameParams,
        response: keyResponse('200', 'the key and its versions'),
      },
    },
    async (request) => keyInfoView(await kms.getKey(principalOf(request), request.params.name)),
  );

  app.patch<{ Params: { name: string }; Body: UpdateKeyBody }>(
    '/v1/kms/keys/:name',
    {
      config: kmsRoute('keys.update'),
      schema: {
        tags: ['keys'],
        summary: 'Change rotation period, decryption floor, automatic floor or description',
        params: nameParams,
        body: {
          ...object({
            rotationPeriodDays: keyOptionSchemas.rotationPeriodDays ?? {},
            minDecryptionVersion: {
              ...versionNumberSchema,
              description: 'versions below this no longer decrypt',
            },
            autoFloorGraceDays: keyOptionSchemas.autoFloorGraceDays ?? {},
            description: keyOptionSchemas.description ?? {},
          }),
          minProperties: 1,
        },
        response: {
          200: { type: 'object', required: ['key'], properties: { key: { $ref: 'Key#' } } },
          ...errorResponses,
        },
      },
    },
    async (request) => ({
      key: keyView(await kms.updateKey(principalOf(request), request.params.name, request.body)),
    }),
  );

  app.post<{ Params: { name: string } }>(
    '/v1/kms/keys/:name/rotate',
    {
      config: kmsRoute('keys.rotate'),
      schema: {
        tags: ['keys'],
        summary: 'Add a new latest version',
        params: nameParams,
        response: versionResponse,
      },
    },
    async (request) => ({
      version: versionView(await kms.rotateKey(principalOf(request), request.params.name)),
    }),
  );

  for (const action of ['disable', 'enable'] as const) {
    app.post<{ Params: { name: string }; Body: { version?: number } }>(
      `/v1/kms/keys/:name/${action}`,
      {
        config: kmsRoute(action === 'disable' ? 'keys.disable' : 'keys.enable'),
        preValidation: emptyBodyAsObject,
        schema: {
          tags: ['keys'],
          summary:
            action === 'disable'
              ? 'Disable one version, or every enabled version'
              : 'Re-enable one version, or every disabled version',
          params: nameParams,
          body: optionalVersionBody,
          response: versionsResponse,
        },
      },
      async (request) => {
        const { name } = request.params;
        const principal = principalOf(request);
        const changed =
          action === 'disable'
            ? await kms.disable(principal, name, request.body.version)
            : await kms.enable(principal, name, request.body.version);
        return { versions: changed.map(versionView) };
      },
    );
  }

  app.post<{ Params: { name: string; version: string }; Body: { delayDays?: number } }>(
    '/v1/kms/keys/:name/versions/:version/destroy',
    {
      config: kmsRoute('keys.destroy'),
      preValidation: emptyBodyAsObject,
      schema: {
        tags: ['keys'],
        summary: 'Schedule a version for destruction (crypto-shredding); delayDays 0 destroys it now',
        params: nameVersionParams,
        body: object({ delayDays: daysSchema('days until destruction, cancellable until then (default 7)') }),
        response: versionResponse,
      },
    },
    async (request) => {
      const { name, version } = request.params;
      const destroyed = await kms.scheduleDestruction(
        principalOf(request),
        name,
        Number(version),
        request.body.delayDays,
      );
      return { version: versionView(destroyed) };
    },
  );

  app.post<{ Params: { name: string; version: string } }>(
    '/v1/kms/keys/:name/versions/:version/cancel-destroy',
    {
      config: kmsRoute('keys.destroy'),
      schema: {
        tags: ['keys'],
        summary: 'Cancel a scheduled destruction (the version stays disabled)',
        params: nameVersionParams,
        response: versionResponse,
      },
    },
    async (request) => {
      const { name, version } = request.params;
      return {
        version: versionView(await kms.cancelDestruction(principalOf(request), name, Number(version))),
      };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { version?: string } }>(
    '/v1/kms/keys/:name/public-key',
    {
      config: kmsRoute('keys.read'),
      schema: {
        tags: ['keys'],
        summary: 'Public key (SPKI PEM) of a signing key version',
        params: nameParams,
        querystring: object({
          version: { type: 'string', pattern: '^[1-9][0-9]{0,9}$', description: 'default: latest' },
        }),
        response: {
          200: object({ pem: { type: 'string' }, keyVersion: { type: 'integer' } }, ['pem', 'keyVersion']),
          ...errorResponses,
        },
      },
    },
    async (request) =>
      kms.publicKey(principalOf(request), request.params.name, versionNumber(request.query.version)),
  );
};
