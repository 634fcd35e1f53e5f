/**
 * Detached SSH tunnel forwarder of the slurm platform (contract §5 "slurm ... through an SSH local
 * forward", §8 slurm). Described in `./forward.ts`; started, stopped and restarted by src/forwarder.
 *
 *   node tunnel.js --job-id <job_id> --slurm-job-id <id> --user U --host H --port P
 *                  [--identity-file F] [--known-hosts K] --node N --remote-port 8080
 *                  --listen-host 127.0.0.1 --listen-port <host_port> [--log-file <its log>]
 *
 * It connects to the login node first (exit 1 with the reason in its log when that fails), then
 * listens on listen-host:listen-port and forwards each accepted connection with ssh2 `forwardOut`
 * to node:remote-port through the login node (like `ssh -N -L`). The SSH connection is re-opened on
 * demand when it drops. Every 30 s it asks `squeue` about the Slurm job and exits once the job has
 * ended, so a job that ended on its own (time limit) does not leave a listener behind.
 * Arguments hold no secrets (paths and names only).
 */
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { connectSsh, type SshSession, type SshTarget } from './ssh.js';

const TERMINAL = /^(COMPLETED|FAILED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|BOOT_FAIL|CANCELLED|PREEMPTED|REVOKED|DEADLINE|SPECIAL_EXIT)/;

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      'job-id': { type: 'string' },
      'slurm-job-id': { type: 'string' },
      user: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'identity-file': { type: 'string' },
      'known-hosts': { type: 'string' },
      node: { type: 'string' },
      'remote-port': { type: 'string' },
      'listen-host': { type: 'string' },
      'listen-port': { type: 'string' },
      'watch-interval': { type: 'string' },
      // The file our output goes to (set by src/forwarder; it names this process as the job's forwarder).
      'log-file': { type: 'string' },
    },
  });
  for (const k of ['job-id', 'user', 'host', 'port', 'node', 'remote-port', 'listen-port'] as const) {
    if (!a[k]) throw new Error(`missing --${k}`);
  }
  const target: SshTarget = { user: a.user!, host: a.host!, port: Number(a.port) };
  if (a['identity-file']) target.identityFile = a['identity-file'];
  if (a['known-hosts']) target.knownHosts = a['known-hosts'];
  const node = a.node!;
  const remotePort = Number(a['remote-port']);
  const listenHost = a['listen-host'] ?? '127.0.0.1';
  const listenPort = Number(a['listen-port']);
  const watchMs = Number(a['watch-interval'] ?? 30) * 1000;

  let session: SshSession | undefined;
  let connecting: Promise<SshSession> | undefined;
  const getSession = (): Promise<SshSession> => {
    if (session) return Promise.resolve(session);
    connecting ??= connectSsh(target, process.env, { keepaliveMs: 15_000 })
      .then((s) => {
        session = s;
        s.client.on('close', () => {
          if (session === s) {
            session = undefined;
            log('ssh connection closed; it is re-opened on the next request');
          }
        });
        s.client.on('error', (e) => log(`ssh error: ${e.message}`));
        log(`ssh connected to ${target.user}@${target.host}:${target.port}`);
        return s;
      })
      .finally(() => {
        connecting = undefined;
      });
    return connecting;
  };

  // Connect before listening: a forwarder that cannot reach the login node must not look ready.
  await getSession();

  const forward = async (sock: Socket) => {
    sock.on('error', () => sock.destroy());
    let s: SshSession;
    try {
      s = await getSession();
    } catch (e) {
      log(`cannot reconnect: ${(e as Error).message}`);
      sock.destroy();
      return;
    }
    s.client.forwardOut('127.0.0.1', sock.remotePort ?? 0, node, remotePort, (err, ch) => {
      if (err) {
        log(`forward to ${node}:${remotePort} refused: ${err.message}`);
        sock.destroy();
        return;
      }
      ch.on('error', () => sock.destroy());
      sock.on('close', () => ch.close());
      ch.on('close', () => sock.destroy());
      sock.pipe(ch).pipe(sock);
    });
  };

  const server = createServer((sock) => void forward(sock));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, listenHost, () => resolve());
  });
  log(`listening on ${listenHost}:${listenPort} -> ${node}:${remotePort} via ${target.user}@${target.host}:${target.port} (job ${a['job-id']})`);

  const shutdown = (why: string, code = 0) => {
    log(`exiting: ${why}`);
    server.close();
    session?.close();
    setTimeout(() => process.exit(code), 200).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => undefined);

  const slurmId = a['slurm-job-id'];
  if (slurmId && watchMs > 0) {
    const timer = setInterval(async () => {
      try {
        const s = await getSession();
        const r = await s.exec(`squeue -j ${slurmId.replace(/[^0-9_.]/g, '')} -h -t all -o '%T'`);
        const state = r.stdout.trim();
        if ((r.code === 0 && TERMINAL.test(state)) || /invalid job id/i.test(r.stderr)) {
          clearInterval(timer);
          shutdown(`Slurm job ${slurmId} has ended (${state || 'no longer known'})`);
        }
      } catch (e) {
        log(`job check failed: ${(e as Error).message}`);
      }
    }, watchMs);
  }
}

main().catch((e: unknown) => {
  const err = e as Error & { hint?: string };
  process.stderr.write(`tao-infer tunnel: ${err.message}${err.hint ? `\nhint: ${err.hint}` : ''}\n`);
  process.exit(1);
});
