/** The status-bar item: how many tasks are training; a click shows the Training sidebar. */
import { Widget } from '@lumino/widgets';

import { ITrainingTasks } from './tokens';

export class RunningTasksItem extends Widget {
  constructor(
    private tasks: ITrainingTasks,
    onClick: () => void
  ) {
    super();
    this.addClass('ew-StatusItem');
    this.node.title = 'Training tasks of this server: click to show the Training sidebar';
    this.node.addEventListener('click', onClick);
    tasks.changed.connect(this.update, this);
    this.update();
  }

  /** The text for `running` running and `paused` paused tasks. */
  static text(running: number, paused: number): string {
    const text = `Training: ${running} running`;
    return paused ? `${text}, ${paused} paused` : text;
  }

  update(): void {
    const { state } = this.tasks;
    this.node.textContent = RunningTasksItem.text(state.count('running') + state.count('pending'), state.count('paused'));
  }

  dispose(): void {
    this.tasks.changed.disconnect(this.update, this);
    super.dispose();
  }
}
