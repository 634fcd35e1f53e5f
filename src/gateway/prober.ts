/**
 * Background health of the gateway's members (issue 12, point 2): every `intervalMs` each member is
 * probed on its readiness endpoint (contract §6, through src/service/readiness.ts probeReadiness) with at
 * most `concurrency` probes at once, each bounded by `timeoutMs`. New members are probed at once.
 * 200 → ready; 202 / 503 model_not_ready → loading; 503 initialization_error / model_load_error → failed;
 * connection refused or unreachable → down. Upstream credentials (lepton) come from authHeaders.
 */
import type { RequestYaml } from '../references.js';
import { probeReadiness } from '../service/readiness.js';
import type { Health, Member, Pool } from './pool.js';

export interface ProberOptions {
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  readiness: RequestYaml['readiness'];
  /** Headers for a member's upstream (bearer token); throws when its token env var is unset. */
  headersFor: (m: Member) => Record<string, string>;
  /** Called when a member's health changes (metrics, logs). */
  onChange?: (m: Member, from: Health) => void;
}

/** Probes members in the background until stop(). */
export class Prober {
  private timer?: NodeJS.Timeout;
  private running = false;
  private readonly ac = new AbortController();

  constructor(
    private readonly pool: Pool,
    private readonly o: ProberOptions,
  ) {}

  /** Start the periodic probing (the timer does not keep the process alive). */
  start(): void {
    this.timer = setInterval(() => {
      if (!this.running) void this.probeAll();
    }, this.o.intervalMs);
    this.timer.unref();
  }

  /** Probe every member now (skipped when a round is still running). */
  async probeAll(): Promise<void> {
    this.running = true;
    try {
      await this.probe([...this.pool.members.keys()]);
    } finally {
      this.running = false;
    }
  }

  /** Probe these members now, `concurrency` at a time. */
  async probe(ids: string[]): Promise<void> {
    const queue = [...ids];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        const m = this.pool.members.get(id);
        if (m) await this.probeOne(m);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency, queue.length) }, worker));
  }

  private async probeOne(m: Member): Promise<void> {
    if (this.ac.signal.aborted) return;
    let next: Health;
    let detail: string;
    let headers: Record<string, string>;
    try {
      headers = this.o.headersFor(m);
    } catch (e) {
      return this.set(m, 'down', (e as Error).message);
    }
    const r = await probeReadiness(m.entry.host_url, this.o.readiness, headers, this.o.timeoutMs, this.ac.signal);
    if (this.ac.signal.aborted || this.pool.members.get(m.job_id) !== m) return;
    if (r.kind === 'ready') [next, detail] = ['ready', 'ready'];
    else if (r.kind === 'fatal') [next, detail] = ['failed', r.errorType];
    else if (r.kind === 'waiting') {
      const down = r.state === 'not listening yet' || r.state.startsWith('unreachable');
      [next, detail] = [down ? 'down' : 'loading', r.state];
    } else [next, detail] = ['down', `readiness: ${(r as { kind: string }).kind}`]; // any other outcome (e.g. a refused token): out of rotation
    this.set(m, next, detail);
  }

  private set(m: Member, health: Health, detail: string): void {
    const from = m.health;
    m.health = health;
    m.detail = detail;
    if (from !== health) this.o.onChange?.(m, from);
  }

  /** Stop probing and abort probes in flight. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.ac.abort();
  }
}
