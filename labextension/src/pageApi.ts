/**
 * What a task's page reads from the API (docs/api.md): the task, its history, its evaluation, its
 * loggers' locations, and its own event stream; controls go through `api.ts` like the sidebar's.
 */
import { ServerConnection } from '@jupyterlab/services';

import { Action, control, deleteTask, openEventStream, requestAPI } from './api';
import { IEvaluation } from './evaluationView';
import { IEpochRow } from './pageData';

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
  progress: { latest_metrics?: IEpochRow; [k: string]: unknown };
  logger_errors?: { logger: string; message: string }[];
  replaced_by?: string | null;
}

/** Where a task's loggers write, as `GET tasks` lists it. */
export interface ILoggers {
  tensorboard?: string;
  mlflow?: { tracking_uri?: string | null; run_id?: string | null; experiment_id?: string | null };
}

/** One event of `stream-progress/{id}`. */
export interface IStreamEvent {
  type: 'progress' | 'state' | 'complete' | 'error';
  task_id: string;
  training_state?: string;
  progress?: ITaskDetails['progress'];
  message?: string | null;
  reason?: string | null;
}

export class PageApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  private get<T>(path: string): Promise<T> {
    return requestAPI<T>(path, {}, this.settings);
  }

  async task(taskId: string): Promise<ITaskDetails> {
    return (await this.get<{ task: ITaskDetails }>(`tasks/${encodeURIComponent(taskId)}`)).task;
  }

  async history(taskId: string): Promise<IEpochRow[]> {
    return (await this.get<{ history: IEpochRow[] }>(`history/${encodeURIComponent(taskId)}`)).history;
  }

  async evaluation(taskId: string): Promise<IEvaluation> {
    return (await this.get<{ evaluation: IEvaluation }>(`evaluation/${encodeURIComponent(taskId)}`)).evaluation;
  }

  /** The task's logger locations (`GET tasks` lists them); undefined for a task without loggers. */
  async loggers(taskId: string): Promise<ILoggers | undefined> {
    const { tasks } = await this.get<{ tasks: { task_id: string; loggers?: ILoggers }[] }>('tasks');
    return tasks.find(t => t.task_id === taskId)?.loggers;
  }

  /** The tasks, oldest first, for picking one. */
  async tasks(): Promise<{ task_id: string; name: string | null }[]> {
    return (await this.get<{ tasks: { task_id: string; name: string | null }[] }>('tasks')).tasks;
  }

  control(taskId: string, action: Action): Promise<string> {
    return control(taskId, action);
  }

  remove(taskId: string): Promise<string> {
    return deleteTask(taskId);
  }

  /**
   * Follow `stream-progress/{id}` until it ends (after its `complete` or `error` event, or when it
   * breaks off); `onEnd` then runs once. Returns a function that stops following (without onEnd).
   */
  follow(taskId: string, onEvent: (event: IStreamEvent) => void, onEnd: () => void): () => void {
    let open = true;
    const end = (): void => {
      if (open) {
        open = false;
        close();
        onEnd();
      }
    };
    const close = openEventStream<IStreamEvent>(
      `stream-progress/${encodeURIComponent(taskId)}`,
      {
        onEvent: event => {
          if (open) {
            onEvent(event);
          }
          if (event.type === 'complete' || event.type === 'error') {
            end();
          }
        },
        onStatus: isOpen => {
          if (!isOpen) {
            end();
          }
        }
      },
      { reconnect: false, settings: this.settings }
    );
    return () => {
      open = false;
      close();
    };
  }
}
