/**
 * A task's page in the main area: live curves (loss, accuracy or MAE, learning rate), the
 * per-epoch table, its config, and once it ends its evaluation and where its TensorBoard/MLflow
 * logs are; Pause, Resume, Stop and Delete as in the sidebar. Live through the task's own
 * `stream-progress` while it trains; the shared task list (`stream-tasks`) tells it when the task
 * changes otherwise (resumed or deleted from the sidebar or another client) and gives its clocks.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiError } from './api';
import { el } from './dom';
import { renderEvaluation, IEvaluation } from './evaluationView';
import { ILoggers, IStreamEvent, ITaskDetails, PageApi } from './pageApi';
import {
  IEpochRow, actionsFor, chartSpecs, formatConfigValue, formatNumber, isLive, isRegression, mergeHistory,
  tableColumns
} from './pageData';
import { renderChart } from './svgChart';
import { elapsedAt, etaAt, formatDuration } from './taskList';
import { ITrainingTasks } from './tokens';

/** How long a confirmation ("Training paused") stays (ms). */
const MESSAGE_MS = 5000;
type Action = 'pause' | 'resume' | 'stop' | 'delete';
const ACTIONS: Action[] = ['pause', 'resume', 'stop', 'delete'];

export class TaskPage extends Widget {
  private task: ITaskDetails | null = null;
  private history: IEpochRow[] = [];
  private evaluation: IEvaluation | null = null;
  private evaluationNote = '';
  private loggers: ILoggers | undefined;
  private unfollow: (() => void) | null = null;
  private busy = false;
  private reading: Promise<void> | null = null;
  private readAgain = false;
  private sayTimer = 0;
  private config: HTMLElement | null = null;
  private gone = false;
  private readonly header = el('div', undefined, 'ew-lab-page-header');
  private readonly message = el('div', undefined, 'ew-lab-message');
  private readonly buttons = new Map<Action, HTMLButtonElement>();
  private readonly body = el('div', undefined, 'ew-lab-page-body');

  constructor(
    readonly taskId: string,
    private readonly api: PageApi,
    private readonly tasks: ITrainingTasks
  ) {
    super();
    this.addClass('ew-lab-page');
    this.node.dataset.taskId = taskId;
    this.title.label = taskId;
    this.title.closable = true;
    const bar = el('div', undefined, 'ew-lab-buttons');
    for (const action of ACTIONS) {
      const button = el('button', action[0].toUpperCase() + action.slice(1), 'jp-Button ew-lab-button');
      button.dataset.action = action;
      button.onclick = () => void this.act(action);
      this.buttons.set(action, button);
      bar.appendChild(button);
    }
    this.node.append(this.header, bar, this.message, this.body);
  }

  protected onAfterAttach(): void {
    this.tasks.changed.connect(this.onListChanged, this);
    void this.refresh();
  }

  protected onBeforeDetach(): void {
    this.tasks.changed.disconnect(this.onListChanged, this);
    this.unfollow?.();
    this.unfollow = null;
  }

  dispose(): void {
    this.tasks.changed.disconnect(this.onListChanged, this);
    this.unfollow?.();
    this.unfollow = null;
    super.dispose();
  }

  /** The shared task list changed: a state this page did not see come by its own stream (a resume
   * from the sidebar), or the task gone, means reading it again; otherwise the clocks move on. */
  private onListChanged(): void {
    if (!this.task || this.gone || !this.tasks.connected) {
      return;
    }
    const entry = this.tasks.state.get(this.taskId);
    if (!entry || (!this.unfollow && entry.summary.training_state !== this.task.training_state)) {
      void this.refresh();
    } else {
      this.drawHeader();
    }
  }

