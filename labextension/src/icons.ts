import { LabIcon } from '@jupyterlab/ui-components';

import trainingSvg from '../style/training.svg';

/** The Training sidebar's tab icon (a loss curve falling over an axis). */
export const trainingIcon = new LabIcon({
  name: 'epoch-widgets:training',
  svgstr: trainingSvg
});
