import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { commandsPlugin } from './commands';
import { TrainingSidebar } from './sidebar';

/** The Training sidebar in the left area. */
const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: 'epoch-widgets:sidebar',
  description: 'A sidebar of every training task of this server, live, with controls.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell,
    restorer: ILayoutRestorer | null
  ) => {
    const sidebar = new TrainingSidebar();
    labShell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, sidebar.id);
  }
};

const plugins: JupyterFrontEndPlugin<any>[] = [sidebarPlugin, commandsPlugin];

export default plugins;
