import { KMS_ACTIONS } from '../kms/index.ts';
import type { KmsAction } from '../kms/index.ts';

/** Cedar namespace of every Warden entity type and action. */
export const NAMESPACE = 'Warden';

export const PRINCIPAL_TYPES = ['User', 'ServiceAccount'] as const;
export type PrincipalType = (typeof PRINCIPAL_TYPES)[number];

export const RESOURCE_TYPES = [
  'Key',
  'Dataset',
  'Model',
  'ModelVersion',
  'Endpoint',
  'AuditLog',
  'Policy',
  'Identity',
  'System',
] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];

/** Allowed values of the string attributes that ABAC policies compare against (documented, checked by callers). */
export const DATASET_SENSITIVITIES = ['public', 'internal', 'confidential', 'restricted'] as const;
export const MODEL_STAGES = ['dev', 'staging', 'prod'] as const;
export const ENVIRONMENTS = ['dev', 'staging', 'prod'] as const;

/** Every KMS action, as the KMS names it (`keys.create`); the Cedar action id is `kms.<action>`. */
export { KMS_ACTIONS };

export function kmsCedarAction(action: KmsAction): `kms.${KmsAction}` {
  return `kms.${action}`;
}

/**
 * Every API operation and the resource types it applies to. All actions apply to both principal types and take
 * the same `RequestContext`. The schema text below is generated from this table, so adding an operation here is
 * the one step needed before policies may name it.
 */
export const ACTIONS = {
  ...(Object.fromEntries(KMS_ACTIONS.map((a) => [kmsCedarAction(a), ['Key']])) as unknown as Record<
    `kms.${KmsAction}`,
    readonly ResourceType[]
  >),
  'dataset.read': ['Dataset'],
  'dataset.register': ['Dataset'],
  'dataset.export': ['Dataset'],
  'dataset.modify': ['Dataset'],
  'model.register': ['Model', 'ModelVersion'],
  'model.read': ['Model', 'ModelVersion'],
  'model.sign': ['ModelVersion'],
  'model.promote': ['ModelVersion'],
  'model.deploy': ['ModelVersion'],
  'model.quarantine': ['Model', 'ModelVersion'],
  'endpoint.invoke': ['Endpoint'],
  'audit.read': ['AuditLog'],
  'audit.verify': ['AuditLog'],
  'audit.export': ['AuditLog'],
  'policy.read': ['Policy'],
  'policy.write': ['Policy'],
  'identity.read': ['Identity'],
  'identity.manage': ['Identity'],
  // A principal managing its own credentials (second factors, API keys) on its own Identity: permitted to every
  // principal by the built-in `self-service` policy, so that guardrails and custom forbids apply to it too.
  'identity.self': ['Identity'],
  'operator.init': ['System'],
  'operator.seal': ['System'],
  'model.approve': ['ModelVersion'],
  'model.waive': ['ModelVersion'],
  'model.scan': ['Model', 'ModelVersion'],
  'model.verify': ['Model', 'ModelVersion'],
  'model.release': ['Model', 'ModelVersion'],
  'dataset.sign': ['Dataset'],
  'dataset.verify': ['Dataset'],
  'ca.issue': ['Identity'],
  'ca.revoke': ['Identity'],
  'ca.read': ['Identity'],
} as const satisfies Record<string, readonly ResourceType[]>;

export type ActionId = keyof typeof ACTIONS;
export const ACTION_IDS = Object.keys(ACTIONS) as ActionId[];

export function isActionId(value: string): value is ActionId {
  return Object.hasOwn(ACTIONS, value);
}

const ENTITY_DECLARATIONS = `  // Time of day in the deployment's time zone: minutes since midnight (0-1439), ISO day of week (1 = Monday ... 7 = Sunday).
  type Clock = { minuteOfDay: Long, dayOfWeek: Long };

  // Every attribute is optional: a caller that cannot know one (the KMS does not see MFA age) leaves it out, and
  // policies must test \`context has x\` — the validator rejects those that do not. Guardrails fail closed on absence.
  type RequestContext = {
    now?: Clock,
    sourceIp?: ipaddr,
    mfaAgeSeconds?: Long,
    authMethod?: String,
    environment?: String,
    purpose?: String,
    networkChanged?: Bool,
  };

  entity Role;
  entity Group in [Role];
  entity User in [Group, Role] {
    department?: String,
    clearance?: String,
  };
  entity ServiceAccount in [Role] {
    owner?: String,
  };

  // purpose: encrypt | mac | sign (absent when the caller names no key, e.g. keys.list).
  entity Key { purpose?: String, owner?: String };
  // sensitivity: public | internal | confidential | restricted. Required: a dataset without a label is an error, so deny.
  entity Dataset { sensitivity: String, owner?: String };
  entity Model { owner?: String };
  // stage: dev | staging | prod.
  entity ModelVersion in [Model] { stage: String, signed?: Bool };
  // environment: dev | staging | prod.
  entity Endpoint { environment: String };
  entity AuditLog;
  entity Policy;
  entity Identity;
  // The deployment itself (root of trust lifecycle): the one entity System::"warden".
  entity System;
`;

function actionDeclarations(): string {
  return ACTION_IDS.map((id) => {
    const resources = ACTIONS[id].join(', ');
    return `  action "${id}" appliesTo {\n    principal: [User, ServiceAccount],\n    resource: [${resources}],\n    context: RequestContext,\n  };`;
  }).join('\n');
}

/** Warden's Cedar schema (human-readable format). */
export const WARDEN_SCHEMA = `namespace ${NAMESPACE} {\n${ENTITY_DECLARATIONS}\n${actionDeclarations()}\n}\n`;