  /** Read the task and its history again; follow its stream while it is live; read its
   * evaluation and log locations once it has ended. One read at a time: a call during a read
   * gets one more read after it (so two reads never open two streams). */
  async refresh(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.readAgain = false;
        await this.read();
      } while (this.readAgain && !this.isDisposed);
    })();
    try {
      await this.reading;
    } finally {
      this.reading = null;
    }
  }

  private async read(): Promise<void> {
    let task: ITaskDetails;
    try {
      task = await this.api.task(this.taskId);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.gone = true;
        this.say(`Task ${this.taskId} no longer exists (deleted).`, true);
        this.draw();
        return;
      }
      this.say(String((err as Error).message ?? err), true);
      return;
    }
    if (this.isDisposed) {
      return;
    }
    const wasLive = this.task ? isLive(this.task.training_state) : true;
    this.task = task;
    this.title.label = task.name || task.task_id;
    if (isLive(task.training_state) && !this.unfollow) {
      this.evaluation = null;
      this.unfollow = this.api.follow(this.taskId, e => this.onEvent(e), () => {
        this.unfollow = null;
        void this.refresh();
      });
    }
    this.history = mergeHistory(this.history, await this.api.history(this.taskId).catch(() => []));
    if (this.loggers === undefined || !isLive(task.training_state)) {
      this.loggers = await this.api.loggers(this.taskId).catch(() => undefined);
    }
    if (!isLive(task.training_state) && (wasLive || (!this.evaluation && !this.evaluationNote))) {
      try {
        this.evaluation = await this.api.evaluation(this.taskId);
        this.evaluationNote = '';
      } catch (err) {
        this.evaluation = null;
        this.evaluationNote = (err as Error).message;
      }
    }
    this.draw();
  }

  private onEvent(event: IStreamEvent): void {
    if (!this.task) {
      return;
    }
    const progress = event.progress ?? {};
    const latest = progress.latest_metrics;
    if (latest && typeof latest.epoch === 'number') {
      this.history = mergeHistory(this.history, [latest]);
    }
    const state = event.training_state ?? (progress.training_state as string | undefined);
    this.task = {
      ...this.task,
      training_state: state ?? this.task.training_state,
      current_epoch: (progress.current_epoch as number | undefined) ?? this.task.current_epoch,
      total_epochs: (progress.total_epochs as number | undefined) ?? this.task.total_epochs,
      best_metrics: (progress.best_metrics as ITaskDetails['best_metrics'] | undefined) ?? this.task.best_metrics,
      reason: (progress.reason as string | null | undefined) ?? event.reason ?? this.task.reason,
      progress: { ...this.task.progress, ...progress }
    };
    this.draw();
  }

  private async act(action: Action): Promise<void> {
    if (action === 'delete') {
      const answer = await showDialog({
        title: 'Delete this task?',
        body: `${this.title.label} leaves the task list; its model files stay where they are.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
      });
      if (!answer.button.accept) {
        return;
      }
    }
    this.busy = true;
    this.draw();
    try {
      const message = action === 'delete'
        ? await this.api.remove(this.taskId)
        : await this.api.control(this.taskId, action);
      this.say(message, false);
      if (action === 'delete') {
        this.dispose();
        return;
      }
    } catch (err) {
      this.say((err as Error).message, true);
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }

  private say(text: string, error: boolean): void {
    window.clearTimeout(this.sayTimer);
    this.message.textContent = text;
    this.message.classList.toggle('ew-lab-error', error);
    // A confirmation is news only for a moment; a refusal stays until the next action.
    if (!error) {
      this.sayTimer = window.setTimeout(() => (this.message.textContent = ''), MESSAGE_MS);
    }
  }

  private draw(): void {
    this.drawHeader();
    if (this.task) {
      this.drawBody(this.task);
    }
  }

  private drawHeader(): void {
    const task = this.task;
    const state = this.gone ? 'deleted' : task?.training_state ?? 'pending';
    const allowed = actionsFor(this.gone ? 'deleted' : state);
    for (const [action, button] of this.buttons) {
      button.disabled = this.busy || !allowed[action];
    }
    this.header.replaceChildren();
    if (!task) {
      return;
    }
    this.header.appendChild(el('h2', task.name || task.task_id));
    const line = el('div', undefined, 'ew-lab-page-line');
    const badge = el('span', state.replace('_', ' '), `ew-lab-state ew-lab-state-${state}`);
    badge.dataset.state = state;
    const epochs = el('span', `epoch ${task.current_epoch}/${task.total_epochs}`, 'ew-lab-epochs');
    const bar = el('progress', undefined, 'ew-lab-progress');
    bar.max = Math.max(1, task.total_epochs);
    bar.value = task.current_epoch;
    const best = Object.entries(task.best_metrics ?? {})
      .map(([k, v]) => `${k} ${formatNumber(v)}`).join(', ');
    line.append(badge, epochs, bar, el('span', `${task.config.model_type ?? ''} · ${task.task_id}`, 'ew-lab-dim'));
    if (best) {
      line.appendChild(el('span', `best: ${best}`, 'ew-lab-best'));
    }
    this.header.appendChild(line);
    const entry = this.tasks.state.get(this.taskId);
    if (entry) {
      const now = Date.now();
      const eta = etaAt(entry, now);
      line.appendChild(el('span', `${formatDuration(elapsedAt(entry, now))} training` +
        (eta !== null && isLive(state) ? `, about ${formatDuration(eta)} left` : ''), 'ew-lab-dim ew-lab-clock'));
    }
    const why = task.error || task.reason;
    if (why && !isLive(state)) {
      this.header.appendChild(el('p', why, task.error ? 'ew-lab-error' : 'ew-lab-dim'));
    }
  }

  private drawBody(task: ITaskDetails): void {
    const regression = isRegression(this.history, task.config);
    const section = (title: string, ...content: Node[]): HTMLElement => {
      const box = el('section', undefined, 'ew-lab-section');
      box.dataset.section = title;
      box.append(el('h3', title), ...content);
      return box;
    };
    const charts = el('div', undefined, 'ew-lab-charts');
    for (const spec of chartSpecs(regression)) {
      charts.appendChild(renderChart(spec.title, this.history, spec.lines, task.total_epochs));
    }
    const parts: HTMLElement[] = [charts, section('Epochs', this.epochTable(regression))];
    if (!isLive(task.training_state)) {
      parts.push(section('Evaluation', this.evaluation
        ? renderEvaluation(this.evaluation)
        : el('p', this.evaluationNote || 'No evaluation.', 'ew-lab-dim')));
    }
    parts.push(section('Logs', this.logsView(task)), section('Config', this.configView(task.config)));
    this.body.replaceChildren(...parts);
  }

  private epochTable(regression: boolean): HTMLElement {
    const columns = tableColumns(regression);
    const table = el('table', undefined, 'ew-lab-table ew-lab-epoch-table');
    const head = table.createTHead().insertRow();
    columns.forEach(c => head.appendChild(el('th', c.label)));
    const body = table.createTBody();
    const bestEpoch = this.task?.best_metrics?.epoch;
    for (const row of this.history) {
      const tr = body.insertRow();
      tr.classList.toggle('ew-lab-best-row', row.epoch === bestEpoch);
      columns.forEach(c => tr.appendChild(el('td', formatNumber(row[c.key]))));
    }
    return table;
  }

  /** The config, folded (it is long); the same element across redraws, so it stays open once opened. */
  private configView(config: Record<string, unknown>): HTMLElement {
    const text = JSON.stringify(config);
    if (!this.config || this.config.dataset.config !== text) {
      const details = el('details', undefined, 'ew-lab-config-box');
      details.dataset.config = text;
      const c = config as Record<string, string | number | undefined>;
      details.appendChild(el('summary', `${Object.keys(config).length} settings: ${c.model_type ?? ''} ` +
        `${formatConfigValue(c.hidden_units)}, ${c.epochs} epochs, batch ${c.batch_size}, ` +
        `learning rate ${c.learning_rate}, data ${c.data_path ?? '(none)'}`));
      details.appendChild(this.configTable(config));
      this.config = details;
    }
    return this.config;
  }

  private configTable(config: Record<string, unknown>): HTMLElement {
    const table = el('table', undefined, 'ew-lab-table ew-lab-config');
    const body = table.createTBody();
    for (const [key, value] of Object.entries(config)) {
      const tr = body.insertRow();
      tr.append(el('th', key), el('td', formatConfigValue(value)));
    }
    return table;
  }

  private logsView(task: ITaskDetails): HTMLElement {
    const list = el('ul', undefined, 'ew-lab-logs');
    const item = (label: string, text: string): void => {
      const li = el('li');
      li.append(el('b', `${label}: `), el('code', text));
      list.appendChild(li);
    };
    if (task.output_dir) {
      item('Output folder', task.output_dir);
    }
    const tensorboard = this.loggers?.tensorboard;
    if (tensorboard) {
      // The API names folders inside the server's models directory, shown as /models/ like output_dir.
      item('TensorBoard', `/models/${tensorboard}`);
      list.appendChild(el('li', `tensorboard --logdir <the server's models directory>/${tensorboard}`, 'ew-lab-dim'));
    }
    const mlflow = this.loggers?.mlflow;
    if (mlflow) {
      item('MLflow', `${mlflow.tracking_uri ?? ''} run ${mlflow.run_id ?? '?'} (experiment ${mlflow.experiment_id ?? '?'})`);
    }
    for (const failure of task.logger_errors ?? []) {
      item(`${failure.logger} failed`, failure.message);
    }
    if (!list.children.length) {
      list.appendChild(el('li', 'This task has no output folder and no loggers (config: output_path, loggers).',
        'ew-lab-dim'));
    }
    return list;
  }
}
