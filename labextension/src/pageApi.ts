/**
 * The REST calls and the per-task event stream a task's page uses, over JupyterLab's
 * `ServerConnection` (its token, XSRF cookie and base URL).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IEpochRow } from './pageData';
import { IEvaluation } from './evaluationView';

export const API_PATH = 'api/v1/epoch-training';

/** `GET tasks/{id}`'s task (its summary, config and progress). */
export interface ITaskDetails {
  task_id: string;
  name: string | null;
  training_state: string;
  current_epoch: number;
  total_epochs: number;
  best_metrics: Record<string, number | null>;
  reason: string | null;
  error: string | null;
  created_at: string | null;
  finished_at: string | null;
  output_path: string | null;
  output_dir: string | null;
  config: Record<string, unknown>;
  progress: { latest_metrics?: IEpochRow; current_batch?: number; total_batches?: number; [k: string]: unknown };
  logger_errors?: { logger: string; message: string }[];
  replaced_by?: string | null;
}

/** Where a task's loggers write, as `GET tasks` lists it. */
export interface ILoggers {
  tensorboard?: string;
  mlflow?: { tracking_uri?: string; run_id?: string; experiment_id?: string };
}

/** One event of `stream-progress/{id}`. */
export interface IStreamEvent {
  type: 'progress' | 'state' | 'complete' | 'error';
  task_id: string;
  training_state?: string;
  progress?: ITaskDetails['progress'] & { training_state?: string; current_epoch?: number };
  message?: string | null;
  reason?: string | null;
}

/** An API refusal: its HTTP status and the server's message (which says what to do). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export class PageApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  url(path: string): string {
    return URLExt.join(this.settings.baseUrl, API_PATH, path);
  }

  async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await ServerConnection.makeRequest(this.url(path), init, this.settings);
    let body: any = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body?.message ?? `${init.method ?? 'GET'} ${path} answered ${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return body as T;
  }

  async task(taskId: string): Promise<ITaskDetails> {
    return (await this.request<{ task: ITaskDetails }>(`tasks/${encodeURIComponent(taskId)}`)).task;
  }

  async history(taskId: string): Promise<IEpochRow[]> {
    return (await this.request<{ history: IEpochRow[] }>(`history/${encodeURIComponent(taskId)}`)).history;
  }

  async evaluation(taskId: string): Promise<IEvaluation> {
    return (await this.request<{ evaluation: IEvaluation }>(`evaluation/${encodeURIComponent(taskId)}`)).evaluation;
  }

  /** The task's logger locations (only `GET tasks` lists them); undefined for a task without loggers. */
  async loggers(taskId: string): Promise<ILoggers | undefined> {
    const { tasks } = await this.request<{ tasks: { task_id: string; loggers?: ILoggers }[] }>('tasks');
    return tasks.find(t => t.task_id === taskId)?.loggers;
  }

  async control(taskId: string, action: 'pause' | 'resume' | 'stop'): Promise<{ message: string }> {
    return this.request(`${action}/${encodeURIComponent(taskId)}`, { method: 'POST' });
  }

  async remove(taskId: string): Promise<{ message: string }> {
    return this.request(`tasks/${encodeURIComponent(taskId)}`, { method: 'DELETE' });
  }

  /**
   * Follow `stream-progress/{id}` until its `complete` or `error` event (an EventSource would
   * otherwise reconnect to an ended stream forever); returns a function that stops following.
   */
  follow(taskId: string, onEvent: (event: IStreamEvent) => void, onEnd: () => void): () => void {
    const token = this.settings.token;
    const url = this.url(`stream-progress/${encodeURIComponent(taskId)}`) +
      (token ? `?token=${encodeURIComponent(token)}` : '');
    const source = new EventSource(url, { withCredentials: true });
    let open = true;
    const close = (): void => {
      if (open) {
        open = false;
        source.close();
        onEnd();
      }
    };
    source.onmessage = message => {
      let event: IStreamEvent;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      onEvent(event);
      if (event.type === 'complete' || event.type === 'error') {
        close();
      }
    };
    source.onerror = () => {
      // A stream the server refused or closed (task deleted, server gone): stop, the page polls.
      if (source.readyState === EventSource.CLOSED) {
        close();
      }
    };
    return () => {
      if (open) {
        open = false;
        source.close();
      }
    };
  }
}
