/** One task in the Training sidebar, updated in place as its summary changes. */
import { Action } from './api';
import {
  bestMetricText,
  elapsedAt,
  etaAt,
  formatDuration,
  sparklinePath,
  TaskEntry,
  TrainingState
} from './taskList';

const SVG = 'http://www.w3.org/2000/svg';
const SPARK_WIDTH = 96;
const SPARK_HEIGHT = 22;

/** Which buttons a state offers; the API still decides (a refusal shows its message). */
const OFFERS: { [state: string]: (Action | 'delete')[] } = {
  pending: ['stop'],
  running: ['pause', 'stop'],
  paused: ['resume', 'stop'],
  completed: ['delete'],
  early_stopped: ['delete'],
  stopped: ['resume', 'delete'],
  failed: ['resume', 'delete'],
  interrupted: ['resume', 'delete']
};
const LABELS = { pause: 'Pause', resume: 'Resume', stop: 'Stop', delete: 'Delete' };

export interface ITaskRowActions {
  act: (taskId: string, action: Action | 'delete') => void;
  open: (taskId: string) => void;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, parent?: HTMLElement) {
  const node = document.createElement(tag);
  node.className = cls;
  parent?.appendChild(node);
  return node;
}

export class TaskRow {
  readonly node: HTMLLIElement;
  private entry: TaskEntry | null = null;
  private name: HTMLElement;
  private state: HTMLElement;
  private model: HTMLElement;
  private bar: HTMLProgressElement;
  private epochs: HTMLElement;
  private sparkLine: SVGPathElement;
  private sparkDot: SVGCircleElement;
  private best: HTMLElement;
  private times: HTMLElement;
  private message: HTMLElement;
  private buttons = new Map<string, HTMLButtonElement>();

  constructor(
    readonly taskId: string,
    actions: ITaskRowActions
  ) {
    this.node = el('li', 'ew-TaskRow');
    this.node.dataset.taskId = taskId;
    const top = el('div', 'ew-TaskRow-top', this.node);
    this.name = el('a', 'ew-TaskRow-name', top);
    this.name.title = `Open ${taskId}`;
    this.name.tabIndex = 0;
    this.name.setAttribute('role', 'link');
    this.name.addEventListener('click', () => actions.open(taskId));
    this.name.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        actions.open(taskId);
      }
    });
    this.state = el('span', 'ew-TaskRow-state', top);
    const middle = el('div', 'ew-TaskRow-middle', this.node);
    this.model = el('span', 'ew-TaskRow-model', middle);
    this.epochs = el('span', 'ew-TaskRow-epochs', middle);
    this.bar = el('progress', 'ew-TaskRow-bar', this.node);
    const spark = document.createElementNS(SVG, 'svg');
    spark.setAttribute('class', 'ew-TaskRow-spark');
    spark.setAttribute('width', String(SPARK_WIDTH));
    spark.setAttribute('height', String(SPARK_HEIGHT));
    spark.setAttribute('viewBox', `-2 -2 ${SPARK_WIDTH + 4} ${SPARK_HEIGHT + 4}`);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = 'validation loss per epoch';
    this.sparkLine = document.createElementNS(SVG, 'path');
    this.sparkDot = document.createElementNS(SVG, 'circle');
    this.sparkDot.setAttribute('r', '1.8');
    spark.append(title, this.sparkLine, this.sparkDot);
    const figures = el('div', 'ew-TaskRow-figures', this.node);
    figures.appendChild(spark);
    const texts = el('div', 'ew-TaskRow-texts', figures);
    this.best = el('div', 'ew-TaskRow-best', texts);
    this.times = el('div', 'ew-TaskRow-times', texts);
    const buttons = el('div', 'ew-TaskRow-buttons', this.node);
    for (const action of ['pause', 'resume', 'stop', 'delete'] as const) {
      const button = el('button', `jp-Button jp-mod-styled ew-TaskRow-${action}`, buttons);
      button.textContent = LABELS[action];
      button.title = `${LABELS[action]} ${taskId}`;
      button.addEventListener('click', () => actions.act(taskId, action));
      this.buttons.set(action, button);
    }
    this.message = el('div', 'ew-TaskRow-message', this.node);
  }

  update(entry: TaskEntry, now: number): void {
    this.entry = entry;
    const s = entry.summary;
    this.name.textContent = s.name || s.task_id;
    this.node.dataset.state = s.training_state;
    this.state.textContent = s.training_state.replace('_', ' ');
    this.state.className = `ew-TaskRow-state ew-mod-${s.training_state}`;
    this.state.title = s.reason || s.error || s.training_state;
    this.model.textContent = s.model_type ?? '';
    this.epochs.textContent = `epoch ${s.current_epoch}/${s.total_epochs}`;
    this.bar.max = Math.max(1, s.total_epochs);
    this.bar.value = s.current_epoch;
    const path = sparklinePath(s.val_loss, SPARK_WIDTH, SPARK_HEIGHT);
    this.sparkLine.setAttribute('d', path);
    this.sparkLine.parentElement!.dataset.points = String(s.val_loss.length);
    const last = /[ML]([\d.-]+),([\d.-]+)$/.exec(path);
    this.sparkDot.style.display = last ? '' : 'none';
    if (last) {
      this.sparkDot.setAttribute('cx', last[1]);
      this.sparkDot.setAttribute('cy', last[2]);
    }
    this.best.textContent = bestMetricText(s.best_metrics);
    const offers = OFFERS[s.training_state as TrainingState] ?? [];
    for (const [action, button] of this.buttons) {
      button.style.display = offers.includes(action as Action | 'delete') ? '' : 'none';
    }
    this.tick(now);
  }

  /** Refresh the clocks. */
  tick(now: number): void {
    if (!this.entry) {
      return;
    }
    const eta = etaAt(this.entry, now);
    this.times.textContent =
      `elapsed ${formatDuration(elapsedAt(this.entry, now))}` + (eta === null ? '' : ` · ${formatDuration(eta)} left`);
  }

  /** Show the API's answer (or refusal) under the row. */
  say(text: string, error: boolean): void {
    this.message.textContent = text;
    this.message.classList.toggle('ew-mod-error', error);
  }

  busy(on: boolean): void {
    for (const button of this.buttons.values()) {
      button.disabled = on;
    }
  }
}
