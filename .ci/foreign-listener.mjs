// A program that is not tao-infer holding a port the tests must not depend on (issue 8, "Tests must own
// their ports"). argv: <host> <port>. Answers every HTTP request with 200 "foreign listener" (a readiness
// probe that reached it by mistake would think the service is ready), prints "listening", ends on SIGTERM.
import { createServer } from 'node:http';
const [host, port] = process.argv.slice(2);
const srv = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain' }).end('foreign listener\n');
});
srv.on('error', (e) => {
  process.stderr.write(`foreign listener: cannot listen on ${host}:${port}: ${e.message}\n`);
  process.exit(1);
});
srv.listen(Number(port), host, () => process.stdout.write(`listening on ${host}:${port}\n`));
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
