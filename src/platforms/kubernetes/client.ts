/**
 * Loading a kubeconfig and turning Kubernetes API failures into tao-infer errors (contract §8
 * kubernetes). Imports `@kubernetes/client-node`, so only the adapter and the port-forward process
 * import this module (never the CLI's cheap paths).
 */
import { ApiException, BatchV1Api, CoreV1Api, KubeConfig, ServerConfiguration, createConfiguration, type Middleware } from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { InvalidInputError, PlatformError, PlatformUnavailableError } from '../../errors.js';
import { FILE_LIMITS, checkRegularFileSync } from '../../util/input-file.js';

/** Every API call is aborted after this long (a blackholed API server must not hang the CLI). */
export const API_TIMEOUT_MS = 30_000;

/** Service-account token mounted into pods; its presence means "running inside a cluster". */
export const SERVICEACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Where the kubeconfig came from: files (absolute paths, merged in order) or the pod's service account. */
export interface KubeSource {
  /** Absolute kubeconfig paths joined with ':' (the platform's path delimiter); undefined for in-cluster. */
  kubeconfig?: string;
  inCluster: boolean;
  /** Context actually used (the kubeconfig's current-context when none was asked for). */
  context: string;
}

export interface KubeConnection {
  kc: KubeConfig;
  core: CoreV1Api;
  batch: BatchV1Api;
  source: KubeSource;
  /** API server URL (for messages and --dry-run). */
  server: string;
}

export interface LoadKubeOptions {
  /** Explicit kubeconfig path(s) (`--kubeconfig`, or `$KUBECONFIG` via the option's env fallback), ':'-joined. */
  kubeconfig?: string;
  /** Context name (`--context` / TAO_K8S_CONTEXT). */
  context?: string;
  /** Force the in-cluster service account (stored entries that were started in a pod). */
  inCluster?: boolean;
  /** Environment consulted for KUBECONFIG and HOME. */
  env: NodeJS.ProcessEnv;
  /** Per-request timeout in ms (default API_TIMEOUT_MS). */
  timeoutMs?: number;
}

/**
 * Load several kubeconfig files into `kc` the way kubectl merges `$KUBECONFIG` (client-go clientcmd loader.go:
 * "the first file to set a particular map key wins", also for current-context). client-node's own
 * `mergeConfig` throws "Duplicate cluster/user/context" instead, which breaks common setups (e.g. two cloud CLIs
 * each writing a user of the same name). Each file is loaded on its own first, so relative certificate paths
 * are resolved against that file's directory.
 * @throws Error from client-node when a file cannot be parsed
 */
export function mergeKubeconfigs(kc: KubeConfig, files: string[]): void {
  const clusters: KubeConfig['clusters'] = [];
  const users: KubeConfig['users'] = [];
  const contexts: KubeConfig['contexts'] = [];
  let currentContext = '';
  for (const f of files) {
    const one = new KubeConfig();
    one.loadFromFile(f);
    for (const c of one.clusters) if (!clusters.some((x) => x.name === c.name)) clusters.push(c);
    for (const u of one.users) if (!users.some((x) => x.name === u.name)) users.push(u);
    for (const c of one.contexts) if (!contexts.some((x) => x.name === c.name)) contexts.push(c);
    if (!currentContext && one.currentContext) currentContext = one.currentContext;
  }
  kc.loadFromOptions({ clusters, users, contexts, currentContext });
}

/**
 * Load a kubeconfig the way kubectl finds it: the given file list, else `$KUBECONFIG` (files merged in
 * order), else `~/.kube/config`, else the in-cluster service account. Unlike the client's
 * `loadFromDefault`, it never falls back to an unauthenticated `http://localhost:8080`.
 * @throws PlatformUnavailableError when no kubeconfig exists, a file cannot be parsed, or it has no usable cluster;
 *   InvalidInputError('--context') when the asked context is not in the kubeconfig.
 */
