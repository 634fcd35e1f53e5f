/**
 * A streaming JSON "skeleton" of a request body: the same document with whitespace dropped and every
 * string cut to its first `keep` bytes. A 50 MB chat body whose bulk is one base64 data URI becomes a
 * few hundred bytes that `JSON.parse` reads at once, so the gateway can find the top-level `model`
 * (which OpenAI SDKs send after `messages`) and run the per-arch checks without ever parsing the body
 * (issue 12, point 5). Long strings are skipped with `Buffer.indexOf`, not byte by byte.
 *
 * The skeleton is only as valid as the input: a body that is not JSON gives a skeleton that does not
 * parse, and the caller answers 400. The output is capped (`maxBytes`); `overflow` tells the caller the
 * body's structure (outside strings) is larger than that.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

export class JsonSkeleton {
  private out: Buffer;
  private len = 0;
  private inString = false;
  /** Inside a string and past `keep`: skip to the closing quote. */
  private skipping = false;
  private escape = false;
  /** Hex digits still expected after `\u`. */
  private hexLeft = 0;
  private strBytes = 0;
  /** Backslashes at the very end of the previous chunk while skipping (an odd count escapes a quote at the start of the next). */
  private trailingBackslashes = 0;
  /** True once the skeleton would exceed maxBytes; further output is dropped. */
  overflow = false;

  /**
   * @param keep bytes of each string kept (the rest is dropped; never splits an escape or a UTF-8 character)
   * @param maxBytes cap on the skeleton size
   */
  constructor(
    private readonly keep = 256,
    private readonly maxBytes = 1024 * 1024,
  ) {
    this.out = Buffer.allocUnsafe(4096);
  }

  private emit(b: number): void {
    if (this.overflow) return;
    if (this.len >= this.maxBytes) {
      this.overflow = true;
      return;
    }
    if (this.len === this.out.length) {
      const next = Buffer.allocUnsafe(Math.min(this.maxBytes, this.out.length * 2));
      this.out.copy(next, 0, 0, this.len);
      this.out = next;
    }
    this.out[this.len++] = b;
  }

  /** Feed the next chunk of the body. */
  push(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.skipping) {
        const q = chunk.indexOf(QUOTE, i);
        if (q < 0) {
          let k = n - 1;
          while (k >= i && chunk[k] === BACKSLASH) k--;
          const run = n - 1 - k;
          this.trailingBackslashes = k < i ? this.trailingBackslashes + run : run;
          return;
        }
        let k = q - 1;
        while (k >= i && chunk[k] === BACKSLASH) k--;
        let run = q - 1 - k;
        if (k < i) run += this.trailingBackslashes;
        this.trailingBackslashes = 0;
        i = q + 1;
        if (run % 2 === 1) continue; // an escaped quote inside the string
        this.skipping = false;
        this.inString = false;
        this.emit(QUOTE);
        continue;
      }
      const b = chunk[i]!;
      if (!this.inString) {
        i++;
        if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) continue;
        this.emit(b);
        if (b === QUOTE) {
          this.inString = true;
          this.strBytes = 0;
        }
        continue;
      }
      // Inside a string, still copying.
      if (this.escape) {
        this.escape = false;
        if (b === 0x75 /* u */) this.hexLeft = 4;
        this.emit(b);
        this.strBytes++;
        i++;
        continue;
      }
      if (this.hexLeft > 0) {
        this.hexLeft--;
        this.emit(b);
        this.strBytes++;
        i++;
        continue;
      }
      if (b === QUOTE) {
        this.inString = false;
        this.emit(b);
        i++;
        continue;
      }
      // Stop copying at a character boundary (not a UTF-8 continuation byte) once `keep` bytes were kept.
      if (this.strBytes >= this.keep && (b & 0xc0) !== 0x80) {
        this.skipping = true;
        this.trailingBackslashes = 0;
        continue;
      }
      if (b === BACKSLASH) this.escape = true;
      this.emit(b);
      this.strBytes++;
      i++;
    }
  }

  /** The skeleton so far as text. */
  text(): string {
    return this.out.toString('utf8', 0, this.len);
  }
}
