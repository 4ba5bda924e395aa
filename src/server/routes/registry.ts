import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ActionId, AuthzResource } from '../../policy/index.ts';
import {
  NAME_PATTERN,
  SENSITIVITIES,
  STAGES,
  TooLargeError,
  VERSION_PATTERN,
  type Registry,
  type Sensitivity,
  type Stage,
} from '../../registry/index.ts';
import { principalOf } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/**
 * The model and dataset registry over HTTP (`/v1/models/...`, `/v1/datasets/...`, `/v1/registry/...`).
 *
 * Uploads are one raw `application/octet-stream` PUT per file (streamed to the staging area, bounded by the
 * registry's `maxFileBytes`), then a finalize POST that hashes, scans, encrypts and records the version. See
 * docs/registry.md.
 */
export interface RegistryRouteDeps {
  readonly registry: Registry;
}

const tags = ['registry'];
const str = (description: string, extra: JsonSchema = {}): JsonSchema => ({
  type: 'string',
  description,
  ...extra,
});
const int = (description: string): JsonSchema => ({ type: 'integer', minimum: 0, description });
const nullable = (schema: JsonSchema): JsonSchema => ({ anyOf: [schema, { type: 'null' }] });
const array = (items: JsonSchema): JsonSchema => ({ type: 'array', items });
/** An object schema whose properties are all required but the `optional` ones. */
const record = (properties: Record<string, JsonSchema>, optional: readonly string[] = []): JsonSchema =>
  object(
    properties,
    Object.keys(properties).filter((k) => !optional.includes(k)),
  );
/** `{ <key>: [items] }`, the shape of every list this API answers. */
const listOf = (key: string, items: JsonSchema): JsonSchema => record({ [key]: array(items) });
const NAME = NAME_PATTERN.source;
const VERSION = VERSION_PATTERN.source;
const DIGEST = '^(sha256:)?[0-9a-f]{64}$';
const UUID = '^[0-9a-f-]{36}$';
const verdictSchema: JsonSchema = { type: 'string', enum: ['clean', 'suspicious', 'malicious', 'error'] };
const stageSchema: JsonSchema = { type: 'string', enum: [...STAGES] };
const sensitivitySchema: JsonSchema = { type: 'string', enum: [...SENSITIVITIES] };
const parameterValue: JsonSchema = { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] };

const modelParams = object({ name: str('model name', { pattern: NAME }) }, ['name']);
const versionParams = object(
  { name: str('model name', { pattern: NAME }), version: str('version label', { pattern: VERSION }) },
  ['name', 'version'],
);
const fileParams = object(
  {
    name: str('name', { pattern: NAME }),
    version: str('version label', { pattern: VERSION }),
    '*': str('file path inside the version', { minLength: 1, maxLength: 4096 }),
  },
  ['name', 'version', '*'],
);
const datasetParams = object({ name: str('dataset name', { pattern: NAME }) }, ['name']);
const datasetVersionParams = object(
  { name: str('dataset name', { pattern: NAME }), version: str('version label', { pattern: VERSION }) },
  ['name', 'version'],
);