export function loadKube(opts: LoadKubeOptions): KubeConnection {
  const kc = new KubeConfig();
  let source: Omit<KubeSource, 'context'>;
  const list = opts.kubeconfig ?? (opts.inCluster ? undefined : opts.env['KUBECONFIG']);
  const files = (list ?? '')
    .split(delimiter)
    .filter((f) => f !== '')
    .map((f) => resolve(f));
  const home = opts.env['HOME'] || homedir();
  if (!opts.inCluster && files.length === 0 && home && existsSync(join(home, '.kube', 'config'))) files.push(join(home, '.kube', 'config'));
  // Regular files of at most 4 MiB only (a FIFO or a device would hang or exhaust memory): exit 2 otherwise.
  for (const f of files) if (existsSync(f)) checkRegularFileSync(f, '--kubeconfig', FILE_LIMITS.config);
  try {
    if (files.length > 0) {
      const existing = files.filter((f) => existsSync(f));
      if (existing.length === 0) {
        throw new PlatformUnavailableError('kubernetes', `kubeconfig ${files.join(delimiter)} does not exist`, {
          hint: 'Pass --kubeconfig <file> or set KUBECONFIG to an existing kubeconfig (e.g. from `aws eks update-kubeconfig`, `gcloud container clusters get-credentials`, `az aks get-credentials`).',
        });
      }
      mergeKubeconfigs(kc, existing);
      source = { kubeconfig: existing.join(delimiter), inCluster: false };
    } else if (existsSync(SERVICEACCOUNT_TOKEN)) {
      kc.loadFromCluster();
      source = { inCluster: true };
    } else {
      throw new PlatformUnavailableError('kubernetes', 'no kubeconfig found (looked at --kubeconfig, $KUBECONFIG, ~/.kube/config and the in-cluster service account)', {
        hint: 'Pass --kubeconfig <file> or set KUBECONFIG (e.g. after `aws eks update-kubeconfig`, `gcloud container clusters get-credentials` or `az aks get-credentials`).',
      });
    }
  } catch (e) {
    if (e instanceof PlatformUnavailableError) throw e;
    throw new PlatformUnavailableError('kubernetes', `cannot load kubeconfig ${files.join(delimiter) || '(in-cluster)'}: ${(e as Error).message.split('\n')[0]}`, {
      hint: 'Check the file with `kubectl config view`.',
      cause: e,
    });
  }
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new InvalidInputError('--context', `context '${opts.context}' is not in the kubeconfig`, {
        hint: known.length ? `Known contexts: ${known.join(', ')} (see \`kubectl config get-contexts\`).` : 'The kubeconfig defines no contexts.',
      });
    }
    kc.setCurrentContext(opts.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new PlatformUnavailableError('kubernetes', `the kubeconfig has no cluster for context '${kc.getCurrentContext() || '(none)'}'`, {
      hint: 'Choose a context with --context or TAO_K8S_CONTEXT (see `kubectl config get-contexts`).',
    });
  }
  // Like kc.makeApiClient, plus a per-request timeout (the client sets none).
  const timeout: Middleware = {
    pre: async (ctx) => {
      ctx.setSignal(AbortSignal.timeout(opts.timeoutMs ?? API_TIMEOUT_MS));
      return ctx;
    },
    post: async (res) => res,
  };
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [timeout],
  });
  return {
    kc,
    core: new CoreV1Api(config),
    batch: new BatchV1Api(config),
    source: { ...source, context: kc.getCurrentContext() },
    server: cluster.server,
  };
}

/** Kubernetes Status fields parsed from an ApiException body (the body is JSON text). */
export interface ApiStatus {
  code: number;
  reason?: string;
  message?: string;
}

/** The HTTP status and Status object of an API failure, or undefined when it is not an API answer (network error). */
export function apiStatus(e: unknown): ApiStatus | undefined {
  if (!(e instanceof ApiException)) return undefined;
  const out: ApiStatus = { code: e.code };
  let body: unknown = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      if (body) out.message = (body as string).slice(0, 500);
      return out;
    }
  }
  if (body && typeof body === 'object') {
    const b = body as { reason?: unknown; message?: unknown };
    if (typeof b.reason === 'string') out.reason = b.reason;
    if (typeof b.message === 'string') out.message = b.message;
  }
  return out;
}

/** True when the API said 404 NotFound. */
export function isNotFound(e: unknown): boolean {
  return apiStatus(e)?.code === 404;
}

/**
 * Turn any failure of a client call into a tao-infer error: unreachable server or 401/403 →
 * PlatformUnavailableError with a fix; other API answers → PlatformError('kubernetes_api_error')
 * quoting the API's Status message. `scrub` removes secret values from text taken from the server.
 */
export function toPlatformError(e: unknown, what: string, conn: Pick<KubeConnection, 'server' | 'source'>, scrub: (s: string) => string = (s) => s): Error {
  if (e instanceof PlatformError || e instanceof InvalidInputError) return e;
  const st = apiStatus(e);
  if (!st) {
    const aborted = e instanceof Error && (e.name === 'AbortError' || /aborted/i.test(e.message));
    const msg = aborted ? 'no answer within the request timeout' : e instanceof Error ? e.message.split('\n')[0]! : String(e);
    return new PlatformUnavailableError('kubernetes', `cannot reach the Kubernetes API server ${conn.server} (${what}): ${scrub(msg)}`, {
      hint: `Check that the cluster of context '${conn.source.context}' is up and reachable (\`kubectl --context ${conn.source.context} get nodes\`).`,
      cause: e,
    });
  }
  const detail = scrub(st.message ?? st.reason ?? 'no details');
  if (st.code === 401) {
    return new PlatformUnavailableError('kubernetes', `the API server rejected the credentials of context '${conn.source.context}' (${what}): ${detail}`, {
      hint: 'Refresh the kubeconfig credentials (e.g. re-run `aws eks update-kubeconfig` / `gcloud container clusters get-credentials` / `az aks get-credentials`).',
    });
  }
  if (st.code === 403) {
    return new PlatformUnavailableError('kubernetes', `not allowed to ${what}: ${detail}`, {
      hint: 'Ask a cluster admin for RBAC permission (Jobs, Services, Secrets, Pods, pods/log, get (1.35+: and create) on pods/portforward in the namespace; list Nodes for the capacity check).',
    });
  }
  return new PlatformError('kubernetes_api_error', `Kubernetes API refused to ${what} (HTTP ${st.code}${st.reason ? ` ${st.reason}` : ''}): ${detail}`);
}
