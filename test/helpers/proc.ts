/**
 * The process table of this machine, read from /proc (this machine is the client, the Docker host, the Slurm
 * node and the fakes' "cluster" at once, so every process a test starts anywhere shows here).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Every process's argv joined by spaces, keyed by PID (processes that end while being read are skipped). */
export function processTable(): Map<number, string> {
  const out = new Map<number, string>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      out.set(Number(pid), readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim());
    } catch {
      /* gone */
    }
  }
  return out;
}

/** `pid argv` of the processes (other than this one) whose argv contains any of `needles`. */
export function processesMentioning(needles: string[]): string[] {
  const found: string[] = [];
  for (const [pid, argv] of processTable()) {
    if (pid === process.pid || !argv) continue;
    if (needles.some((n) => n && argv.includes(n))) found.push(`${pid} ${argv}`);
  }
  return found;
}

/** Samples every process's argv every 100 ms until `stop()`, which resolves all distinct argvs seen. */
export function sampleArgv(): { stop: () => Promise<string[]> } {
  const seen = new Set<string>();
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const argv of processTable().values()) seen.add(argv);
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return [...seen];
    },
  };
}
