// Reference minimal reverse proxy for bench/gateway.mjs: a node:http server and one undici Pool to a single
// upstream; the request body is read (bounded) and forwarded as bytes, the answer written back as it arrives through
// undici's dispatch API (the leanest undici path: no Readable per answer), with back-pressure. No routing, checks,
// retries, aborts, metrics or logs: about the least CPU per request any Node proxy on this machine can cost, measured
// side by side with the gateway.
//   node bench/reference-proxy.mjs <upstream origin>     prints {"url": ...} on stdout once it listens
import { createServer } from 'node:http';
import { Pool } from 'undici';

const MAX_BODY = 64 * 1024 * 1024;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);
const upstream = new Pool(process.argv[2], { connections: 64 });

function forward(req, res, body) {
  const headers = { 'content-type': req.headers['content-type'] ?? 'application/json', 'content-length': String(body.length) };
  upstream.dispatch({ path: req.url, method: req.method, headers, body }, {
    onRequestStart() {}, // marks the handler as one of undici 7's controller API (lib/handler/unwrap-handler.js)
    onResponseStart(controller, statusCode, h) {
      const out = {};
      for (const k in h) if (!HOP_BY_HOP.has(k)) out[k] = h[k];
      res.writeHead(statusCode, out);
    },
    onResponseData(controller, chunk) {
      if (!res.write(chunk)) {
        controller.pause();
        res.once('drain', () => controller.resume());
      }
    },
    onResponseEnd() {
      res.end();
    },
    onResponseError() {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  });
}

const server = createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) req.destroy();
    else chunks.push(c);
  });
  req.on('end', () => forward(req, res, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