const quarantineSchema = nullable(record({ reason: str('why'), by: str('principal'), at: int('epoch ms') }));
const scanSummarySchema = record({
  verdict: nullable(verdictSchema),
  rulesVersion: nullable(str('scanner rules version')),
  scannedAt: nullable(int('epoch ms')),
});
const modelSchema = record({
  id: str('id'),
  name: str('model name'),
  owner: nullable(str('owner')),
  description: nullable(str('description')),
  createdBy: str('principal'),
  createdAt: int('epoch ms'),
  quarantine: quarantineSchema,
});
const lineageDatasetSchema = record({
  digest: str('hex SHA-256 root digest'),
  name: nullable(str('name')),
  version: nullable(str('version')),
  datasetVersionId: nullable(str('id')),
});
const modelVersionSchema = record(
  {
    id: str('id'),
    modelId: str('model id'),
    model: str('model name'),
    version: str('version label'),
    digest: str('OMS root digest (hex SHA-256): the identity'),
    size: int('bytes'),
    fileCount: int('files'),
    format: str('format of the largest file, detected from its bytes'),
    description: nullable(str('description')),
    framework: nullable(str('framework')),
    license: nullable(str('license')),
    lineage: record({
      datasets: array(lineageDatasetSchema),
      codeCommit: nullable(str('commit')),
      codeRepository: nullable(str('repository')),
      parameters: { type: 'object', additionalProperties: parameterValue },
      parent: nullable(record({ model: str('model'), version: str('version'), digest: str('digest') })),
    }),
    createdBy: str('principal'),
    createdAt: int('epoch ms'),
    scan: scanSummarySchema,
    quarantine: quarantineSchema,
  },
  ['description', 'framework', 'license'],
);
const datasetVersionSchema = record(
  {
    id: str('id'),
    datasetId: str('dataset id'),
    dataset: str('dataset name'),
    version: str('version label'),
    digest: str('OMS root digest'),
    size: int('bytes'),
    fileCount: int('files'),
    sensitivity: sensitivitySchema,
    owner: str('owner'),
    description: nullable(str('description')),
    createdBy: str('principal'),
    createdAt: int('epoch ms'),
    scan: scanSummarySchema,
  },
  ['description'],
);
const fileSchema = record({
  path: str('path'),
  sha256: str('hex SHA-256'),
  size: int('bytes'),
  format: str('detected format'),
  blobId: str('blob id'),
});
const signatureSchema = record({
  id: str('id'),
  subjectKind: { type: 'string', enum: ['model', 'dataset'] },
  subjectId: str('subject id'),
  bundle: str('Sigstore bundle v0.3 JSON (OMS v1.0)'),
  signerIdentity: str('kms:<key>#<version> or trusted:<id>'),
  signedBy: str('principal'),
  signedAt: int('epoch ms'),
  verifiedAt: nullable(int('epoch ms')),
  verifiedWith: nullable(str('trusted signer id')),
});
const waiverSchema = record({
  id: str('id'),
  versionId: str('version id'),
  reason: str('reason'),
  coversVerdict: verdictSchema,
  rulesVersion: str('rules version'),
  waivedBy: str('principal'),
  waivedAt: int('epoch ms'),
  expiresAt: nullable(int('epoch ms')),
});
const stageRecordSchema = record({
  stage: stageSchema,
  versionId: str('id'),
  version: str('version'),
  promotedBy: str('principal'),
  promotedAt: int('epoch ms'),
});
const findingSchema = record(
  {
    severity: str('severity'),
    rule: str('rule id'),
    message: str('message'),
    path: str('path in container'),
    offset: int('byte offset'),
  },
  ['offset'],
);
const scanRecordSchema = record({
  path: str('file'),
  verdict: verdictSchema,
  findings: array(findingSchema),
  rulesVersion: str('rules version'),
  format: str('format'),
  scannedAt: int('epoch ms'),
});
const approvalSchema = record({
  id: str('id'),
  versionId: str('version id'),
  model: str('model'),
  version: str('version'),
  stage: stageSchema,
  requestedBy: str('principal'),
  requestedAt: int('epoch ms'),
  status: { type: 'string', enum: ['pending', 'approved', 'superseded'] },
  approvedBy: nullable(str('principal')),
  approvedAt: nullable(int('epoch ms')),
});
const promotionSchema = record(
  {
    status: { type: 'string', enum: ['promoted', 'pending_approval'] },
    stage: stageSchema,
    version: str('version'),
    approvalId: str('approval request id (pending_approval)'),
  },
  ['version', 'approvalId'],
);
const verifySchema = record({
  signatureId: str('id'),
  signerIdentity: str('signer'),
  verifiedWith: str('trusted signer id'),
  verifiedAt: int('epoch ms'),
  filesChecked: int('files re-hashed'),
});
const stagedFileSchema = record({ path: str('path'), size: int('bytes'), sha256: str('hex SHA-256') });
const trainedOnSchema = listOf('versions', modelVersionSchema);
const lineageInputSchema = object({
  datasets: {
    type: 'array',
    maxItems: 256,
    items: {
      anyOf: [
        object({ name: str('dataset', { pattern: NAME }), version: str('version', { pattern: VERSION }) }, [
          'name',
          'version',
        ]),
        object(
          {
            digest: str('dataset root digest', { pattern: DIGEST }),
            name: str('name', { pattern: NAME }),
            version: str('version', { pattern: VERSION }),
          },
          ['digest'],
        ),
      ],
    },
  },
  codeCommit: str('commit', { pattern: '^[0-9a-f]{7,64}$' }),
  codeRepository: str('repository URL or name', { maxLength: 512 }),
  parameters: { type: 'object', maxProperties: 256, additionalProperties: parameterValue },
  parent: object({ model: str('model', { pattern: NAME }), version: str('version', { pattern: VERSION }) }, [
    'version',
  ]),
});
const signBody = object({ bundle: str('Sigstore bundle JSON text', { maxLength: 16 * 1024 * 1024 }) });
const verifyBody = object({ deep: { type: 'boolean' } });
const ok = object({ ok: { type: 'boolean' } }, ['ok']);

