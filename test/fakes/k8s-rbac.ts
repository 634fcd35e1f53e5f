/**
 * RBAC of the fake Kubernetes API server for the port-forward upgrade (used by test/fakes/k8s-api-server.ts,
 * one call in its WebSocket upgrade handler).
 *
 * What the real API server does, and this module reproduces:
 * - Authorization maps the HTTP method of a request to an RBAC verb (GET → `get`, POST → `create`;
 *   https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb).
 *   A WebSocket port-forward (what @kubernetes/client-node 1.4.0 `PortForward` opens, and kubectl since 1.31)
 *   is an HTTP GET upgrade, so it needs `get` on `pods/portforward`; the SPDY one is a POST (`create`).
 *   kubernetes/kubernetes#78741 ("port-forward over websocket requires get, not create"); k9s fixed its
 *   pre-check the same way (derailed/k9s#3322, #4147): a Role with `create` only gets 403 on the upgrade.
 * - From Kubernetes 1.35 the WebSocket upgrade of exec/attach/portforward is also authorized as `create`
 *   (feature AuthorizePodWebsocketUpgradeCreatePermission), so such a cluster needs both verbs.
 * - The denial is a 403 `kind: Status`, reason Forbidden, message
 *   `pods "<pod>" is forbidden: User "<user>" cannot <verb> resource "pods/portforward" in API group "" in the namespace "<ns>"`.
 *
 * Roles are keyed by the bearer token of the request (the fake has one user per token). No role set for a
 * token = every verb allowed (the fake's default, a cluster-admin-like user).
 */
import type { IncomingMessage } from 'node:http';

interface PortForwardRole {
  verbs: Set<string>;
  /** Kubernetes ≥ 1.35: the WebSocket upgrade also needs `create`. */
  minor135: boolean;
}

const roles = new Map<string, PortForwardRole>();

/**
 * Give the user of `token` a Role whose only `pods/portforward` verbs are `verbs` (undefined: remove the Role,
 * all allowed again). `minor135`: behave as a Kubernetes 1.35 API server (both `get` and `create` checked).
 */
export function setPortForwardRole(token: string, verbs: string[] | undefined, opts: { minor135?: boolean } = {}): void {
  if (!verbs) roles.delete(token);
  else roles.set(token, { verbs: new Set(verbs), minor135: opts.minor135 ?? false });
}

/**
 * The Forbidden message for a WebSocket port-forward upgrade the caller's Role does not allow, or undefined when
 * it is allowed.
 */
export function portForwardForbidden(req: IncomingMessage, namespace: string, pod: string): string | undefined {
  const token = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
  const role = token ? roles.get(token) : undefined;
  if (!role) return undefined;
  const needed = [(req.method ?? 'GET') === 'GET' ? 'get' : 'create', ...(role.minor135 ? ['create'] : [])];
  const missing = needed.find((v) => !role.verbs.has(v));
  if (!missing) return undefined;
  return `pods "${pod}" is forbidden: User "fake-user" cannot ${missing} resource "pods/portforward" in API group "" in the namespace "${namespace}"`;
}
