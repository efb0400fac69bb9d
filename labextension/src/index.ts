import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IStatusBar } from '@jupyterlab/statusbar';

import { commandsPlugin } from './commands';
import { TrainingSidebar } from './sidebar';
import { RunningTasksItem } from './statusbar';
import { TrainingTasks } from './tasksModel';
import { CommandIDs, ITrainingTasks } from './tokens';

export { ITrainingTasks, CommandIDs } from './tokens';

/** The live list of every task of the server, shared by the sidebar, the status bar and the task page. */
const tasksPlugin: JupyterFrontEndPlugin<ITrainingTasks> = {
  id: 'epoch-widgets:tasks',
  description: 'The live list of every training task of the server (one GET stream-tasks connection).',
  autoStart: true,
  provides: ITrainingTasks,
  activate: (app: JupyterFrontEnd): ITrainingTasks => {
    const tasks = new TrainingTasks();
    void app.restored.then(() => tasks.start());
    return tasks;
  }
};

/** The Training sidebar in the left area. */
const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: 'epoch-widgets:sidebar',
  description: 'A sidebar of every training task of this server, live, with controls.',
  autoStart: true,
  requires: [ILabShell, ITrainingTasks],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell,
    tasks: ITrainingTasks,
    restorer: ILayoutRestorer | null
  ) => {
    const sidebar = new TrainingSidebar(tasks, app.commands);
    labShell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);
    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show the Training sidebar',
      execute: () => labShell.activateById(sidebar.id)
    });
  }
};

/** The status-bar item: how many tasks are training. */
const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: 'epoch-widgets:status',
  description: 'How many training tasks are running, in the status bar.',
  autoStart: true,
  requires: [ITrainingTasks],
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, tasks: ITrainingTasks, statusBar: IStatusBar | null) => {
    if (!statusBar) {
      return;
    }
    const item = new RunningTasksItem(tasks, () => void app.commands.execute(CommandIDs.showSidebar));
    statusBar.registerStatusItem('epoch-widgets:running', { item, align: 'left', rank: 50 });
  }
};

const plugins: JupyterFrontEndPlugin<any>[] = [tasksPlugin, sidebarPlugin, statusPlugin, commandsPlugin];

export default plugins;
