/** What the extension's plugins share: the live task list and the commands' ids. */
import { Token } from '@lumino/coreutils';
import { ISignal } from '@lumino/signaling';

import { TaskListState } from './taskList';

/** The live list of every task of the server (one `stream-tasks` connection for all plugins). */
export interface ITrainingTasks {
  /** The tasks as the stream last described them. */
  readonly state: TaskListState;
  /** Emitted after each change of the list. */
  readonly changed: ISignal<ITrainingTasks, void>;
  /** Whether the stream is open, and why not when it is not. */
  readonly connected: boolean;
  readonly problem: string | null;
}

export const ITrainingTasks = new Token<ITrainingTasks>(
  'epoch-widgets:ITrainingTasks',
  'The live list of every training task of the server.'
);

export namespace CommandIDs {
  /** Opens a task's page in the main area: args `{ taskId }`. */
  export const openTask = 'epoch-widgets:open-task';
  /** Shows the Training sidebar. */
  export const showSidebar = 'epoch-widgets:show-sidebar';
}
