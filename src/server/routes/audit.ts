import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseVerifierKey } from '../../audit/index.ts';
import type { AuditHasher, AuditLog, AuditQuery, AuditRecorder } from '../../audit/index.ts';
import type { AuthzResource } from '../../policy/index.ts';
import { requestEvent } from '../context.ts';
import { errorResponses, object } from '../schemas.ts';
import type { JsonSchema } from '../schemas.ts';

/**
 * The audit log over HTTP (`/v1/audit/...`): signed checkpoints, the verifier key, inclusion and consistency
 * proofs, filtered queries with paging, keyed-hash lookups, server-side verification and time-range exports.
 */
export interface AuditRouteDeps {
  readonly log: AuditLog;
  readonly hasher: () => Promise<AuditHasher>;
  /** The C2SP verifier key of the checkpoint signer, once the KMS has produced it. */
  readonly verifierKey: () => string | undefined;
  /**
   * Where reads of the log's content (queries, keyed-hash lookups, exports) are recorded before they are answered
   * (default: the log itself); no record, no answer.
   */
  readonly audit?: AuditRecorder;
}

class AuditRouteError extends Error {
  readonly code: string;
  readonly httpStatus: number;
  constructor(code: string, httpStatus: number, message: string) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

const AUDIT_LOG = (): AuthzResource => ({ type: 'AuditLog', id: 'main' });
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const sizeSchema: JsonSchema = { type: 'string', pattern: '^(0|[1-9][0-9]{0,14})$' };
const timeSchema: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 40,
  description: 'RFC 3339 or epoch ms',
};
const checkpointView = object(
  {
    treeSize: { type: 'integer' },
    rootHash: { type: 'string', description: 'hex' },
    note: { type: 'string', description: 'the signed note (C2SP tlog-checkpoint)' },
    createdAt: { type: 'integer' },
  },
  ['treeSize', 'rootHash', 'note', 'createdAt'],
);
const proofView = (extra: Record<string, JsonSchema>, required: string[]) =>
  object({ ...extra, proof: { type: 'array', items: { type: 'string', description: 'hex' } } }, [
    ...required,
    'proof',
  ]);

function size(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new AuditRouteError('invalid_request', 400, `${name} is out of range`);
  return n;
}

function time(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  return /^\d{1,15}$/.test(text) ? Number(text) : text;
}

