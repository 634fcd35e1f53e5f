/**
 * Validation and defaulting of the fake Kubernetes API server (see ../k8s-api-server.ts for the documented rules
 * it follows): field errors in the API server's Invalid format, names (DNS-1123 subdomain/label, DNS-1035 label),
 * labels, label selectors, Secrets, Jobs (pod template, containers, resources, probes, volumes) and Services.
 */
import { ApiError, nameSuffix, type Kind, type Obj } from './state.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
/** Field error collector producing the API server's Invalid message format. */
export class FieldErrors {
  readonly causes: Array<{ reason: string; message: string; field: string }> = [];
  required(field: string, detail = '') {
    this.causes.push({ reason: 'FieldValueRequired', message: `Required value${detail ? `: ${detail}` : ''}`, field });
  }
  invalid(field: string, value: unknown, detail: string) {
    this.causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(value)}: ${detail}`, field });
  }
  unsupported(field: string, value: unknown, supported: string[]) {
    this.causes.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}`,
      field,
    });
  }
  notFound(field: string, value: unknown) {
    this.causes.push({ reason: 'FieldValueNotFound', message: `Not found: ${JSON.stringify(value)}`, field });
  }
  duplicate(field: string, value: unknown) {
    this.causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(value)}`, field });
  }
  throwIfAny(k: Kind, name: string) {
    if (!this.causes.length) return;
    const parts = this.causes.map((c) => `${c.field}: ${c.message}`);
    const msg = `${k.kindQualified} "${name}" is invalid: ${parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`}`;
    throw new ApiError(422, 'Invalid', msg, { name, group: k.group || undefined, kind: k.kind, causes: this.causes });
  }
}

function dnsSubdomainMsg(): string {
  return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
}
function dns1123LabelMsg(): string {
  return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
}
function dns1035LabelMsg(): string {
  return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
}

