/** `tao-infer gateway`: one OpenAI-compatible endpoint for every service in the registry (issue 12). */
import { globalFlags, info, warnLine } from '../io.js';
import { declaredCommand } from './index.js';

const num = (v: unknown): number | undefined => (v === undefined ? undefined : Number(v));

/**
 * `tao-infer gateway [--host 127.0.0.1] [--port 8000] [--api-key-env NAME] [--log-file F] [--json] ...`:
 * runs in the foreground until SIGINT/SIGTERM, then stops accepting and lets requests in flight finish
 * (up to --drain-timeout). The URL goes to stderr (and, with --json, as one JSON line to stdout).
 */
export function gatewayCommand() {
  return declaredCommand('gateway')
    .option('--host <address>', 'address to listen on (non-loopback needs --api-key-env or --insecure)', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 = any free port)', '8000')
    .option('--api-key-env <NAME>', 'require Authorization: Bearer <value of $NAME> on every request but /health')
    .option('--insecure', 'allow a non-loopback --host without an api key')
    .option('--log-file <file>', 'append a JSONL access log (no bodies, no keys)')
    .option('--retry-window <s>', 'seconds to keep retrying services that are still loading (202 / model_not_ready)', '60')
    .option('--first-byte-timeout <s>', 'seconds to wait for the first byte of a reply', '900')
    .option('--idle-timeout <s>', 'seconds allowed between two chunks of a reply', '120')
    .option('--max-body-mb <n>', 'largest request body in MiB (413 above)', '256')
    .option('--byte-budget-mb <n>', 'request-body MiB held at once over all requests (503 + Retry-After above)', '1024')
    .option('--drain-timeout <s>', 'seconds to let requests in flight finish after Ctrl-C', '30')
    .action(async (o, command) => {
      const { startGateway } = await import('../../gateway/server.js');
      const gw = await startGateway({
        host: o.host,
        port: num(o.port),
        apiKeyEnv: o.apiKeyEnv,
        insecure: Boolean(o.insecure),
        logFile: o.logFile,
        retryWindowS: num(o.retryWindow),
        firstByteTimeoutS: num(o.firstByteTimeout),
        idleTimeoutS: num(o.idleTimeout),
        maxBodyMb: num(o.maxBodyMb),
        byteBudgetMb: num(o.byteBudgetMb),
        drainTimeoutS: num(o.drainTimeout),
        onWarning: warnLine,
      });
      info(`tao-infer gateway listening on ${gw.url} (OpenAI base URL ${gw.url}/v1); Ctrl-C stops it`);
      if (globalFlags(command).json) process.stdout.write(`${JSON.stringify({ url: gw.url, base_url: `${gw.url}/v1` })}\n`);
      const signal = await new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
      });
      info(`${signal}: finishing requests in flight, then stopping`);
      await gw.close();
      info('gateway stopped');
    });
}