export function auditRoutes(app: FastifyInstance, deps: AuditRouteDeps): void {
  const { log } = deps;
  const recorder = deps.audit ?? log;

  /** Who read what of the log, before the answer leaves: the log is personal data about everyone in it. */
  const recordRead = async (
    request: FastifyRequest,
    action: 'audit.read' | 'audit.export',
    details: Record<string, string | number>,
  ): Promise<void> => {
    try {
      await recorder.record(
        requestEvent(request, { action, resource: 'audit:log', outcome: 'success', details }),
      );
    } catch {
      throw new AuditRouteError('audit_unavailable', 503, 'the audit log is unavailable');
    }
  };
  const tags = ['audit'];

  app.get(
    '/v1/audit/verifier-key',
    {
      config: { public: true },
      schema: {
        tags,
        summary:
          'The public verifier key of the checkpoint signer (C2SP note verifier key); public information',
        security: [],
        response: {
          200: object({ verifierKey: { type: 'string' }, origin: { type: 'string' } }),
          ...errorResponses,
        },
      },
    },
    () => {
      const verifierKey = deps.verifierKey();
      if (verifierKey === undefined) {
        throw new AuditRouteError(
          'unavailable',
          503,
          'the checkpoint key is not available yet (is the KMS sealed?)',
        );
      }
      return { verifierKey, origin: log.origin };
    },
  );

  app.get(
    '/v1/audit/checkpoint',
    {
      config: { action: 'audit.read', resource: AUDIT_LOG },
      schema: {
        tags,
        summary: 'The latest signed checkpoint (signs a fresh one when the log has grown since)',
        response: { 200: checkpointView, ...errorResponses },
      },
    },
    async () => {
      const cp = await log.checkpoint();
      return { treeSize: cp.treeSize, rootHash: hex(cp.rootHash), note: cp.note, createdAt: cp.createdAt };
    },
  );

  app.get<{ Querystring: Record<string, string | undefined> }>(
    '/v1/audit/events',
    {
      config: { action: 'audit.read', resource: AUDIT_LOG },
      schema: {
        tags,
        summary: 'Query events by principal, action, resource, outcome and time range, a page at a time',
        querystring: object({
          principal: { type: 'string', maxLength: 256 },
          action: { type: 'string', maxLength: 128 },
          resource: { type: 'string', maxLength: 512 },
          outcome: { type: 'string', enum: ['success', 'failure', 'denied'] },
          from: timeSchema,
          to: timeSchema,
          after: sizeSchema,
          limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' },
        }),
        response: {
          200: object(
            {
              events: {
                type: 'array',
                items: object(
                  {
                    index: { type: 'integer' },
                    time: { type: 'string' },
                    leafHash: { type: 'string' },
                    event: { type: ['object', 'null'], additionalProperties: true },
                  },
                  ['index', 'time', 'leafHash', 'event'],
                ),
              },
              nextCursor: { type: ['integer', 'null'] },
            },
            ['events', 'nextCursor'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const from = time(q.from);
      const to = time(q.to);
      const query: AuditQuery = {
        ...(q.principal === undefined ? {} : { principal: q.principal }),
        ...(q.action === undefined ? {} : { action: q.action }),
        ...(q.resource === undefined ? {} : { resource: q.resource }),
        ...(q.outcome === undefined ? {} : { outcome: q.outcome }),
        ...(from === undefined ? {} : { from }),
        ...(to === undefined ? {} : { to }),
        ...(q.after === undefined ? {} : { after: size(q.after, 0, 'after') }),
        ...(q.limit === undefined ? {} : { limit: Math.min(Number(q.limit), 1000) }),
      };
      await recordRead(request, 'audit.read', {
        query: Object.keys(request.query)
          .filter((k) => k !== 'after' && k !== 'limit')
          .sort()
          .join(','),
        ...(query.principal === undefined ? {} : { principal: query.principal }),
        ...(query.action === undefined ? {} : { queriedAction: query.action }),
        ...(query.resource === undefined ? {} : { resource: query.resource }),
      });
      const page = await log.query(query);
      return {
        events: page.entries.map((e) => ({
          index: e.index,
          time: e.time,
          leafHash: hex(e.leafHash),
          event: e.entry,
        })),
        nextCursor: page.nextCursor,
      };
    },
  );

  app.get<{ Params: { index: string }; Querystring: { treeSize?: string } }>(
    '/v1/audit/events/:index/proof',
    {
      config: { action: 'audit.read', resource: AUDIT_LOG },
      schema: {
        tags,
        summary: 'Inclusion proof of one event in the tree of a given size (default: the current size)',
        params: object({ index: sizeSchema }, ['index']),
        querystring: object({ treeSize: sizeSchema }),
        response: {
          200: proofView(
            {
              index: { type: 'integer' },
              treeSize: { type: 'integer' },
              leafHash: { type: 'string' },
              rootHash: { type: 'string' },
            },
            ['index', 'treeSize', 'leafHash', 'rootHash'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const index = size(request.params.index, 0, 'index');
      const treeSize = size(request.query.treeSize, log.size, 'treeSize');
      if (index >= treeSize)
        throw new AuditRouteError('not_found', 404, 'no event with that index in that tree');
      const [leaf] = await log.leafHashes(index, index + 1);
      const proof = await log.inclusionProof(index, treeSize);
      return {
        index,
        treeSize,
        leafHash: hex(leaf ?? new Uint8Array()),
        rootHash: hex(await log.rootAt(treeSize)),
        proof: proof.map(hex),
      };
    },
  );

  app.get<{ Querystring: { from: string; to?: string } }>(
    '/v1/audit/consistency',
    {
      config: { action: 'audit.verify', resource: AUDIT_LOG },
      schema: {
        tags,
        summary: 'Consistency proof between two tree sizes (default `to`: the current size)',
        querystring: object({ from: sizeSchema, to: sizeSchema }, ['from']),
        response: {
          200: proofView(
            {
              from: { type: 'integer' },
              to: { type: 'integer' },
              fromRoot: { type: 'string' },
              toRoot: { type: 'string' },
            },
            ['from', 'to', 'fromRoot', 'toRoot'],
          ),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const to = size(request.query.to, log.size, 'to');
      const from = size(request.query.from, 0, 'from');
      if (from > to || to > log.size)
        throw new AuditRouteError('invalid_request', 400, 'need from <= to <= tree size');
      const proof = await log.consistencyProof(from, to);
      return {
        from,
        to,
        fromRoot: hex(await log.rootAt(from)),
        toRoot: hex(await log.rootAt(to)),
        proof: proof.map(hex),
      };
    },
  );

  app.post<{ Body: { value: string } }>(
    '/v1/audit/hash',
    {
      config: { action: 'audit.read', resource: AUDIT_LOG },
      schema: {
        tags,
        summary: 'The keyed hash (`hmac-sha256:`) under which a known sensitive value appears in events',
        body: object({ value: { type: 'string', minLength: 1, maxLength: 65536 } }, ['value']),
        response: { 200: object({ hash: { type: 'string' } }, ['hash']), ...errorResponses },
      },
    },
    async (request) => {
      // The value never reaches the record; the hash does, so an auditor sees which pseudonym was resolved.
      const hash = (await deps.hasher()).hash(request.body.value);
      await recordRead(request, 'audit.read', { lookup: 'hash', hash });
      return { hash };
    },
  );

  app.post(
    '/v1/audit/verify',
    {
      config: { action: 'audit.verify', resource: AUDIT_LOG },
      schema: {
        tags,
        summary:
          'Verify the whole stored log: every body against its leaf hash, every checkpoint root and signature',
        response: {
          200: object(
            {
              treeSize: { type: 'integer' },
              rootHash: { type: 'string' },
              bodiesChecked: { type: 'integer' },
              bodiesPruned: { type: 'integer' },
              checkpointsChecked: { type: 'integer' },
            },
            ['treeSize', 'rootHash', 'bodiesChecked', 'bodiesPruned', 'checkpointsChecked'],
          ),
          ...errorResponses,
        },
      },
    },
    async () => {
      // Checkpoint signatures are checked too, with the signer's published key: without it, refuse rather than
      // report a verification that skipped them.
      const verifierKey = deps.verifierKey();
      if (verifierKey === undefined) {
        throw new AuditRouteError(
          'unavailable',
          503,
          'the checkpoint signer is not available yet (is the KMS sealed?): signatures cannot be checked',
        );
      }
      const report = await log.verify({ verifier: parseVerifierKey(verifierKey) });
      return { ...report, rootHash: hex(report.rootHash) };
    },
  );

  app.get<{ Querystring: { from?: string; to?: string } }>(
    '/v1/audit/export',
    {
      config: { action: 'audit.export', resource: AUDIT_LOG },
      schema: {
        tags,
        summary:
          'Export (docs/spec/audit-export.md, JSON lines) of the whole tree with the bodies of events in [from, to)',
        querystring: object({ from: timeSchema, to: timeSchema }),
      },
    },
    async (request, reply) => {
      // Sign the checkpoint the export ends with before answering 200, so a sealed KMS is a proper error.
      await log.checkpoint();
      const from = time(request.query.from);
      const to = time(request.query.to);
      await recordRead(request, 'audit.export', {
        ...(request.query.from === undefined ? {} : { from: request.query.from }),
        ...(request.query.to === undefined ? {} : { to: request.query.to }),
      });
      const stream = new PassThrough();
      const done = log.export(stream, {
        ...(from === undefined ? {} : { from }),
        ...(to === undefined ? {} : { to }),
      });
      done
        .then(() => stream.end())
        .catch((err: unknown) => {
          request.log.error(
            { err: { type: err instanceof Error ? err.name : 'unknown' } },
            'audit export failed',
          );
          stream.destroy(err instanceof Error ? err : new Error('export failed'));
        });
      return reply.type('application/x-ndjson').send(stream);
    },
  );
}
