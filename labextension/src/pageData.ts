/**
 * What a task's page shows, computed from the API's answers: the epoch history merged from
 * `history/{id}` and the stream's `progress` events, which charts to draw, which buttons apply.
 * Pure functions, so the page's rules are unit-tested without a browser.
 */

/** One epoch as the API reports it: `epoch`, then train_/val_ loss, accuracy or mae, learning_rate,
 * time_per_epoch; a non-finite number arrives as null. */
export interface IEpochRow {
  epoch: number;
  [metric: string]: number | null;
}

/** States after which a task trains no more (until it is resumed). */
export const FINAL_STATES = ['completed', 'stopped', 'early_stopped', 'failed', 'interrupted'];

/** Whether a task in `state` still changes by itself (its stream is worth following). */
export function isLive(state: string): boolean {
  return !FINAL_STATES.includes(state);
}

/**
 * `rows` merged into `history` by epoch number (a later report of an epoch replaces the earlier
 * one), in epoch order: the history fetched once and the stream's events may overlap either way.
 */
export function mergeHistory(history: IEpochRow[], rows: IEpochRow[]): IEpochRow[] {
  const byEpoch = new Map<number, IEpochRow>();
  for (const row of [...history, ...rows]) {
    if (row && Number.isInteger(row.epoch) && row.epoch > 0) {
      byEpoch.set(row.epoch, row);
    }
  }
  return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

/** One line of a chart: the history key it plots and its legend label. */
export interface ILineSpec {
  key: string;
  label: string;
}

/** One chart of the page. */
export interface IChartSpec {
  title: string;
  lines: ILineSpec[];
}

/** Whether the run is a regression (MAE) rather than a classification (accuracy). */
export function isRegression(history: IEpochRow[], config: Record<string, unknown>): boolean {
  if (history.some(row => 'train_mae' in row || 'val_mae' in row)) {
    return true;
  }
  if (history.some(row => 'train_accuracy' in row || 'val_accuracy' in row)) {
    return false;
  }
  return config.task === 'regression';
}

/** The page's three charts: loss, accuracy (MAE for regression) and learning rate. */
export function chartSpecs(regression: boolean): IChartSpec[] {
  const metric = regression ? 'mae' : 'accuracy';
  return [
    { title: 'Loss', lines: [{ key: 'train_loss', label: 'train' }, { key: 'val_loss', label: 'val' }] },
    {
      title: regression ? 'MAE' : 'Accuracy',
      lines: [{ key: `train_${metric}`, label: 'train' }, { key: `val_${metric}`, label: 'val' }]
    },
    { title: 'Learning rate', lines: [{ key: 'learning_rate', label: 'learning rate' }] }
  ];
}

/** The per-epoch table's columns, in order: those of `chartSpecs` plus the epoch's time. */
export function tableColumns(regression: boolean): ILineSpec[] {
  const metric = regression ? 'mae' : 'accuracy';
  return [
    { key: 'epoch', label: 'epoch' },
    { key: 'train_loss', label: 'train loss' },
    { key: 'val_loss', label: 'val loss' },
    { key: `train_${metric}`, label: `train ${metric}` },
    { key: `val_${metric}`, label: `val ${metric}` },
    { key: 'learning_rate', label: 'learning rate' },
    { key: 'time_per_epoch', label: 'seconds' }
  ];
}

/** The control buttons and whether each applies in a state; the API has the last word (a refusal
 * is shown), so these only spare the user buttons that cannot work. */
export interface IActions {
  pause: boolean;
  resume: boolean;
  stop: boolean;
  delete: boolean;
}

export function actionsFor(state: string): IActions {
  return {
    pause: state === 'running',
    resume: ['paused', 'stopped', 'interrupted', 'failed'].includes(state),
    stop: ['pending', 'running', 'paused'].includes(state),
    delete: FINAL_STATES.includes(state)
  };
}

/** A metric as the page prints it: 4 significant digits, exponent for tiny or huge values, "–"
 * for a missing or non-finite one. */
export function formatNumber(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    return '–';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e6) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return Number(value.toPrecision(3)).toExponential();
  }
  return String(Number(value.toPrecision(4)));
}

/** A config value as text: strings as they are, everything else as JSON. */
export function formatConfigValue(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  return value === undefined ? '' : JSON.stringify(value);
}
