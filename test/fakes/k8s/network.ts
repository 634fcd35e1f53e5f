/**
 * Services of the fake Kubernetes API server, standing in for kube-proxy and the cloud load balancer (see
 * ../k8s-api-server.ts for the documented behaviour): clusterIP, nodePorts (30000-32767) for NodePort/LoadBalancer,
 * a LoadBalancer ingress IP (its own loopback address) after a short delay unless withheld, and listeners on
 * <ingress ip>:<port> and <node InternalIP>:<nodePort> proxying to ready pods matching the selector (no ready
 * endpoint → connection refused, like kube-proxy's REJECT rule).
 */
import net from 'node:net';
import type { ClusterState, Obj } from './state.js';

export class Network {
  constructor(private readonly c: ClusterState) {}

  /** Allocate clusterIP and nodePorts, open the proxies and (LoadBalancer) provision the ingress of a new Service. */
  setUpService(svc: Obj, ns: string): void {
    const spec = svc.spec;
    spec.clusterIP = `10.96.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
    spec.clusterIPs = [spec.clusterIP];
    spec.sessionAffinity ??= 'None';
    svc.status = { loadBalancer: {} };
    const key = `${ns}/${svc.metadata.name}`;
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      for (const p of spec.ports) {
        if (p.nodePort === undefined) {
          let np: number;
          do np = 30000 + Math.floor(Math.random() * 2768);
          while (this.c.usedNodePorts.has(np));
          p.nodePort = np;
        }
        this.c.usedNodePorts.add(p.nodePort);
        for (const ip of this.c.nodeIPs.values()) this.listenProxy(key, ip, p.nodePort, ns, svc.metadata.name, p);
      }
      spec.externalTrafficPolicy ??= 'Cluster';
    }
    if (spec.type === 'LoadBalancer') {
      const lbIP = this.c.allocIP();
      this.c.lbIPs.set(key, lbIP);
      for (const p of spec.ports) this.listenProxy(key, lbIP, p.port, ns, svc.metadata.name, p);
      // The address must be usable: on Linux a program holding 0.0.0.0:<port> blocks every 127.x.y.z:<port>, and
      // traffic to the ingress would reach that program instead. Then the "cloud" never provisions the LB.
      let usable = true;
      for (const p of spec.ports) {
        const probe = net.createServer();
        probe.once('error', (e: NodeJS.ErrnoException) => {
          usable = false;
          console.warn(`fake k8s: LoadBalancer ${ns}/${svc.metadata.name} gets no ingress: ${lbIP}:${p.port} is unusable (${e.code}); another program holds 0.0.0.0:${p.port}?`);
        });
        probe.listen(p.port, lbIP, () => probe.close());
      }
      // The cloud load balancer gets its address after a short provisioning delay (never, while withheld).
      setTimeout(() => {
        const stored = this.c.store.get(`services/${ns}/${svc.metadata.name}`);
        if (!stored || stored.metadata.uid !== svc.metadata.uid || this.c.withholdIngress || !usable) return;
        stored.status.loadBalancer = { ingress: [{ ip: lbIP, ipMode: 'VIP' }] };
        this.c.touch(stored);
      }, this.c.lbDelayMs);
    }
  }

  private listenProxy(key: string, ip: string, port: number, ns: string, svcName: string, svcPort: Obj): void {
    const list = this.c.proxies.get(key) ?? [];
    list.push({ ip, port, ns, svcName, svcPort });
    this.c.proxies.set(key, list);
    this.syncProxies();
  }

  /**
   * kube-proxy semantics: a Service address with no ready endpoint rejects connections (ECONNREFUSED, like the
   * REJECT rule kube-proxy installs), so its listener is open only while the Service has a ready pod.
   */
  syncProxies(): void {
    for (const list of this.c.proxies.values()) {
      for (const l of list) {
        const svc = this.c.store.get(`services/${l.ns}/${l.svcName}`);
        const has = !!svc && !!this.endpointFor(l.ns, svc, l.svcPort);
        if (has && !l.server) {
          const srv = net.createServer((client) => {
            client.on('error', () => client.destroy());
            const cur = this.c.store.get(`services/${l.ns}/${l.svcName}`);
            const ep = cur ? this.endpointFor(l.ns, cur, l.svcPort) : undefined;
            if (!ep) {
              client.destroy();
              return;
            }
            const up = net.connect({ host: ep.ip, port: ep.port });
            up.on('error', () => client.destroy());
            client.on('close', () => up.destroy());
            up.on('close', () => client.destroy());
            client.pipe(up);
            up.pipe(client);
          });
          srv.on('error', (e: NodeJS.ErrnoException) => {
            // e.g. another program holds 0.0.0.0:<port>, which on Linux blocks every 127.x.y.z:<port>.
            console.warn(`fake k8s: cannot listen on ${l.ip}:${l.port} for Service ${l.ns}/${l.svcName}: ${e.code ?? e.message}`);
          });
          srv.listen(l.port, l.ip);
          l.server = srv;
        } else if (!has && l.server) {
          l.server.close();
          delete l.server;
        }
      }
    }
  }

  /** Close and forget the listeners of Service `ns/name`. */
  closeProxies(key: string): void {
    for (const l of this.c.proxies.get(key) ?? []) l.server?.close();
    this.c.proxies.delete(key);
  }

  private rr = 0;
  /** A ready, non-terminating pod selected by the Service, and the port to reach on it. */
  private endpointFor(ns: string, svc: Obj, svcPort: Obj): { ip: string; port: number } | undefined {
    const sel: Obj = svc.spec.selector ?? {};
    if (!Object.keys(sel).length) return undefined;
    const ready = this.c.objects('pods', ns).filter(
      (p) =>
        Object.entries(sel).every(([k, v]) => p.metadata.labels?.[k] === v) &&
        !p.metadata.deletionTimestamp &&
        p.status?.phase === 'Running' &&
        p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True'),
    );
    if (!ready.length) return undefined;
    const pod = ready[this.rr++ % ready.length]!;
    let port = svcPort.targetPort;
    if (typeof port === 'string') {
      const named = pod.spec.containers.flatMap((c: Obj) => c.ports ?? []).find((p: Obj) => p.name === port);
      if (!named) return undefined;
      port = named.containerPort;
    }
    return { ip: pod.status.podIP, port: this.c.podPort(ns, pod.metadata.name, port) };
  }
}
