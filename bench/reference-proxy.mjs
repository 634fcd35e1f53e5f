// Reference minimal reverse proxy for bench/gateway.mjs: node:http server + one undici Pool to a single upstream,
// request body read (bounded) and forwarded as bytes, answer piped back. No routing, checks, metrics or logs:
// what any Node proxy on this machine costs at least per request, measured side by side with the gateway.
//   node bench/reference-proxy.mjs <upstream origin>     prints {"url": ...} on stdout once it listens
import { createServer } from 'node:http';
import { Pool } from 'undici';

const MAX_BODY = 64 * 1024 * 1024;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);
const upstream = new Pool(process.argv[2], { connections: 64 });

const server = createServer(async (req, res) => {
  try {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > MAX_BODY) throw new Error('body too large');
      chunks.push(c);
    }
    const headers = { 'content-type': req.headers['content-type'] ?? 'application/json', 'content-length': String(size) };
    const r = await upstream.request({ path: req.url, method: req.method, headers, body: Buffer.concat(chunks) });
    const out = {};
    for (const [k, v] of Object.entries(r.headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
    res.writeHead(r.statusCode, out);
    r.body.pipe(res);
  } catch {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  }
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
