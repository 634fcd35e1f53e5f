/**
 * The JSONL access log of the gateway (issue 12, point 9; like the request trajectories of seed 000):
 * one line per request with time, method, path, model, routed_to job_id, network_arch, status,
 * latency_ms, bytes_in, bytes_out, retries and stream. Never a body, a header value, a key or a token.
 * The file is opened for append with mode 0600.
 */
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { InvalidInputError } from '../errors.js';

export interface AccessRecord {
  /** When the request arrived, ISO 8601 (filled in when the record is written). */
  time: string;
  method: string;
  path: string;
  model: string | null;
  routed_to: string | null;
  network_arch: string | null;
  status: number;
  latency_ms: number;
  bytes_in: number;
  bytes_out: number;
  retries: number;
  stream: boolean;
  /** Why the gateway answered itself (its error code), when it did. */
  error?: string;
}

/** Appends records to a JSONL file; a write error is reported once and logging stops. */
export class AccessLog {
  private readonly out: WriteStream;
  private failed = false;

  /** @throws InvalidInputError (`--log-file`) when the file cannot be opened for append */
  constructor(file: string, onError: (e: Error) => void) {
    let fd: number;
    try {
      fd = openSync(file, 'a', 0o600);
    } catch (e) {
      throw new InvalidInputError('--log-file', `cannot open ${file} for append: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
        hint: 'Give a path in a directory that exists and that you can write.',
      });
    }
    this.out = createWriteStream(file, { fd });
    this.out.on('error', (e) => {
      if (!this.failed) onError(e);
      this.failed = true;
    });
  }

  write(r: AccessRecord): void {
    if (!this.failed) this.out.write(`${JSON.stringify(r)}\n`);
  }

  /** Flush and close. */
  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}
