/**
 * Process primitives for detached helpers that outlive the CLI: spawn in an own session with a log,
 * liveness, ending by PID, waiting for a TCP port. The forwarder abstraction (src/forwarder/) builds on these.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, mkdirSync, constants as fsConstants } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DetachedOptions {
  /** Executable (e.g. process.execPath) and its arguments. Never put a secret here. */
  command: string;
  args: string[];
  /** Environment of the child (secrets may travel here, never in args). */
  env?: NodeJS.ProcessEnv;
  /** File receiving the child's stdout+stderr. */
  logFile: string;
  cwd?: string;
}

/**
 * Start a process in its own session, not attached to our stdio, and return its PID.
 * The log file is opened for appending with mode 0600 and without following a symlink.
 */
export function spawnDetached(opts: DetachedOptions): number {
  mkdirSync(dirname(opts.logFile), { recursive: true, mode: 0o700 });
  const fd = openSync(opts.logFile, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o600);
  try {
    const child = spawn(opts.command, opts.args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    if (child.pid === undefined) throw new Error(`could not start ${opts.command}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when a process with this PID exists (and is not a zombie we can see). */
export function isAlive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** End a process by PID: SIGTERM, then SIGKILL after `graceMs`. Resolves when it is gone (or was never there). */
export async function killPid(pid: number | undefined, graceMs = 3000): Promise<void> {
  if (!pid || !isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!isAlive(pid)) return;
    await sleep(50);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 40 && isAlive(pid); i++) await sleep(25);
}

/** Resolve true once a TCP connect to host:port succeeds, false after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(1000, () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}
