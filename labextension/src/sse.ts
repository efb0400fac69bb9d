/**
 * Parsing a Server-Sent Events stream read in chunks (the text/event-stream format): the
 * `data:` lines of each event, joined; comments (`: keepalive`) and other fields are skipped.
 */

/** Splits a text/event-stream into the data of its events, whatever the chunk boundaries. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];

  /** Feed a chunk of text; returns the data of every event it completed. */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const events: string[] = [];
    let newline: number;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      // A lone \r at the end may be the first half of \r\n still on its way.
      if (this.buffer[newline] === '\r' && newline === this.buffer.length - 1) {
        break;
      }
      const width = this.buffer.startsWith('\r\n', newline) ? 2 : 1;
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + width);
      if (line === '') {
        if (this.data.length) {
          events.push(this.data.join('\n'));
          this.data = [];
        }
      } else if (line.startsWith('data:')) {
        const value = line.slice(5);
        this.data.push(value.startsWith(' ') ? value.slice(1) : value);
      }
    }
    return events;
  }
}

/** The JSON of each event in `chunk`; an event that is not JSON throws, naming it. */
export function parseEvents<T>(parser: SseParser, chunk: string): T[] {
  return parser.push(chunk).map(data => {
    try {
      return JSON.parse(data) as T;
    } catch (error) {
      throw new Error(`the event stream sent an event that is not JSON: ${data.slice(0, 200)}`);
    }
  });
}
