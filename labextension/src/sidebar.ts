/**
 * The left-area "Training" panel: every task of the server, newest first, filterable by state
 * and name, each with its progress, a sparkline of its validation loss, its best metric, elapsed
 * time and time left, and Pause / Resume / Stop / Delete buttons that answer as the API does.
 */
import { Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { Action, ApiError, control, deleteTask } from './api';
import { trainingIcon } from './icons';
import { TaskRow } from './taskRow';
import { ACTIVE_STATES, TASK_STATES, TaskFilter } from './taskList';
import { CommandIDs, ITrainingTasks } from './tokens';

/** What the state filter offers beside each single state. */
/** The commands the sidebar runs (JupyterLab's command registry). */
export interface ICommands {
  hasCommand(id: string): boolean;
  execute(id: string, args?: any): Promise<any>;
}

const ANY = '';
const ACTIVE = 'active';

export class TrainingSidebar extends Widget {
  private rows = new Map<string, TaskRow>();
  private list: HTMLElement;
  private empty: HTMLElement;
  private status: HTMLElement;
  private stateSelect: HTMLSelectElement;
  private nameInput: HTMLInputElement;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private pending: number | null = null;

  constructor(
    private tasks: ITrainingTasks,
    private commands: ICommands
  ) {
    super();
    this.id = 'epoch-widgets-training';
    this.addClass('ew-Sidebar');
    this.title.icon = trainingIcon;
    this.title.caption = 'Training';

    const header = document.createElement('header');
    header.className = 'ew-Sidebar-header';
    header.textContent = 'Training';
    const filters = document.createElement('div');
    filters.className = 'ew-Sidebar-filters';
    this.stateSelect = document.createElement('select');
    this.stateSelect.className = 'jp-mod-styled ew-Sidebar-state';
    this.stateSelect.title = 'Show the tasks in this state';
    for (const [value, label] of [
      [ANY, 'All states'],
      [ACTIVE, 'Active'],
      ...TASK_STATES.map(s => [s, s.replace('_', ' ')])
    ]) {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = label;
      this.stateSelect.appendChild(option);
    }
    this.nameInput = document.createElement('input');
    this.nameInput.className = 'jp-mod-styled ew-Sidebar-name';
    this.nameInput.type = 'search';
    this.nameInput.placeholder = 'Filter by name';
    this.stateSelect.addEventListener('change', () => this.render());
    this.nameInput.addEventListener('input', () => this.render());
    filters.append(this.stateSelect, this.nameInput);
    this.status = document.createElement('div');
    this.status.className = 'ew-Sidebar-status';
    this.list = document.createElement('ul');
    this.list.className = 'ew-Sidebar-list';
    this.empty = document.createElement('div');
    this.empty.className = 'ew-Sidebar-empty';
    this.node.append(header, filters, this.status, this.list, this.empty);

    tasks.changed.connect(this.schedule, this);
    this.render();
  }

  /** The filter the controls say. */
  get filter(): TaskFilter {
    const state = this.stateSelect.value;
    return {
      states: state === ACTIVE ? ACTIVE_STATES : state ? [state] : [],
      name: this.nameInput.value
    };
  }

  dispose(): void {
    this.tasks.changed.disconnect(this.schedule, this);
    this.stopTicker();
    if (this.pending !== null) {
      cancelAnimationFrame(this.pending);
    }
    super.dispose();
  }

  protected onAfterAttach(): void {
    // Running tasks' clocks tick between their epochs.
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  protected onBeforeDetach(): void {
    this.stopTicker();
  }

  private stopTicker(): void {
    if (this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  private tick(): void {
    const now = Date.now();
    for (const row of this.rows.values()) {
      row.tick(now);
    }
  }

  /** Render once per frame however many events arrive (many short epochs, many tasks). */
  private schedule(): void {
    if (this.pending === null) {
      this.pending = requestAnimationFrame(() => {
        this.pending = null;
        this.render();
      });
    }
  }

  /** Bring the rows in line with the task list: keyed by task, updated in place, newest first. */
  private render(): void {
    const { state } = this.tasks;
    this.status.textContent = this.tasks.connected
      ? ''
      : this.tasks.problem
        ? `Not connected: ${this.tasks.problem}`
        : 'Connecting…';
    const shown = state.list(this.filter);
    const keep = new Set(shown.map(e => e.summary.task_id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
    const now = Date.now();
    shown.forEach((entry, i) => {
      let row = this.rows.get(entry.summary.task_id);
      if (!row) {
        row = new TaskRow(entry.summary.task_id, {
          act: (id, action) => this.act(row!, id, action),
          open: id => this.open(id)
        });
        this.rows.set(entry.summary.task_id, row);
      }
      row.update(entry, now);
      if (this.list.children[i] !== row.node) {
        this.list.insertBefore(row.node, this.list.children[i] ?? null);
      }
    });
    this.empty.textContent =
      shown.length > 0
        ? ''
        : state.size > 0
          ? 'No task matches the filter.'
          : 'No training tasks on this server yet. Start one from a TrainingPanel or the HTTP API.';
  }

  private open(taskId: string): void {
    if (this.commands.hasCommand(CommandIDs.openTask)) {
      void this.commands.execute(CommandIDs.openTask, { taskId });
    }
  }

  /** Ask the API for `action`; its answer (or refusal) shows in the row. */
  private async act(row: TaskRow, taskId: string, action: Action | 'delete'): Promise<void> {
    row.busy(true);
    try {
      const message = action === 'delete' ? await deleteTask(taskId) : await control(taskId, action);
      row.say(message, false);
    } catch (error) {
      const message = error instanceof ApiError ? error.message : String(error);
      row.say(message, true);
      Notification.error(`${action} ${taskId}: ${message}`, { autoClose: 8000 });
    } finally {
      row.busy(false);
    }
  }
}
