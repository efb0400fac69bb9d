import { parseEvents, SseParser } from '../sse';

describe('SseParser', () => {
  it('yields the data of each event, whatever the chunk boundaries', () => {
    const text = 'data: {"a":1}\n\n: keepalive\n\ndata: {"b":2}\r\n\r\ndata: line1\ndata: line2\n\n';
    const whole = new SseParser().push(text);
    expect(whole).toEqual(['{"a":1}', '{"b":2}', 'line1\nline2']);
    // Every split of the text into two chunks gives the same events, \r\n split included.
    for (let i = 0; i <= text.length; i++) {
      const parser = new SseParser();
      expect([...parser.push(text.slice(0, i)), ...parser.push(text.slice(i))]).toEqual(whole);
    }
  });

  it('skips comments and other fields, and waits for the blank line that ends an event', () => {
    const parser = new SseParser();
    expect(parser.push(': keepalive\n\nevent: x\nid: 3\nretry: 10\n')).toEqual([]);
    expect(parser.push('data:{"c":3}\n')).toEqual([]);
    expect(parser.push('\n')).toEqual(['{"c":3}']);
  });
});

describe('parseEvents', () => {
  it('parses each event as JSON', () => {
    const parser = new SseParser();
    expect(parseEvents(parser, 'data: {"type":"deleted","task_id":"t1"}\n\n')).toEqual([
      { type: 'deleted', task_id: 't1' }
    ]);
  });

  it('names an event that is not JSON', () => {
    expect(() => parseEvents(new SseParser(), 'data: NaN\n\n')).toThrow(/not JSON: NaN/);
  });
});
