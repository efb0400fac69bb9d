import { Widget } from '@lumino/widgets';

import { trainingIcon } from './icons';

/** The left-area "Training" panel: every task of this server, live. */
export class TrainingSidebar extends Widget {
  constructor() {
    super();
    this.id = 'epoch-widgets-training';
    this.addClass('ew-Sidebar');
    this.title.icon = trainingIcon;
    this.title.caption = 'Training';
    this.title.label = '';
  }
}
