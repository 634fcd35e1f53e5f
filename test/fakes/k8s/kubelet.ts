/**
 * The kubelet of the fake Kubernetes API server (see ../k8s-api-server.ts for the documented behaviour): image pull
 * with pull secrets, CreateContainerConfigError for a missing envFrom Secret, the container command really running on
 * this host (PATH led by the stand-in's bin/, env = container env + decoded Secret, STANDIN_HOST = the pod IP, the
 * container port privately translated with STANDIN_PORT), the readiness probe, container states and exit codes
 * (OOMKilled 137), pod logs, graceful termination, and the portforward WebSocket.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import type { WebSocket } from 'ws';
import { ApiError, type ClusterState, type Obj, type PodRuntime } from './state.js';

/** The stand-in microservice's executables (cosmos-rl-inference-microservice, ...), first on every container's PATH. */
export const STANDIN_BIN = join(resolve(import.meta.dirname, '..', '..', '..'), 'test', 'fixtures', 'standin', 'bin');

export class Kubelet {
  constructor(private readonly c: ClusterState) {}

  /** One kubelet step for a scheduled pod: image pull (ErrImagePull → ImagePullBackOff), envFrom secrets, start. */
  step(pod: Obj, rt: PodRuntime): void {
    const now = Date.now();
    switch (rt.stage) {
      case 'creating': {
        if (now - rt.since < 300) return;
        const pullError = this.pullError(pod, rt);
        if (pullError) {
          this.c.containerStatus(pod, { waiting: { reason: 'ErrImagePull', message: pullError } });
          rt.stage = 'pullFailed';
          rt.since = now;
          this.c.touch(pod);
          return;
        }
        rt.stage = 'configError';
        rt.since = now;
        return this.step(pod, rt);
      }
      case 'pullFailed': {
        const st = pod.status.containerStatuses[0].state.waiting;
        const period = st.reason === 'ErrImagePull' ? 800 : 3000;
        if (now - rt.since < period) return;
        const image = pod.spec.containers[0].image;
        if (st.reason === 'ErrImagePull') this.c.containerStatus(pod, { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` } });
        else this.c.containerStatus(pod, { waiting: { reason: 'ErrImagePull', message: this.pullError(pod, rt) ?? 'pull failed' } });
        rt.since = now;
        this.c.touch(pod);
        return;
      }
      case 'configError': {
        const missing = this.missingSecret(pod);
        if (missing) {
          const cur = pod.status.containerStatuses?.[0]?.state?.waiting;
          if (cur?.reason !== 'CreateContainerConfigError') {
            this.c.containerStatus(pod, { waiting: { reason: 'CreateContainerConfigError', message: `secret "${missing}" not found` } });
            this.c.touch(pod);
          }
          return;
        }
        this.startContainer(pod, rt);
        return;
      }
      default:
        return;
    }
  }


  private pullError(pod: Obj, rt: PodRuntime): string | undefined {
    const image: string = pod.spec.containers[0].image;
    if (rt.behaviour.imagePullError) return rt.behaviour.imagePullError;
    const registry = image.includes('/') && /[.:]/.test(image.split('/')[0]!) ? image.split('/')[0]! : 'docker.io';
    if (!this.c.privateRegistries.includes(registry)) return undefined;
    const ns = pod.metadata.namespace;
    for (const ref of pod.spec.imagePullSecrets ?? []) {
      const s = this.c.store.get(`secrets/${ns}/${ref.name}`);
      if (!s || s.type !== 'kubernetes.io/dockerconfigjson') continue;
      try {
        const cfg = JSON.parse(Buffer.from(s.data['.dockerconfigjson'], 'base64').toString('utf8'));
        if (cfg.auths?.[registry]) return undefined;
      } catch {
        /* unusable */
      }
    }
    return `failed to pull and unpack image "${image}": failed to resolve reference "${image}": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://${registry}/proxy_auth?scope=repository%3A${image.split('/').slice(1).join('/').split(':')[0]}%3Apull: 401 Unauthorized`;
  }

  private missingSecret(pod: Obj): string | undefined {
    const ns = pod.metadata.namespace;
    for (const c of pod.spec.containers as Obj[]) {
      for (const ef of c.envFrom ?? []) {
        if (ef.secretRef && !ef.secretRef.optional && !this.c.store.has(`secrets/${ns}/${ef.secretRef.name}`)) return ef.secretRef.name;
      }
    }
    return undefined;
  }

  private startContainer(pod: Obj, rt: PodRuntime): void {
    const ns = pod.metadata.namespace;
    const c: Obj = pod.spec.containers[0];
    const env: Record<string, string> = {
      PATH: `${STANDIN_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOSTNAME: pod.metadata.name,
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
      KUBERNETES_SERVICE_PORT: '443',
    };
    for (const ef of c.envFrom ?? []) {
      const s = ef.secretRef ? this.c.store.get(`secrets/${ns}/${ef.secretRef.name}`) : undefined;
      for (const [k, v] of Object.entries((s?.data ?? {}) as Record<string, string>)) env[`${ef.prefix ?? ''}${k}`] = Buffer.from(v, 'base64').toString('utf8');
    }
    for (const e of c.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value;
    Object.assign(env, rt.behaviour.env ?? {});
    env.STANDIN_HOST = pod.status.podIP;
    const port = c.ports?.[0]?.containerPort;
    if (port) {
      const hostPort = 20000 + Math.floor(Math.random() * 10000);
      rt.portMap.set(port, hostPort);
      env.STANDIN_PORT = String(hostPort);
    }
    this.c.podEnv.set(`${ns}/${pod.metadata.name}`, Object.keys(env).sort());
    rt.workdir = mkdtempSync(join(tmpdir(), 'fake-k8s-pod-'));
    env.HOME = rt.workdir;
    const argv: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    if (!argv.length) {
      this.c.containerStatus(pod, { waiting: { reason: 'RunContainerError', message: 'the fake needs an explicit command' } });
      return;
    }
    const proc = spawn(argv[0]!, argv.slice(1), { env, cwd: rt.workdir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    rt.proc = proc;
    rt.stage = 'running';
    const onData = (b: Buffer) => {
      const s = b.toString('utf8');
      rt.logs += s;
      for (const f of rt.followers) f.write(s);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    const startedAt = new Date().toISOString();
    pod.status.phase = 'Running';
    this.c.containerStatus(pod, { running: { startedAt } });
    this.c.touch(pod);
    if (rt.behaviour.oomKillAfterMs !== undefined) {
      setTimeout(() => {
        rt.oomKilled = true;
        this.c.killProc(rt, 'SIGKILL');
      }, rt.behaviour.oomKillAfterMs);
    }
    const probe = c.readinessProbe?.httpGet;
    if (probe) {
      const probePort = typeof probe.port === 'number' ? probe.port : Number(c.ports?.find((p: Obj) => p.name === probe.port)?.containerPort ?? probe.port);
      rt.probeTimer = setInterval(() => {
        const req = http.get({ host: pod.status.podIP, port: rt.portMap.get(probePort) ?? probePort, path: probe.path ?? '/', timeout: 1000 }, (res) => {
          res.resume();
          this.setReady(pod, rt, (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => this.setReady(pod, rt, false));
      }, 1000);
    } else this.setReady(pod, rt, true);
    proc.on('close', (code, signal) => {
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      rt.stage = 'terminated';
      const finishedAt = new Date().toISOString();
      let exitCode = code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1) : 1);
      let reason = exitCode === 0 ? 'Completed' : 'Error';
      if (rt.oomKilled) {
        reason = 'OOMKilled';
        exitCode = 137;
      }
      pod.status.phase = exitCode === 0 ? 'Succeeded' : 'Failed';
      this.c.containerStatus(pod, { terminated: { exitCode, reason, startedAt, finishedAt, containerID: `containerd://${randomBytes(32).toString('hex')}` } });
      this.c.setCondition(pod, 'Ready', 'False', 'PodCompleted');
      this.c.setCondition(pod, 'ContainersReady', 'False', 'PodCompleted');
      this.c.touch(pod);
      setTimeout(() => {
        for (const f of rt.followers) f.end();
        rt.followers.clear();
      }, 50);
    });
  }

  private setReady(pod: Obj, rt: PodRuntime, ready: boolean): void {
    if (rt.stage !== 'running' || pod.metadata.deletionTimestamp) return;
    const cs = pod.status.containerStatuses?.[0];
    if (!cs || cs.ready === ready) return;
    cs.ready = ready;
    this.c.setCondition(pod, 'Ready', ready ? 'True' : 'False', ready ? undefined : 'ContainersNotReady');
    this.c.setCondition(pod, 'ContainersReady', ready ? 'True' : 'False', ready ? undefined : 'ContainersNotReady');
    this.c.touch(pod);
  }

  /** Graceful pod deletion: deletionTimestamp, SIGTERM to the process group, SIGKILL after the grace period, then removal. */
  terminatePod(ns: string, name: string): void {
    const key = `pods/${ns}/${name}`;
    const pod = this.c.store.get(key);
    const rt = this.c.runtimes.get(`${ns}/${name}`);
    if (!pod) return;
    if (!pod.metadata.deletionTimestamp) {
      pod.metadata.deletionTimestamp = new Date().toISOString();
      pod.metadata.deletionGracePeriodSeconds = 30;
      pod.metadata.resourceVersion = String(++this.c.rv);
    }
    const remove = () => {
      this.c.store.delete(key);
      if (rt) {
        if (rt.probeTimer) clearInterval(rt.probeTimer);
        for (const f of rt.followers) f.end();
        rt.followers.clear();
        if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
      }
    };
    if (!rt || !rt.proc || rt.proc.exitCode !== null || rt.proc.signalCode !== null) {
      setTimeout(remove, 50);
      return;
    }
    if (rt.deleting) return;
    rt.deleting = true;
    this.c.killProc(rt, 'SIGTERM');
    const t = setTimeout(() => this.c.killProc(rt, 'SIGKILL'), this.c.graceMs);
    rt.proc.once('exit', () => {
      clearTimeout(t);
      setTimeout(remove, 50);
    });
  }

  /** GET .../pods/{name}/log: container, tailLines, follow until the container ends. */
  podLogs(ns: string, name: string, query: Record<string, string>, res: ServerResponse): void {
    const pod = this.c.store.get(`pods/${ns}/${name}`);
    if (!pod) throw new ApiError(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' });
    const containers: string[] = pod.spec.containers.map((c: Obj) => c.name);
    const container = query.container || (containers.length === 1 ? containers[0] : undefined);
    if (!container) throw new ApiError(400, 'BadRequest', `a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}]`);
    if (!containers.includes(container)) throw new ApiError(400, 'BadRequest', `container ${container} is not valid for pod ${name}`);
    const rt = this.c.runtimes.get(`${ns}/${name}`);
    if (!rt || !rt.proc) {
      const waiting = pod.status.containerStatuses?.[0]?.state?.waiting;
      const why =
        waiting?.reason === 'ImagePullBackOff' || waiting?.reason === 'ErrImagePull'
          ? 'trying and failing to pull image'
          : waiting?.reason === 'CreateContainerConfigError'
            ? 'CreateContainerConfigError'
            : 'ContainerCreating';
      throw new ApiError(400, 'BadRequest', `container "${container}" in pod "${name}" is waiting to start: ${why}`);
    }
    let text = rt.logs;
    if (query.tailLines !== undefined) {
      const n = Number(query.tailLines);
      if (!Number.isInteger(n) || n < 0) throw new ApiError(422, 'Invalid', `PodLogOptions "${name}" is invalid: tailLines: Invalid value: ${query.tailLines}: must be greater than or equal to 0`);
      const lines = text.split('\n');
      const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined;
      text = lines.slice(Math.max(0, lines.length - n)).join('\n') + (trailing !== undefined && lines.length ? '\n' : '');
      if (n === 0) text = '';
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
    res.write(text);
    const running = rt.proc.exitCode === null && rt.proc.signalCode === null;
    if ((query.follow === 'true' || query.follow === '1') && running) {
      rt.followers.add(res);
      res.on('close', () => rt.followers.delete(res));
    } else res.end();
  }

  /** Carry a portforward WebSocket (v4.channel.k8s.io: data channel 2i, error channel 2i+1 per port) to the pod. */
  portForward(ws: WebSocket, pod: Obj, ports: number[]): void {
    const ip: string = pod.status.podIP;
    const conns: net.Socket[] = [];
    ports.forEach((port, i) => {
      const portBytes = Buffer.alloc(2);
      portBytes.writeUInt16LE(port, 0);
      ws.send(Buffer.concat([Buffer.from([2 * i]), portBytes]));
      ws.send(Buffer.concat([Buffer.from([2 * i + 1]), portBytes]));
      const up = net.connect({ host: ip, port: this.c.podPort(pod.metadata.namespace, pod.metadata.name, port) });
      conns[i] = up;
      up.on('data', (d) => ws.send(Buffer.concat([Buffer.from([2 * i]), d])));
      up.on('error', (e) => {
        const msg = `error forwarding port ${port} to pod ${pod.metadata.uid}, uid : failed to execute portforward in network namespace: failed to connect to localhost:${port} inside namespace, IPv4: ${e.message}`;
        if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([2 * i + 1]), Buffer.from(msg)]));
        ws.close();
      });
      up.on('close', () => {
        if (ws.readyState === ws.OPEN) ws.close();
      });
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const buf = isBinary ? data : Buffer.from(String(data));
      if (buf.length < 1) return;
      const ch = buf[0]!;
      if (ch % 2 !== 0) return;
      const up = conns[ch / 2];
      if (up && buf.length > 1) up.write(buf.subarray(1));
    });
    ws.on('close', () => {
      for (const c of conns) c?.end();
    });
  }}