/** Check label (or, with isAnnotations, annotation) keys and values as the API server does. */
export function validateLabels(fe: FieldErrors, field: string, labels: unknown, isAnnotations = false) {
  if (labels === undefined || labels === null) return;
  if (typeof labels !== 'object' || Array.isArray(labels)) return fe.invalid(field, labels, 'must be a map of strings');
  for (const [k, v] of Object.entries(labels as Obj)) {
    const slash = k.lastIndexOf('/');
    const prefix = slash >= 0 ? k.slice(0, slash) : '';
    const name = slash >= 0 ? k.slice(slash + 1) : k;
    if ((slash >= 0 && !(prefix.length <= 253 && DNS1123_SUBDOMAIN.test(prefix))) || !(name.length <= 63 && QUALIFIED_NAME.test(name))) {
      fe.invalid(`${field}`, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
    if (typeof v !== 'string') fe.invalid(`${field}`, v, 'must be a string');
    else if (!isAnnotations) {
      if (v.length > 63) fe.invalid(`${field}`, v, 'must be no more than 63 characters');
      else if (!LABEL_VALUE.test(v)) fe.invalid(`${field}`, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
  }
}

/** Parses a labelSelector string into a predicate. @throws ApiError 400 on syntax it does not understand. */
export function parseSelector(sel: string | undefined): (labels: Obj | undefined) => boolean {
  if (!sel) return () => true;
  const reqs: Array<(l: Obj) => boolean> = [];
  // split on commas that are not inside parentheses
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([^!=\s]+)\s*!=\s*(\S*)$/.exec(p))) {
      const [, k, v] = m;
      reqs.push((l) => l[k!] !== v);
    } else if ((m = /^([^!=\s]+)\s*==?\s*(\S*)$/.exec(p))) {
      const [, k, v] = m;
      reqs.push((l) => l[k!] === v);
    } else if ((m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, k, op, list] = m;
      const vals = list!.split(',').map((s) => s.trim());
      reqs.push(op === 'in' ? (l) => vals.includes(l[k!]) : (l) => !vals.includes(l[k!]));
    } else if ((m = /^!(\S+)$/.exec(p))) {
      const k = m[1]!;
      reqs.push((l) => !(k in l));
    } else if ((m = /^(\S+)$/.exec(p))) {
      const k = m[1]!;
      reqs.push((l) => k in l);
    } else {
      throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(p)}`);
    }
  }
  return (labels) => reqs.every((r) => r(labels ?? {}));
}

/** `true` or `"true"` (query parameters and DeleteOptions fields). */
export function isDockerTrue(v: unknown): boolean {
  return v === true || v === 'true';
}
/** Check metadata (name format per kind, labels, annotations, namespace, apiVersion/kind); expands generateName. Returns the name. */
export function validateMeta(k: Kind, ns: string, obj: Obj, fe: FieldErrors): string {
  if (obj.kind !== undefined && obj.kind !== k.kind) {
    throw new ApiError(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) does not match the expected API version (${k.apiVersion})`);
  }
  if (obj.apiVersion !== undefined && obj.apiVersion !== k.apiVersion) {
    throw new ApiError(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) does not match the expected API version (${k.apiVersion})`);
  }
  const m: Obj = (obj.metadata ??= {});
  if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== ns) {
    throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
  }
  if (!m.name && m.generateName) m.name = `${m.generateName}${nameSuffix()}`;
  const name: string = m.name ?? '';
  if (!name) fe.required('metadata.name', 'name or generateName is required');
  else if (k.kind === 'Service') {
    if (name.length > 63) fe.invalid('metadata.name', name, 'must be no more than 63 characters');
    else if (!DNS1035_LABEL.test(name)) fe.invalid('metadata.name', name, dns1035LabelMsg());
  } else if (!(name.length <= 253 && DNS1123_SUBDOMAIN.test(name))) fe.invalid('metadata.name', name, dnsSubdomainMsg());
  validateLabels(fe, 'metadata.labels', m.labels);
  validateLabels(fe, 'metadata.annotations', m.annotations, true);
  return name;
}

/** Validate a Secret: data keys, base64 values (400 when not base64), stringData merged into data, size, dockerconfigjson. */
export function validateSecret(obj: Obj, fe: FieldErrors): void {
  obj.type ??= 'Opaque';
  const data: Obj = obj.data ?? {};
  const decodedSize = { n: 0 };
  for (const [key, v] of Object.entries(data)) {
    if (!SECRET_KEY.test(key)) fe.invalid(`data[${key}]`, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
      throw new ApiError(400, 'BadRequest', `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0`);
    }
    decodedSize.n += Buffer.from(v, 'base64').length;
  }
  for (const [key, v] of Object.entries((obj.stringData ?? {}) as Obj)) {
    if (!SECRET_KEY.test(key)) fe.invalid(`stringData[${key}]`, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
    data[key] = Buffer.from(String(v)).toString('base64');
    decodedSize.n += Buffer.byteLength(String(v));
  }
  delete obj.stringData;
  if (Object.keys(data).length) obj.data = data;
  if (decodedSize.n > 1024 * 1024) fe.invalid('data', '<secret data>', 'Too long: must have at most 1048576 bytes');
  if (obj.type === 'kubernetes.io/dockerconfigjson' && !data['.dockerconfigjson']) fe.required('data[.dockerconfigjson]');
}

/** Validate one container of a pod template at `path`. */
export function validateContainer(c: Obj, path: string, fe: FieldErrors, volumeNames: Set<string>): void {
  if (!c.name) fe.required(`${path}.name`);
  else if (!(c.name.length <= 63 && DNS1123_LABEL.test(c.name))) fe.invalid(`${path}.name`, c.name, dns1123LabelMsg());
  if (!c.image || !String(c.image).trim()) fe.required(`${path}.image`);
  if (c.command !== undefined && (!Array.isArray(c.command) || c.command.some((x: unknown) => typeof x !== 'string'))) fe.invalid(`${path}.command`, c.command, 'must be a list of strings');
  const portNames = new Set<string>();
  (c.ports ?? []).forEach((p: Obj, i: number) => {
    if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) fe.invalid(`${path}.ports[${i}].containerPort`, p.containerPort, 'must be between 1 and 65535, inclusive');
    if (p.name !== undefined) {
      if (!/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(p.name) || !/[a-z]/.test(p.name)) fe.invalid(`${path}.ports[${i}].name`, p.name, 'must be an IANA_SVC_NAME');
      if (portNames.has(p.name)) fe.duplicate(`${path}.ports[${i}].name`, p.name);
      portNames.add(p.name);
    }
    if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol)) fe.unsupported(`${path}.ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']);
  });
  (c.env ?? []).forEach((e: Obj, i: number) => {
    if (!e.name) fe.required(`${path}.env[${i}].name`);
    else if (!ENV_NAME.test(e.name)) fe.invalid(`${path}.env[${i}].name`, e.name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit");
    if (e.value !== undefined && typeof e.value !== 'string') fe.invalid(`${path}.env[${i}].value`, e.value, 'must be a string');
  });
  (c.envFrom ?? []).forEach((e: Obj, i: number) => {
    const ref = e.secretRef ?? e.configMapRef;
    if (!ref) fe.required(`${path}.envFrom[${i}]`, 'must specify one of: `configMapRef` or `secretRef`');
    else if (!ref.name) fe.required(`${path}.envFrom[${i}].${e.secretRef ? 'secretRef' : 'configMapRef'}.name`);
    else if (!DNS1123_SUBDOMAIN.test(ref.name)) fe.invalid(`${path}.envFrom[${i}].secretRef.name`, ref.name, dnsSubdomainMsg());
  });
  const limits: Obj = c.resources?.limits ?? {};
  const requests: Obj = c.resources?.requests ?? {};
  for (const [r, q] of Object.entries({ ...limits, ...requests })) {
    if (!QUANTITY.test(String(q))) fe.invalid(`${path}.resources`, q, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    void r;
  }
  for (const r of new Set([...Object.keys(limits), ...Object.keys(requests)])) {
    if (!r.includes('/') || r.startsWith('kubernetes.io/')) continue; // native resources
    const lim = limits[r];
    const req = requests[r];
    if (req !== undefined && lim === undefined) fe.required(`${path}.resources.limits`, `Limit must be set for non overcommitable resources`);
    else if (req !== undefined && String(req) !== String(lim)) fe.invalid(`${path}.resources.requests`, req, `must be equal to ${r} limit of ${lim}`);
    if (lim !== undefined && !/^\d+$/.test(String(lim))) fe.invalid(`${path}.resources.limits[${r}]`, lim, 'must be an integer');
  }
  const probe = c.readinessProbe;
  if (probe?.httpGet) {
    const port = probe.httpGet.port;
    if (typeof port === 'number') {
      if (port < 1 || port > 65535) fe.invalid(`${path}.readinessProbe.httpGet.port`, port, 'must be between 1 and 65535, inclusive');
    } else if (typeof port === 'string') {
      if (!portNames.has(port) && !/^\d+$/.test(port)) fe.invalid(`${path}.readinessProbe.httpGet.port`, port, 'must contain at least one letter or number (a-z, 0-9)');
    } else fe.required(`${path}.readinessProbe.httpGet.port`);
    for (const f of ['periodSeconds', 'timeoutSeconds', 'failureThreshold'])
      if (probe[f] !== undefined && (!Number.isInteger(probe[f]) || probe[f] < 0)) fe.invalid(`${path}.readinessProbe.${f}`, probe[f], 'must be greater than or equal to 0');
  }
  (c.volumeMounts ?? []).forEach((vm: Obj, i: number) => {
    if (!vm.name) fe.required(`${path}.volumeMounts[${i}].name`);
    else if (!volumeNames.has(vm.name)) fe.notFound(`${path}.volumeMounts[${i}].name`, vm.name);
    if (!vm.mountPath) fe.required(`${path}.volumeMounts[${i}].mountPath`);
  });
}

/** Validate a batch/v1 Job (backoffLimit, pod template, restartPolicy, volumes, containers, pull secrets, tolerations). */
export function validateJob(obj: Obj, fe: FieldErrors, name: string): void {
  const spec: Obj | undefined = obj.spec;
  if (!spec) return fe.required('spec');
  if (spec.backoffLimit !== undefined && (!Number.isInteger(spec.backoffLimit) || spec.backoffLimit < 0)) fe.invalid('spec.backoffLimit', spec.backoffLimit, 'must be greater than or equal to 0');
  const tpl: Obj | undefined = spec.template;
  if (!tpl?.spec) return fe.required('spec.template.spec');
  validateLabels(fe, 'spec.template.metadata.labels', tpl.metadata?.labels);
  // The controller labels pods with the Job name: it must be a valid label value.
  if (name && name.length > 63) fe.invalid('spec.template.labels', name, 'must be no more than 63 characters');
  const ps: Obj = tpl.spec;
  if (ps.restartPolicy === undefined) fe.required('spec.template.spec.restartPolicy', 'valid values: "OnFailure", "Never"');
  else if (!['OnFailure', 'Never'].includes(ps.restartPolicy)) fe.unsupported('spec.template.spec.restartPolicy', ps.restartPolicy, ['OnFailure', 'Never']);
  const volumeNames = new Set<string>();
  (ps.volumes ?? []).forEach((v: Obj, i: number) => {
    if (!v.name) fe.required(`spec.template.spec.volumes[${i}].name`);
    else if (!DNS1123_LABEL.test(v.name)) fe.invalid(`spec.template.spec.volumes[${i}].name`, v.name, dns1123LabelMsg());
    else if (volumeNames.has(v.name)) fe.duplicate(`spec.template.spec.volumes[${i}].name`, v.name);
    volumeNames.add(v.name);
    if (v.emptyDir?.sizeLimit !== undefined && !QUANTITY.test(String(v.emptyDir.sizeLimit))) fe.invalid(`spec.template.spec.volumes[${i}].emptyDir.sizeLimit`, v.emptyDir.sizeLimit, 'quantities must match the regular expression');
    if (v.emptyDir?.medium !== undefined && !['', 'Memory', 'HugePages'].includes(v.emptyDir.medium)) fe.unsupported(`spec.template.spec.volumes[${i}].emptyDir.medium`, v.emptyDir.medium, ['', 'Memory', 'HugePages']);
  });
  const containers: Obj[] = ps.containers ?? [];
  if (!containers.length) fe.required('spec.template.spec.containers');
  const names = new Set<string>();
  containers.forEach((c, i) => {
    validateContainer(c, `spec.template.spec.containers[${i}]`, fe, volumeNames);
    if (c.name && names.has(c.name)) fe.duplicate(`spec.template.spec.containers[${i}].name`, c.name);
    names.add(c.name);
  });
  (ps.imagePullSecrets ?? []).forEach((s: Obj, i: number) => {
    if (!s.name) fe.required(`spec.template.spec.imagePullSecrets[${i}].name`);
  });
  (ps.tolerations ?? []).forEach((t: Obj, i: number) => {
    if (t.operator !== undefined && !['Exists', 'Equal'].includes(t.operator)) fe.unsupported(`spec.template.spec.tolerations[${i}].operator`, t.operator, ['Equal', 'Exists']);
    if (t.effect !== undefined && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(t.effect)) fe.unsupported(`spec.template.spec.tolerations[${i}].effect`, t.effect, ['NoSchedule', 'PreferNoSchedule', 'NoExecute']);
  });
}

/** Default a created Job like the API server: selector and pod template labels from its uid and name, backoffLimit 6, status. */
export function defaultJob(job: Obj): void {
  const uid = job.metadata.uid;
  const name = job.metadata.name;
  job.spec.backoffLimit ??= 6;
  job.spec.completions ??= 1;
  job.spec.parallelism ??= 1;
  job.spec.completionMode ??= 'NonIndexed';
  job.spec.suspend ??= false;
  job.spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
  const tm: Obj = (job.spec.template.metadata ??= {});
  tm.labels = { ...(tm.labels ?? {}), 'controller-uid': uid, 'batch.kubernetes.io/controller-uid': uid, 'job-name': name, 'batch.kubernetes.io/job-name': name };
  job.metadata.labels ??= { 'controller-uid': uid, 'job-name': name };
  job.status = { active: 0, ready: 0, failed: 0, succeeded: 0, startTime: new Date().toISOString(), uncountedTerminatedPods: {} };
}

/** Validate and default a Service (type, ports, targetPort, nodePorts not in `usedNodePorts`, selector). */
export function validateService(obj: Obj, fe: FieldErrors, usedNodePorts: Set<number>): void {
  const spec: Obj = (obj.spec ??= {});
  spec.type ??= 'ClusterIP';
  if (!['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(spec.type)) fe.unsupported('spec.type', spec.type, ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort']);
  const ports: Obj[] = spec.ports ?? [];
  if (!ports.length && spec.type !== 'ExternalName') fe.required('spec.ports');
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) fe.invalid(`spec.ports[${i}].port`, p.port, 'must be between 1 and 65535, inclusive');
    if (ports.length > 1 && !p.name) fe.required(`spec.ports[${i}].name`);
    if (p.name) {
      if (seen.has(p.name)) fe.duplicate(`spec.ports[${i}].name`, p.name);
      seen.add(p.name);
    }
    p.protocol ??= 'TCP';
    if (!['TCP', 'UDP', 'SCTP'].includes(p.protocol)) fe.unsupported(`spec.ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']);
    if (p.targetPort === undefined) p.targetPort = p.port;
    else if (typeof p.targetPort === 'number' && (p.targetPort < 1 || p.targetPort > 65535)) fe.invalid(`spec.ports[${i}].targetPort`, p.targetPort, 'must be between 1 and 65535, inclusive');
    if (p.nodePort !== undefined) {
      if (spec.type === 'ClusterIP') fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'may not be used when `type` is \'ClusterIP\'');
      else if (p.nodePort < 30000 || p.nodePort > 32767) fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is not in the valid range. The range of valid ports is 30000-32767');
      else if (usedNodePorts.has(p.nodePort)) fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is already allocated');
    }
  });
  validateLabels(fe, 'spec.selector', spec.selector);
}
