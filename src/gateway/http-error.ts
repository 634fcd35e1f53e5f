/**
 * Errors the gateway answers itself, as OpenAI error objects
 * (`{"error":{"message","type","param","code"}}`, the shape the OpenAI SDKs parse into APIError).
 * Messages never carry a body, a key or a token.
 */
import type { ServerResponse } from 'node:http';

/** An HTTP error answered by the gateway: status, OpenAI `type` and `code`, optional extra headers. */
export class GatewayHttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'GatewayHttpError';
  }
}

/** 400 invalid_request_error. */
export const badRequest = (message: string, code = 'invalid_request') => new GatewayHttpError(400, 'invalid_request_error', code, message);

/** Write a JSON document with content-length; a response already started is ended instead. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number {
  const data = Buffer.from(JSON.stringify(body));
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(data.length) });
  res.end(data);
  return data.length;
}

/** Answer `err` as an OpenAI error object; returns the bytes written. */
export function sendError(res: ServerResponse, err: GatewayHttpError): number {
  return sendJson(res, err.status, { error: { message: err.message, type: err.type, param: null, code: err.code } }, err.headers);
}
