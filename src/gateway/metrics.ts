/**
 * Prometheus metrics of the gateway (issue 12, point 9) through prom-client, on a registry of its own
 * (not prom-client's global one, so two gateways in one process do not clash). Label values are bounded:
 * `model` is the routed name (a job_id or network_arch the gateway knows) or `unknown`, never free text
 * from a request.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Live figures the gauges read when scraped (nothing is counted twice per request for them). */
export interface GaugeSources {
  /** Requests being handled now. */
  inFlight: () => number;
  /** Request-body bytes held against the byte budget now. */
  bodyBytes: () => number;
}

/**
 * The gateway's metric set. Counters and the histogram are updated per request; the two gauges of current
 * figures are read from `sources` at scrape time (prom-client's `collect`), which costs the hot path nothing.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'tao_gateway_requests_total', help: 'Requests answered, by routed model and HTTP status', labelNames: ['model', 'status'], registers: [this.registry] });
  readonly upstreamLatency = new Histogram({
    name: 'tao_gateway_upstream_latency_seconds',
    help: 'Time from sending a request upstream to its response headers, by network_arch',
    labelNames: ['network_arch'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900],
    registers: [this.registry],
  });
  readonly inFlight: Gauge;
  readonly retries = new Counter({ name: 'tao_gateway_retries_total', help: 'Upstream attempts after the first, by the reason the previous one failed (connection, fatal, warming_up, credentials)', labelNames: ['reason'], registers: [this.registry] });
  readonly ejections = new Counter({ name: 'tao_gateway_ejections_total', help: 'Members taken out of rotation, by reason', labelNames: ['reason'], registers: [this.registry] });
  readonly members = new Gauge({ name: 'tao_gateway_members', help: 'Registry services known to the gateway, by health', labelNames: ['health'], registers: [this.registry] });
  readonly bodyBytes: Gauge;

  constructor(sources: GaugeSources) {
    this.inFlight = this.liveGauge('tao_gateway_in_flight_requests', 'Requests being handled', sources.inFlight);
    this.bodyBytes = this.liveGauge('tao_gateway_body_bytes_in_flight', 'Request-body bytes held (memory or spool) against the byte budget', sources.bodyBytes);
  }

  /** A gauge whose value is `read()` at scrape time. */
  private liveGauge(name: string, help: string, read: () => number): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
