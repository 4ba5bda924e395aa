import * as CDX from '@cyclonedx/cyclonedx-library';
import { randomUUID } from 'node:crypto';
import { RegistryError } from './errors.ts';
import type {
  DatasetVersionRecord,
  FileRecord,
  LineageDataset,
  ModelRecord,
  ModelVersionRecord,
  SignatureRecord,
} from './types.ts';

/**
 * ML-BOM: a CycloneDX 1.6 JSON document for one model version. The model is `metadata.component` (type
 * machine-learning-model) with its OMS root digest, a model card (training datasets by reference, parameters),
 * lineage as properties and pedigree; every training dataset is a `data` component with its digest; every file
 * is a `file` component with its SHA-256. Built with @cyclonedx/cyclonedx-library's models and serializer;
 * the library has no model card or component data model yet, so those two are added to its output, and the
 * result is checked with the library's strict 1.6 JSON schema validator before it is returned.
 */

export interface BomInput {
  readonly model: ModelRecord;
  readonly version: ModelVersionRecord;
  readonly files: readonly FileRecord[];
  readonly datasets: readonly (DatasetVersionRecord | LineageDataset)[];
  readonly signatures: readonly SignatureRecord[];
}

export class BomValidationError extends RegistryError {
  constructor(detail: string) {
    super('bom_invalid', 500, `the generated CycloneDX document does not validate: ${detail}`);
  }
}

const SHA256 = CDX.Enums.HashAlgorithm['SHA-256'];

function isRegistered(d: DatasetVersionRecord | LineageDataset): d is DatasetVersionRecord {
  return 'dataset' in d;
}

type Json = Record<string, unknown>;

export async function buildModelBom(input: BomInput, options: { timestamp?: Date } = {}): Promise<Json> {
  const { version: v } = input;
  const bom = new CDX.Models.Bom();
  bom.serialNumber = `urn:uuid:${randomUUID()}`;
  bom.metadata.timestamp = options.timestamp ?? new Date();
  bom.metadata.tools.components.add(
    new CDX.Models.Component(CDX.Enums.ComponentType.Application, 'warden-registry', { group: 'warden' }),
  );

  const modelRef = `model:${v.model}@${v.version}`;
  const model = new CDX.Models.Component(CDX.Enums.ComponentType.MachineLearningModel, v.model, {
    version: v.version,
    bomRef: modelRef,
    ...(v.description === null ? {} : { description: v.description }),
  });
  model.hashes.set(SHA256, v.digest);
  if (v.license !== null) model.licenses.add(new CDX.Models.NamedLicense(v.license));
  const prop = (name: string, value: string): void => {
    model.properties.add(new CDX.Models.Property(name, value));
  };
  prop('warden:registry:digest', `sha256:${v.digest}`);
  prop('warden:registry:format', v.format);
  prop('warden:registry:size', String(v.size));
  prop('warden:registry:createdBy', v.createdBy);
  prop('warden:registry:createdAt', new Date(v.createdAt).toISOString());
  if (v.framework !== null) prop('warden:model:framework', v.framework);
  if (v.lineage.codeCommit !== null) prop('warden:lineage:codeCommit', v.lineage.codeCommit);
  if (v.lineage.codeRepository !== null) prop('warden:lineage:codeRepository', v.lineage.codeRepository);
  if (v.scan.verdict !== null) prop('warden:scan:verdict', v.scan.verdict);
  if (v.scan.rulesVersion !== null) prop('warden:scan:rulesVersion', v.scan.rulesVersion);
  for (const s of input.signatures) {
    if (s.verifiedWith !== null) prop('warden:signature:verifiedWith', s.verifiedWith);
  }
  if (input.model.quarantine !== null || v.quarantine !== null) prop('warden:registry:quarantined', 'true');
  bom.metadata.component = model;

  const dataRefs: string[] = [];
  const dataExtras = new Map<string, Json>();
  for (const d of input.datasets) {
    const name = isRegistered(d) ? d.dataset : (d.name ?? `sha256:${d.digest}`);
    const ver = isRegistered(d) ? d.version : (d.version ?? undefined);
    const ref = `dataset:sha256:${d.digest}`;
    const c = new CDX.Models.Component(CDX.Enums.ComponentType.Data, name, {
      bomRef: ref,
      ...(ver === undefined ? {} : { version: ver }),
    });
    c.hashes.set(SHA256, d.digest);
    if (isRegistered(d)) c.properties.add(new CDX.Models.Property('warden:dataset:owner', d.owner));
    bom.components.add(c);
    model.dependencies.add(c.bomRef);
    dataRefs.push(ref);
    dataExtras.set(ref, {
      type: 'dataset',
      name,
      ...(isRegistered(d) ? { classification: d.sensitivity } : {}),
      ...(isRegistered(d) && d.description !== null ? { description: d.description } : {}),
    });
  }
  for (const f of input.files) {
    const c = new CDX.Models.Component(CDX.Enums.ComponentType.File, f.path, { bomRef: `file:${f.path}` });
    c.hashes.set(SHA256, f.sha256);
    c.properties.add(new CDX.Models.Property('warden:file:format', f.format));
    c.properties.add(new CDX.Models.Property('warden:file:size', String(f.size)));
    bom.components.add(c);
  }

  const serializer = new CDX.Serialize.JsonSerializer(
    new CDX.Serialize.JSON.Normalize.Factory(CDX.Spec.Spec1dot6),
  );
  const doc = JSON.parse(serializer.serialize(bom, { sortLists: true })) as Json;

  // Model card and component data: not modelled by the library (see above).
  const metadata = doc['metadata'] as Json;
  const component = metadata['component'] as Json;
  const parameters = Object.entries(v.lineage.parameters).map(([name, value]) => ({
    name: `parameter:${name}`,
    value: String(value),
  }));
  component['modelCard'] = {
    'bom-ref': `modelcard:${v.model}@${v.version}`,
    modelParameters: {
      ...(v.framework === null ? {} : { modelArchitecture: v.framework }),
      datasets: dataRefs.map((ref) => ({ ref })),
    },
    ...(parameters.length === 0 ? {} : { properties: parameters }),
  };
  if (v.lineage.parent !== null) {
    component['pedigree'] = {
      ancestors: [
        {
          type: 'machine-learning-model',
          name: v.lineage.parent.model,
          version: v.lineage.parent.version,
          hashes: [{ alg: 'SHA-256', content: v.lineage.parent.digest }],
        },
      ],
    };
  }
  for (const c of (doc['components'] ?? []) as Json[]) {
    const extra = dataExtras.get(c['bom-ref'] as string);
    if (extra !== undefined) c['data'] = [extra];
  }

  const validator = new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6);
  const problems: unknown = await validator.validate(JSON.stringify(doc));
  if (problems !== null) throw new BomValidationError(JSON.stringify(problems).slice(0, 500));
  return doc;
}