function respond(schema: JsonSchema): Record<string, JsonSchema> {
  return { 200: schema, ...errorResponses };
}

type P = { name: string; version: string };
type FileP = P & { '*': string };

/** The external bundle of a sign request, when one is attached. */
const bundleOf = (request: FastifyRequest): string | undefined =>
  (request.body as { bundle?: string } | undefined)?.bundle;
const deepOf = (request: FastifyRequest): { deep: boolean } => ({
  deep: (request.body as { deep?: boolean } | undefined)?.deep === true,
});

export function registryRoutes(app: FastifyInstance, deps: RegistryRouteDeps): void {
  const { registry } = deps;
  const model = (request: FastifyRequest): Promise<AuthzResource> =>
    registry.resourceOf({ model: (request.params as P).name });
  const version = (request: FastifyRequest): Promise<AuthzResource> => {
    const p = request.params as P;
    return registry.resourceOf({ model: p.name, version: p.version });
  };
  const dataset = (request: FastifyRequest): Promise<AuthzResource> => {
    const p = request.params as { name: string; version?: string };
    return registry.resourceOf({
      dataset: p.name,
      ...(p.version === undefined ? {} : { version: p.version }),
    });
  };
  const allModels = (): AuthzResource => ({ type: 'Model', id: '*' });

  /**
   * Declares the routes on one model or dataset version (`<base>/:name/versions/:version<suffix>`), all
   * authorised on that version.
   */
  const versionRoutes =
    (
      base: '/v1/models' | '/v1/datasets',
      params: JsonSchema,
      resource: (r: FastifyRequest) => Promise<AuthzResource>,
    ) =>
    (
      method: 'GET' | 'POST' | 'DELETE',
      suffix: string,
      action: ActionId,
      schema: { summary: string; querystring?: JsonSchema; body?: JsonSchema; response: JsonSchema },
      run: (request: FastifyRequest, p: P, reply: FastifyReply) => Promise<unknown>,
    ): void => {
      const { summary, response, ...request } = schema;
      app.route({
        method,
        url: `${base}/:name/versions/:version${suffix}`,
        config: { action, resource },
        schema: { tags, summary, params, ...request, response: respond(response) },
        handler: (request, reply) => run(request, request.params as P, reply),
      });
    };
  const modelVersionRoute = versionRoutes('/v1/models', versionParams, version);
  const datasetVersionRoute = versionRoutes('/v1/datasets', datasetVersionParams, dataset);

  // ---- models
  app.route({
    method: 'GET',
    url: '/v1/models',
    config: { action: 'model.read', resource: allModels },
    schema: { tags, summary: 'List models', response: respond(listOf('models', modelSchema)) },
    handler: async (request) => ({ models: await registry.listModels(principalOf(request)) }),
  });
  app.route({
    method: 'GET',
    url: '/v1/models/:name',
    config: { action: 'model.read', resource: model },
    schema: {
      tags,
      summary: 'A model with its versions and stage aliases',
      params: modelParams,
      response: respond(
        record({ model: modelSchema, versions: array(modelVersionSchema), stages: array(stageRecordSchema) }),
      ),
    },
    handler: async (request) => registry.getModel(principalOf(request), (request.params as P).name),
  });
  modelVersionRoute(
    'GET',
    '',
    'model.read',
    {
      summary: 'A model version: files, signatures, waivers, stages',
      response: record({
        version: modelVersionSchema,
        files: array(fileSchema),
        signatures: array(signatureSchema),
        waivers: array(waiverSchema),
        stages: array(stageSchema),
      }),
    },
    (request, p) => registry.getModelVersion(principalOf(request), p.name, p.version),
  );

  // ---- uploads: raw bodies, streamed (never buffered) into the staging area
  void app.register((child, _options, done) => {
    child.addContentTypeParser('application/octet-stream', (_request, payload, done) => {
      done(null, payload);
    });
    const tooLarge = (request: FastifyRequest): void => {
      const declared = Number(request.headers['content-length'] ?? '0');
      if (declared > registry.limits.maxFileBytes) {
        throw new TooLargeError(`the file is larger than ${registry.limits.maxFileBytes} bytes`);
      }
    };
    child.route({
      method: 'PUT',
      url: '/v1/models/:name/versions/:version/files/*',
      config: { action: 'model.register', resource: version },
      schema: {
        tags,
        summary: 'Upload one file of a new model version (raw application/octet-stream body)',
        params: fileParams,
        response: respond(stagedFileSchema),
      },
      handler: async (request) => {
        tooLarge(request);
        const p = request.params as FileP;
        return registry.stageFile(
          principalOf(request),
          { kind: 'model', name: p.name, version: p.version },
          p['*'],
          request.body as Readable,
        );
      },
    });
    child.route({
      method: 'PUT',
      url: '/v1/datasets/:name/versions/:version/files/*',
      config: {
        action: 'dataset.register',
        resource: (request: FastifyRequest) => {
          const p = request.params as P;
          const q = request.query as { sensitivity?: Sensitivity };
          return registry.resourceOf({ dataset: p.name, sensitivity: q.sensitivity ?? 'restricted' });
        },
      },
      schema: {
        tags,
        summary: 'Upload one file of a new dataset version (raw application/octet-stream body)',
        params: fileParams,
        querystring: object({ sensitivity: sensitivitySchema }),
        response: respond(stagedFileSchema),
      },
      handler: async (request) => {
        tooLarge(request);
        const p = request.params as FileP;
        const q = request.query as { sensitivity?: Sensitivity };
        return registry.stageFile(
          principalOf(request),
          {
            kind: 'dataset',
            name: p.name,
            version: p.version,
            ...(q.sensitivity === undefined ? {} : { sensitivity: q.sensitivity }),
          },
          p['*'],
          request.body as Readable,
        );
      },
    });
    done();
  });

  modelVersionRoute(
    'DELETE',
    '/upload',
    'model.register',
    { summary: 'Discard the staged files of an unfinished upload', response: ok },
    async (request, p) => {
      await registry.abortUpload(principalOf(request), 'model', p.name, p.version);
      return { ok: true };
    },
  );
  app.route({
    method: 'POST',
    url: '/v1/models/:name/versions',
    config: {
      action: 'model.register',
      resource: (request: FastifyRequest) =>
        registry.resourceOf({
          model: (request.params as P).name,
          version: (request.body as { version: string }).version,
        }),
    },
    schema: {
      tags,
      summary: 'Finalize an upload: hash (OMS), scan, encrypt and record the version',
      params: modelParams,
      body: object(
        {
          version: str('version label', { pattern: VERSION }),
          metadata: object({
            description: str('description', { maxLength: 4096 }),
            framework: str('framework', { maxLength: 128 }),
            license: str('license (SPDX id or name)', { maxLength: 128 }),
            owner: str('owner', { maxLength: 256 }),
          }),
          lineage: lineageInputSchema,
        },
        ['version'],
      ),
      response: respond(modelVersionSchema),
    },
    handler: async (request) => {
      const body = request.body as { version: string; metadata?: object; lineage?: object };
      return registry.finalizeModelVersion(principalOf(request), {
        model: (request.params as P).name,
        version: body.version,
        ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
        ...(body.lineage === undefined ? {} : { lineage: body.lineage }),
      });
    },
  });
  app.route({
    method: 'GET',
    url: '/v1/models/:name/versions/:version/files/*',
    config: { action: 'model.read', resource: version },
    schema: { tags, summary: 'Download one file (decrypted and verified as it streams)', params: fileParams },
    handler: async (request, reply) => {
      const p = request.params as FileP;
      const { file, content } = await registry.openFile(
        principalOf(request),
        'model',
        p.name,
        p.version,
        p['*'],
      );
      void reply.header('content-type', 'application/octet-stream');
      void reply.header('content-length', String(file.size));
      void reply.header('x-warden-sha256', file.sha256);
      return reply.send(Readable.from(content));
    },
  });

  // ---- signatures, verification, scans, promotion
  modelVersionRoute(
    'POST',
    '/sign',
    'model.sign',
    {
      summary: 'Sign with the registry KMS key, or attach an externally made OMS bundle (verified first)',
      body: signBody,
      response: signatureSchema,
    },
    (request, p) => {
      const bundle = bundleOf(request);
      return bundle === undefined
        ? registry.sign(principalOf(request), p.name, p.version)
        : registry.attachSignature(principalOf(request), p.name, p.version, bundle);
    },
  );
  modelVersionRoute(
    'POST',
    '/verify',
    'model.verify',
    {
      summary:
        'Verify the signature against the trusted signers and stored digests (deep: decrypt and re-hash every file)',
      body: verifyBody,
      response: verifySchema,
    },
    (request, p) => registry.verify(principalOf(request), p.name, p.version, deepOf(request)),
  );
  modelVersionRoute(
    'POST',
    '/scan',
    'model.scan',
    { summary: 'Re-scan the stored files with the current rules', response: scanSummarySchema },
    (request, p) => registry.scan(principalOf(request), p.name, p.version),
  );
  modelVersionRoute(
    'POST',
    '/waive',
    'model.waive',
    {
      summary: "Accept the version's current scan verdict for promotion (audited)",
      body: object({ reason: str('why', { minLength: 1, maxLength: 2048 }), expiresAt: int('epoch ms') }, [
        'reason',
      ]),
      response: waiverSchema,
    },
    (request, p) => {
      const b = request.body as { reason: string; expiresAt?: number };
      return registry.waive(principalOf(request), p.name, p.version, {
        reason: b.reason,
        ...(b.expiresAt === undefined ? {} : { expiresAt: b.expiresAt }),
      });
    },
  );
  app.route({
    method: 'POST',
    url: '/v1/models/:name/versions/:version/promote',
    config: {
      action: 'model.promote',
      resource: (request: FastifyRequest) => {
        const p = request.params as P;
        return registry.resourceOf({
          model: p.name,
          version: p.version,
          stage: (request.body as { stage: Stage }).stage,
        });
      },
    },
    schema: {
      tags,
      summary: 'Move a stage alias to this version (prod: files an approval request)',
      params: versionParams,
      body: object({ stage: stageSchema }, ['stage']),
      response: respond(promotionSchema),
    },
    handler: async (request) => {
      const p = request.params as P;
      return registry.promote(
        principalOf(request),
        p.name,
        p.version,
        (request.body as { stage: Stage }).stage,
      );
    },
  });
  modelVersionRoute(
    'GET',
    '/scan',
    'model.read',
    { summary: 'Per-file scan results', response: listOf('results', scanRecordSchema) },
    async (request, p) => ({ results: await registry.scanResults(principalOf(request), p.name, p.version) }),
  );
  app.route({
    method: 'GET',
    url: '/v1/models/:name/approvals',
    config: { action: 'model.read', resource: model },
    schema: {
      tags,
      summary: 'Approval requests of a model',
      params: modelParams,
      response: respond(listOf('approvals', approvalSchema)),
    },
    handler: async (request) => ({
      approvals: await registry.approvals(principalOf(request), (request.params as P).name),
    }),
  });
  app.route({
    method: 'POST',
    url: '/v1/models/:name/approvals/:id/approve',
    config: {
      action: 'model.approve',
      resource: (request: FastifyRequest) => {
        const params = request.params as { id: string; name: string };
        return registry.approvalResource(params.id, params.name);
      },
    },
    schema: {
      tags,
      summary: 'Approve a pending promotion (the approver must not be the requester)',
      params: object({ name: str('model', { pattern: NAME }), id: str('approval id', { pattern: UUID }) }, [
        'name',
        'id',
      ]),
      response: respond(promotionSchema),
    },
    handler: async (request) => {
      const params = request.params as { id: string; name: string };
      return registry.approve(principalOf(request), params.id, params.name);
    },
  });
  for (const [suffix, action] of [
    ['quarantine', 'model.quarantine'],
    ['release', 'model.release'],
  ] as const) {
    app.route({
      method: 'POST',
      url: `/v1/models/:name/${suffix}`,
      config: {
        action,
        resource: (request: FastifyRequest) => {
          const v = (request.body as { version?: string }).version;
          return registry.resourceOf({
            model: (request.params as P).name,
            ...(v === undefined ? {} : { version: v }),
          });
        },
      },
      schema: {
        tags,
        summary:
          suffix === 'quarantine'
            ? 'Quarantine a model or one version (effective immediately)'
            : 'Lift a quarantine',
        params: modelParams,
        body:
          suffix === 'quarantine'
            ? object(
                {
                  version: str('version (absent: the whole model)', { pattern: VERSION }),
                  reason: str('why', { minLength: 1, maxLength: 1024 }),
                },
                ['reason'],
              )
            : object({ version: str('version (absent: the whole model)', { pattern: VERSION }) }),
        response: respond(
          object({ ok: { type: 'boolean' }, epoch: int('change epoch after the change') }, ['ok', 'epoch']),
        ),
      },
      handler: async (request) => {
        const b = request.body as { version?: string; reason?: string };
        const name = (request.params as P).name;
        if (suffix === 'quarantine')
          await registry.quarantine(principalOf(request), name, b.version, b.reason ?? '');
        else await registry.release(principalOf(request), name, b.version);
        return { ok: true, epoch: await registry.quarantineEpoch() };
      },
    });
  }
  modelVersionRoute(
    'GET',
    '/servable',
    'model.read',
    {
      summary:
        'Whether the gateway may serve this version (deployed, signed, verified, scan accepted, not quarantined)',
      querystring: object({ stage: stageSchema }),
      response: record(
        {
          servable: { type: 'boolean' },
          reasons: array(str('reason')),
          digest: str('digest'),
          stages: array(stageSchema),
        },
        ['digest', 'stages'],
      ),
    },
    (request, p) => registry.servable(p.name, p.version, (request.query as { stage?: Stage }).stage),
  );
  modelVersionRoute(
    'GET',
    '/lineage',
    'model.read',
    {
      summary: 'Ancestry (parent chain), children and training datasets of a version',
      response: record({
        version: modelVersionSchema,
        ancestors: array(modelVersionSchema),
        children: array(modelVersionSchema),
      }),
    },
    (request, p) => registry.ancestry(principalOf(request), p.name, p.version),
  );
  modelVersionRoute(
    'GET',
    '/bom',
    'model.read',
    {
      summary: 'CycloneDX 1.6 ML-BOM of the version (validated against the 1.6 schema)',
      response: { type: 'object', additionalProperties: true, description: 'CycloneDX 1.6 JSON' },
    },
    (request, p, reply) => {
      void reply.header('content-type', 'application/vnd.cyclonedx+json; version=1.6');
      return registry.bom(principalOf(request), p.name, p.version);
    },
  );
  app.route({
    method: 'GET',
    url: '/v1/registry/epoch',
    config: { action: 'model.read', resource: allModels },
    schema: {
      tags,
      summary:
        'Change epoch (poll it; when it moves, re-check servability) and optionally the changes after `since`',
      querystring: object({ since: str('sequence number', { pattern: '^[0-9]{1,15}$' }) }),
      response: respond(
        object(
          {
            epoch: int('latest change'),
            changes: {
              type: 'array',
              items: object(
                {
                  seq: int('seq'),
                  kind: str('kind'),
                  model: str('model'),
                  version: nullable(str('version')),
                  at: int('epoch ms'),
                },
                ['seq', 'kind', 'model', 'version', 'at'],
              ),
            },
          },
          ['epoch'],
        ),
      ),
    },
    handler: async (request) => {
      const since = (request.query as { since?: string }).since;
      return {
        epoch: await registry.quarantineEpoch(),
        ...(since === undefined ? {} : { changes: await registry.changesSince(Number(since)) }),
      };
    },
  });
  app.route({
    method: 'POST',
    url: '/v1/registry/rescan',
    config: { action: 'model.scan', resource: allModels },
    schema: {
      tags,
      summary: 'Re-scan every version whose results come from older scanner rules',
      response: respond(
        object(
          {
            rescanned: {
              type: 'array',
              items: object(
                {
                  kind: str('kind'),
                  name: str('name'),
                  version: str('version'),
                  verdict: nullable(verdictSchema),
                },
                ['kind', 'name', 'version', 'verdict'],
              ),
            },
            failed: {
              type: 'array',
              items: object(
                { kind: str('kind'), name: str('name'), version: str('version'), code: str('error code') },
                ['kind', 'name', 'version', 'code'],
              ),
            },
          },
          ['rescanned', 'failed'],
        ),
      ),
    },
    handler: async (request) => registry.rescanOutdated(principalOf(request)),
  });

  // ---- datasets
  app.route({
    method: 'GET',
    url: '/v1/datasets',
    config: {
      action: 'dataset.read',
      resource: () => ({ type: 'Dataset', id: '*', attrs: { sensitivity: 'restricted' } }),
    },
    schema: { tags, summary: 'List datasets', response: respond(listOf('datasets', str('name'))) },
    handler: async (request) => ({ datasets: await registry.listDatasets(principalOf(request)) }),
  });
  app.route({
    method: 'GET',
    url: '/v1/datasets/:name',
    config: { action: 'dataset.read', resource: dataset },
    schema: {
      tags,
      summary: 'Versions of a dataset',
      params: datasetParams,
      response: respond(listOf('versions', datasetVersionSchema)),
    },
    handler: async (request) => ({
      versions: await registry.listDatasetVersions(principalOf(request), (request.params as P).name),
    }),
  });
  datasetVersionRoute(
    'GET',
    '',
    'dataset.read',
    {
      summary: 'A dataset version with files and signatures',
      response: record({
        version: datasetVersionSchema,
        files: array(fileSchema),
        signatures: array(signatureSchema),
      }),
    },
    (request, p) => registry.getDatasetVersion(principalOf(request), p.name, p.version),
  );
  app.route({
    method: 'POST',
    url: '/v1/datasets/:name/versions',
    config: {
      action: 'dataset.register',
      resource: (request: FastifyRequest) => {
        const b = request.body as { version: string; sensitivity: Sensitivity };
        return registry.resourceOf({
          dataset: (request.params as P).name,
          version: b.version,
          sensitivity: b.sensitivity,
        });
      },
    },
    schema: {
      tags,
      summary: 'Finalize a dataset upload: hash, scan, encrypt and record',
      params: datasetParams,
      body: object(
        {
          version: str('version label', { pattern: VERSION }),
          sensitivity: sensitivitySchema,
          owner: str('owner', { minLength: 1, maxLength: 256 }),
          description: str('description', { maxLength: 4096 }),
        },
        ['version', 'sensitivity', 'owner'],
      ),
      response: respond(datasetVersionSchema),
    },
    handler: async (request) => {
      const b = request.body as {
        version: string;
        sensitivity: Sensitivity;
        owner: string;
        description?: string;
      };
      return registry.finalizeDataset(principalOf(request), {
        dataset: (request.params as P).name,
        version: b.version,
        metadata: {
          sensitivity: b.sensitivity,
          owner: b.owner,
          ...(b.description === undefined ? {} : { description: b.description }),
        },
      });
    },
  });
  datasetVersionRoute(
    'POST',
    '/sign',
    'dataset.sign',
    {
      summary: 'Sign a dataset version with the registry KMS key, or attach a verified external bundle',
      body: signBody,
      response: signatureSchema,
    },
    (request, p) => {
      const bundle = bundleOf(request);
      return bundle === undefined
        ? registry.signDataset(principalOf(request), p.name, p.version)
        : registry.attachDatasetSignature(principalOf(request), p.name, p.version, bundle);
    },
  );
  datasetVersionRoute(
    'POST',
    '/verify',
    'dataset.verify',
    {
      summary: 'Verify a dataset before training use (deep: decrypt and re-hash every file)',
      body: verifyBody,
      response: verifySchema,
    },
    (request, p) => registry.verifyDataset(principalOf(request), p.name, p.version, deepOf(request)),
  );
  datasetVersionRoute(
    'GET',
    '/lineage',
    'dataset.read',
    {
      summary: 'Model versions trained on this dataset version (GDPR erasure impact)',
      response: trainedOnSchema,
    },
    async (request, p) => ({
      versions: await registry.versionsTrainedOn(principalOf(request), {
        dataset: p.name,
        version: p.version,
      }),
    }),
  );
  app.route({
    method: 'GET',
    url: '/v1/lineage/datasets/:digest',
    config: {
      action: 'dataset.read',
      resource: (request: FastifyRequest): AuthzResource => {
        const digest = (request.params as { digest: string }).digest.replace(/^sha256:/, '');
        return { type: 'Dataset', id: `sha256:${digest}`, attrs: { sensitivity: 'restricted' } };
      },
    },
    schema: {
      tags,
      summary: 'Model versions trained on a dataset with this root digest (registered or external)',
      params: object({ digest: str('dataset root digest', { pattern: DIGEST }) }, ['digest']),
      response: respond(trainedOnSchema),
    },
    handler: async (request) => ({
      versions: await registry.versionsTrainedOn(principalOf(request), {
        digest: (request.params as { digest: string }).digest,
      }),
    }),
  });
}
