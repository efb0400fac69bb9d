/**
 * The extension's commands besides the sidebar: a task's page, "Train on this table" in the file
 * browser's context menu (CSV, TSV, Parquet), and "New training panel" in the launcher and the
 * command palette. The last two write a new notebook beside the file (or in the file browser's
 * folder), open it and run its first cell, so the TrainingPanel shows at once.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, MainAreaWidget, WidgetTracker, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { trainingIcon } from './icons';
import { DEMO_CELL, IKernelSpec, freeNotebookName, isTableFile, notebookWith, tableCell, tableStem } from './notebookSource';
import { PageApi } from './pageApi';
import { TaskPage } from './taskPage';
import { CommandIDs as SharedIDs, ITrainingTasks } from './tokens';

export namespace CommandIDs {
  export const openTask = SharedIDs.openTask;
  export const trainOnTable = 'epoch-widgets:train-on-table';
  export const newPanel = 'epoch-widgets:new-training-panel';
}

/** The server's default kernel, which the new notebook names so it opens without asking. */
async function defaultKernel(app: JupyterFrontEnd): Promise<IKernelSpec> {
  const specs = app.serviceManager.kernelspecs;
  await specs.ready;
  const name = specs.specs?.default ?? 'python3';
  return { name, display_name: specs.specs?.kernelspecs[name]?.display_name ?? name };
}

/** Write a notebook whose first cell is `source` into `dir` (named after `stem`), open it and run it. */
export async function openNewPanelNotebook(
  app: JupyterFrontEnd,
  dir: string,
  stem: string,
  source: string
): Promise<NotebookPanel> {
  const contents = app.serviceManager.contents;
  const listing = await contents.get(dir, { content: true });
  const taken = (listing.content as { name: string }[]).map(item => item.name);
  const path = PathExt.join(dir, freeNotebookName(stem, taken));
  await contents.save(path, {
    type: 'notebook',
    format: 'json',
    content: notebookWith(source, await defaultKernel(app))
  });
  const panel = (await app.commands.execute('docmanager:open', { path, factory: 'Notebook' })) as NotebookPanel;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await NotebookActions.runAll(panel.content, panel.sessionContext);
  // Saved with the panel's output, so closing it does not ask about changes the user did not make.
  await panel.context.save();
  return panel;
}

/** Run `make` (which writes and opens a notebook), showing a failure (a folder that cannot be
 * written, a server gone) in a dialog rather than only in the browser's console. */
async function reporting<T>(title: string, make: () => Promise<T>): Promise<T | undefined> {
  try {
    return await make();
  } catch (error) {
    await showErrorMessage(title, error as Error);
    return undefined;
  }
}

export const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'epoch-widgets:commands',
  description: "A training task's page, 'Train on this table' and 'New training panel'.",
  autoStart: true,
  requires: [IFileBrowserFactory, ITrainingTasks],
  optional: [IDefaultFileBrowser, ILauncher, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    browsers: IFileBrowserFactory,
    tasks: ITrainingTasks,
    defaultBrowser: IDefaultFileBrowser | null,
    launcher: ILauncher | null,
    palette: ICommandPalette | null
  ) => {
    const api = new PageApi(app.serviceManager.serverSettings);
    const pages = new WidgetTracker<MainAreaWidget<TaskPage>>({ namespace: 'epoch-widgets-task' });

    /** Without a taskId (the palette), ask which task, newest first. */
    const pickTask = async (): Promise<string> => {
      const known = (await api.tasks()).reverse();
      if (!known.length) {
        await showErrorMessage('Open a training task', 'There are no training tasks on this server yet: start one ' +
          'through the HTTP API (docs/api.md) and it shows in the Training sidebar.');
        return '';
      }
      const labels = known.map(t => `${t.name || '(no name)'} · ${t.task_id}`);
      const answer = await InputDialog.getItem({ title: 'Open a training task', items: labels });
      return answer.button.accept && answer.value ? known[labels.indexOf(answer.value)].task_id : '';
    };
    app.commands.addCommand(CommandIDs.openTask, {
      label: args => (args.taskId ? `Training task ${args.taskId}` : 'Open a training task…'),
      caption: "Open a training task's page: curves, epochs, config, evaluation",
      execute: async args => {
        const taskId = String(args.taskId ?? '') || (await pickTask());
        if (!taskId) {
          return;
        }
        const open = pages.find(w => w.content.taskId === taskId);
        if (open) {
          app.shell.activateById(open.id);
          return open;
        }
        const page = new TaskPage(taskId, api, tasks);
        const widget = new MainAreaWidget({ content: page });
        widget.id = `epoch-widgets-task-${taskId}`;
        widget.title.closable = true;
        // The page names itself once it has read the task: the tab follows.
        page.title.changed.connect(() => (widget.title.label = page.title.label));
        page.disposed.connect(() => widget.dispose());
        widget.title.label = page.title.label;
        void pages.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });

    const selectedTable = (): { path: string; name: string } | null => {
      const browser = browsers.tracker.currentWidget ?? defaultBrowser;
      const item = browser ? browser.selectedItems().next() : undefined;
      const model = item && !item.done ? item.value : null;
      return model && model.type !== 'directory' && isTableFile(model.name) ? { path: model.path, name: model.name } : null;
    };
    app.commands.addCommand(CommandIDs.trainOnTable, {
      label: 'Train on this table',
      caption: 'A new notebook with a TrainingPanel on this CSV, TSV or Parquet file',
      icon: trainingIcon,
      isVisible: () => selectedTable() !== null,
      execute: async () => {
        const table = selectedTable();
        if (!table) {
          throw new Error('Train on this table: select a .csv, .tsv or .parquet file in the file browser');
        }
        return reporting('Train on this table', () =>
          openNewPanelNotebook(app, PathExt.dirname(table.path), tableStem(table.name), tableCell(table.name)));
      }
    });
    app.contextMenu.addItem({
      command: CommandIDs.trainOnTable,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      rank: 3
    });

    app.commands.addCommand(CommandIDs.newPanel, {
      label: 'New training panel',
      caption: 'A new notebook with a TrainingPanel on generated demo data',
      icon: args => (args.isPalette ? undefined : trainingIcon),
      execute: () =>
        reporting('New training panel', () =>
          openNewPanelNotebook(app, defaultBrowser?.model.path ?? '', 'demo', DEMO_CELL))
    });
    palette?.addItem({ command: CommandIDs.newPanel, category: 'Training' });
    palette?.addItem({ command: CommandIDs.openTask, category: 'Training' });
    launcher?.add({ command: CommandIDs.newPanel, category: 'Other', rank: 1 });
  }
};
