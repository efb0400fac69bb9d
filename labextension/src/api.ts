/**
 * Calls to the epoch-training API (docs/api.md) through JupyterLab's ServerConnection, which adds
 * the server's token and XSRF header, and an event-stream client on the same connection settings.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { SseParser, parseEvents } from './sse';

/** Where the API lives below the server's base URL. */
export const API_PATH = 'api/v1/epoch-training';

/** A refusal of the API: its HTTP status and its message (what is wrong and what to do). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

function apiUrl(settings: ServerConnection.ISettings, path: string): string {
  return URLExt.join(settings.baseUrl, API_PATH, path);
}

/** Call `path` of the API; the answer's JSON, or an ApiError carrying the API's message. */
export async function requestAPI<T = any>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(settings, path), init, settings);
  } catch (error) {
    throw new ApiError(`the Jupyter server did not answer: ${error}`, 0);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not the API's JSON (a proxy's page, say): the status line says what happened.
  }
  if (!response.ok || !data || data.success === false) {
    const message = data?.message ?? `${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, response.status);
  }
  return data as T;
}

/** The control actions of a task. */
export type Action = 'pause' | 'resume' | 'stop';

/** Pause, resume or stop a task; resolves with the API's message. */
export async function control(taskId: string, action: Action): Promise<string> {
  const answer = await requestAPI<{ message: string }>(`${action}/${encodeURIComponent(taskId)}`, {
    method: 'POST'
  });
  return answer.message;
}

/** Forget an ended task (its files stay); resolves with the API's message. */
export async function deleteTask(taskId: string): Promise<string> {
  const answer = await requestAPI<{ message: string }>(`tasks/${encodeURIComponent(taskId)}`, {
    method: 'DELETE'
  });
  return answer.message;
}

/** What an event stream tells its owner. */
export interface IStreamHandlers<T> {
  /** Each event's JSON. */
  onEvent: (event: T) => void;
  /** The stream is open (true), or lost and retried (false, with why). */
  onStatus?: (open: boolean, why?: string) => void;
}

/**
 * Follow an event stream of the API (`stream-tasks`, `stream-progress/{id}`), reconnecting after
 * it ends or fails (1 s, doubling up to 10 s) unless `reconnect` is false; a refusal (4xx other
 * than 429) is not retried. Returns a function that closes it.
 */
export function openEventStream<T>(
  path: string,
  handlers: IStreamHandlers<T>,
  options: { reconnect?: boolean; settings?: ServerConnection.ISettings } = {}
): () => void {
  const settings = options.settings ?? ServerConnection.makeSettings();
  const reconnect = options.reconnect ?? true;
  let closed = false;
  let controller: AbortController | null = null;
  let delay = 1000;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const retry = (why: string) => {
    handlers.onStatus?.(false, why);
    if (closed || !reconnect) {
      return;
    }
    timer = setTimeout(run, delay);
    delay = Math.min(delay * 2, 10000);
  };

  const run = async () => {
    timer = null;
    controller = new AbortController();
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        apiUrl(settings, path),
        { signal: controller.signal, headers: { Accept: 'text/event-stream' } },
        settings
      );
    } catch (error) {
      if (!closed) {
        retry(`the Jupyter server did not answer: ${error}`);
      }
      return;
    }
    if (!response.ok || !response.body) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).message ?? message;
      } catch {
        // the status line it is
      }
      if (response.status >= 400 && response.status < 500 && response.status !== 429) {
        closed = true;
        handlers.onStatus?.(false, message);
        return;
      }
      retry(message);
      return;
    }
    delay = 1000;
    handlers.onStatus?.(true);
    const parser = new SseParser();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || closed) {
          break;
        }
        for (const event of parseEvents<T>(parser, decoder.decode(value, { stream: true }))) {
          handlers.onEvent(event);
        }
      }
    } catch (error) {
      if (!closed) {
        retry(`the event stream broke off: ${error}`);
      }
      return;
    }
    if (!closed) {
      retry('the event stream ended');
    }
  };

  void run();
  return () => {
    closed = true;
    if (timer !== null) {
      clearTimeout(timer);
    }
    controller?.abort();
  };
}
