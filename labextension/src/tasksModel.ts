import { ISignal, Signal } from '@lumino/signaling';

import { openEventStream } from './api';
import { TaskListState, TasksEvent } from './taskList';
import { ITrainingTasks } from './tokens';

/** The live task list, fed by one `GET stream-tasks` connection that reconnects when lost. */
export class TrainingTasks implements ITrainingTasks {
  readonly state = new TaskListState();
  private _changed = new Signal<ITrainingTasks, void>(this);
  private _connected = false;
  private _problem: string | null = null;
  private close: (() => void) | null = null;

  get changed(): ISignal<ITrainingTasks, void> {
    return this._changed;
  }

  get connected(): boolean {
    return this._connected;
  }

  get problem(): string | null {
    return this._problem;
  }

  /** Open the stream (once). */
  start(): void {
    if (this.close) {
      return;
    }
    this.close = openEventStream<TasksEvent>('stream-tasks', {
      onEvent: event => {
        if (this.state.apply(event)) {
          this._changed.emit();
        }
      },
      onStatus: (open, why) => {
        this._connected = open;
        this._problem = open ? null : why ?? null;
        this._changed.emit();
      }
    });
  }

  dispose(): void {
    this.close?.();
    this.close = null;
    Signal.clearData(this);
  }
}
