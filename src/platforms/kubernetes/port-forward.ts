/**
 * Detached local port-forward for `--expose port-forward` (contract §8 kubernetes: "clusters without a
 * load balancer need NodePort or a port-forward"). Described in ./expose.ts and started by src/forwarder
 * (`process.execPath this-file ...flags --log-file F`); it outlives the CLI, its PID is recorded in the
 * registry entry (`forwarder_pid`) and `tao-infer stop` ends it by that PID.
 *
 * Listens on 127.0.0.1:<local-port> (and [::1] when available, like `kubectl port-forward` does for
 * localhost). Every accepted TCP connection opens one port-forward WebSocket to the pod through the
 * API server (`@kubernetes/client-node` PortForward: /api/v1/namespaces/{ns}/pods/{pod}/portforward).
 *
 * Usage: node port-forward.js --namespace NS --pod POD --port 8080 --local-port N [--context C]
 *        [--kubeconfig FILES] [--in-cluster] [--log-file F]
 * No secret is ever passed here; the kubeconfig is read from its file.
 *
 * Before listening it opens one port-forward WebSocket to the pod and closes it: the upgrade is an HTTP GET, which
 * RBAC authorizes as `get` on `pods/portforward` (kubernetes/kubernetes#78741; Kubernetes 1.35 also checks
 * `create`). A 401/403 there ends the process at once (exit 3) with a line naming the missing verb, so `start` and
 * `tunnel` fail with that reason instead of every request being refused while readiness waits out its timeout.
 *
 * It ends by itself once the pod is gone (checked every TAO_K8S_FORWARDER_CHECK_S seconds, default 30; an
 * API answer 404 for the pod), so a Job deleted with kubectl leaves no forwarder behind.
 */
import { PortForward } from '@kubernetes/client-node';
import { createServer, type Server, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { isNotFound, loadKube } from './client.js';

function stamp(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
}

/**
 * The explanation of a refused port-forward upgrade (ws: "Unexpected server response: 403"), naming the RBAC
 * verbs it needs; undefined for other failures.
 */
function refusedUpgrade(message: string, namespace: string): string | undefined {
  if (/\b403\b/.test(message))
    return (
      `forbidden (HTTP 403): the port-forward needs RBAC verb 'get' on pods/portforward in namespace ${namespace} ` +
      `(a WebSocket upgrade is an HTTP GET; Kubernetes 1.35+ also checks 'create'); a Role with only 'create' is not enough`
    );
  if (/\b401\b/.test(message)) return 'unauthorized (HTTP 401): the kubeconfig credentials were refused for the port-forward';
  return undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      namespace: { type: 'string' },
      pod: { type: 'string' },
      port: { type: 'string' },
      'local-port': { type: 'string' },
      context: { type: 'string' },
      kubeconfig: { type: 'string' },
      'in-cluster': { type: 'boolean' },
      // The file our output goes to (set by src/forwarder; it names this process as the job's forwarder).
      'log-file': { type: 'string' },
    },
  });
  const namespace = values.namespace;
  const pod = values.pod;
  const port = Number(values.port);
  const localPort = Number(values['local-port']);
  if (!namespace || !pod || !Number.isInteger(port) || !Number.isInteger(localPort)) {
    stamp('usage: port-forward.js --namespace NS --pod POD --port N --local-port N [--context C] [--kubeconfig F] [--in-cluster]');
    process.exit(2);
  }
  const opts: Parameters<typeof loadKube>[0] = { env: process.env };
  if (values.kubeconfig) opts.kubeconfig = values.kubeconfig;
  if (values.context) opts.context = values.context;
  if (values['in-cluster']) opts.inCluster = true;
  const conn = loadKube(opts);
  const forward = new PortForward(conn.kc);

  const onConnection = async (sock: Socket) => {
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    const errors = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const text = chunk.toString('utf8').trim();
        if (text) stamp(`pod ${pod}:${port} error for ${peer}: ${text}`);
        cb();
      },
    });
    sock.on('error', () => sock.destroy());
    try {
      const ws = (await forward.portForward(namespace, pod, [port], sock, errors, sock)) as unknown as {
        on(ev: 'close' | 'error', fn: (...a: unknown[]) => void): void;
        close(): void;
      };
      ws.on('close', () => sock.end());
      ws.on('error', (e) => {
        stamp(`websocket error for ${peer}: ${String((e as Error)?.message ?? e)}`);
        sock.destroy();
      });
      sock.on('close', () => ws.close());
    } catch (e) {
      const msg = String((e as Error)?.message ?? e);
      stamp(`port-forward to ${namespace}/${pod}:${port} failed for ${peer}: ${refusedUpgrade(msg, namespace) ?? msg}`);
      sock.destroy();
    }
  };

  // One upgrade before listening: a refused one (RBAC) ends this process with the reason at once.
  try {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const input = new PassThrough();
    const ws = (await forward.portForward(namespace, pod, [port], sink, sink, input)) as unknown as { close(): void };
    ws.close();
    input.end();
  } catch (e) {
    const msg = String((e as Error)?.message ?? e);
    const refused = refusedUpgrade(msg, namespace);
    if (refused) {
      stamp(`port-forward to ${namespace}/${pod}:${port} refused: ${refused}`);
      process.exit(3);
    }
    stamp(`port-forward check to ${namespace}/${pod}:${port} failed (${msg}); listening anyway`);
  }

  const servers: Server[] = [];
  const listen = (host: string) =>
    new Promise<void>((resolve, reject) => {
      const srv = createServer({ pauseOnConnect: false }, (s) => void onConnection(s));
      srv.once('error', reject);
      srv.listen({ host, port: localPort, exclusive: true }, () => {
        srv.removeListener('error', reject);
        srv.on('error', (e) => stamp(`listener ${host}: ${e.message}`));
        servers.push(srv);
        resolve();
      });
    });
  await listen('127.0.0.1');
  await listen('::1').catch(() => undefined);
  stamp(`forwarding localhost:${localPort} -> ${namespace}/${pod}:${port} (context ${conn.source.context})`);

  const checkS = Number(process.env['TAO_K8S_FORWARDER_CHECK_S'] ?? '30');
  const check = setInterval(
    () => {
      conn.core.readNamespacedPod({ name: pod, namespace }).then(
        () => undefined,
        (e: unknown) => {
          if (!isNotFound(e)) return;
          stamp(`pod ${namespace}/${pod} is gone; exiting`);
          shutdown();
        },
      );
    },
    Math.max(1, Number.isFinite(checkS) ? checkS : 30) * 1000,
  );
  const shutdown = () => {
    clearInterval(check);
    stamp('stopping');
    for (const s of servers) s.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGHUP', () => undefined);
}

main().catch((e) => {
  stamp(`port-forward failed: ${String((e as Error)?.message ?? e)}`);
  process.exit(1);
});
