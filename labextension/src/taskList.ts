/**
 * The task list's state, built from the events of `GET stream-tasks` (a snapshot, then one event
 * per change of a task): pure, so that it is unit-tested apart from the widgets.
 */

/** Training states as the API names them. */
export const TASK_STATES = [
  'pending',
  'running',
  'paused',
  'completed',
  'stopped',
  'early_stopped',
  'failed',
  'interrupted'
] as const;
export type TrainingState = (typeof TASK_STATES)[number];
/** States with a worker: what "active" filters and the status bar's count mean. */
export const ACTIVE_STATES: ReadonlySet<string> = new Set(['pending', 'running', 'paused']);

/** One task as the stream describes it (the API's TaskLive schema). */
export interface TaskSummary {
  task_id: string;
  name: string | null;
  model_type: string | null;
  training_state: TrainingState;
  current_epoch: number;
  total_epochs: number;
  best_metrics: { [key: string]: number | null };
  latest_metrics: { [key: string]: number | null };
  val_loss: (number | null)[];
  elapsed_s: number | null;
  eta_s: number | null;
  reason: string | null;
  error: string | null;
  created_at: string | null;
  finished_at: string | null;
  output_path?: string | null;
  [key: string]: unknown;
}

/** The events of the stream (the API's TasksStreamEvent). */
export type TasksEvent =
  | { type: 'snapshot'; tasks: TaskSummary[] }
  | { type: 'task'; change: 'created' | 'state' | 'epoch'; task: TaskSummary }
  | { type: 'deleted'; task_id: string };

/** A task with when its summary arrived (its clocks tick from then while it runs). */
export interface TaskEntry {
  summary: TaskSummary;
  receivedAt: number;
  /** Larger is newer: the server's order (snapshot newest first, then creations). */
  order: number;
}

/** What the list shows: tasks in any of `states` (all when empty) whose name or id holds `name`. */
export interface TaskFilter {
  states?: Iterable<string>;
  name?: string;
}

export class TaskListState {
  private entries = new Map<string, TaskEntry>();
  private counter = 0;

  /** Apply one event; `now` is when it arrived (ms). Returns whether anything changed. */
  apply(event: TasksEvent, now: number = Date.now()): boolean {
    switch (event.type) {
      case 'snapshot': {
        this.entries.clear();
        // Newest first in the snapshot: the last one listed is the oldest.
        for (const summary of [...event.tasks].reverse()) {
          this.put(summary, now);
        }
        return true;
      }
      case 'task':
        this.put(event.task, now);
        return true;
      case 'deleted':
        return this.entries.delete(event.task_id);
      default:
        return false;
    }
  }

  get(taskId: string): TaskEntry | undefined {
    return this.entries.get(taskId);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The tasks the filter keeps, newest first. */
  list(filter: TaskFilter = {}): TaskEntry[] {
    const states = new Set(filter.states ?? []);
    const needle = (filter.name ?? '').trim().toLowerCase();
    return [...this.entries.values()]
      .filter(e => states.size === 0 || states.has(e.summary.training_state))
      .filter(
        e =>
          !needle ||
          (e.summary.name ?? '').toLowerCase().includes(needle) ||
          e.summary.task_id.toLowerCase().includes(needle)
      )
      .sort((a, b) => b.order - a.order);
  }

  /** How many tasks are in `state`. */
  count(state: TrainingState): number {
    let n = 0;
    for (const e of this.entries.values()) {
      n += e.summary.training_state === state ? 1 : 0;
    }
    return n;
  }

  private put(summary: TaskSummary, now: number): void {
    const known = this.entries.get(summary.task_id);
    this.entries.set(summary.task_id, {
      summary,
      receivedAt: now,
      order: known ? known.order : ++this.counter
    });
  }
}

/** Seconds of training so far at `now`: a running task's clock ticks from its last event. */
export function elapsedAt(entry: TaskEntry, now: number): number | null {
  const { elapsed_s, training_state } = entry.summary;
  if (elapsed_s === null) {
    return null;
  }
  const since = training_state === 'running' ? Math.max(0, now - entry.receivedAt) / 1000 : 0;
  return elapsed_s + since;
}

/** Estimated seconds left at `now`: counts down while the task runs, never below zero. */
export function etaAt(entry: TaskEntry, now: number): number | null {
  const { eta_s, training_state } = entry.summary;
  if (eta_s === null) {
    return null;
  }
  const since = training_state === 'running' ? Math.max(0, now - entry.receivedAt) / 1000 : 0;
  return Math.max(0, eta_s - since);
}

/** `12s`, `3m 05s`, `1h 02m`; an em dash when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) {
    return '—';
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s}s`;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  }
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

/** The best epoch's score: accuracy for classification, MAE for regression, else the loss. */
export function bestMetricText(best: { [key: string]: number | null }): string {
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(3));
  if (typeof best.accuracy === 'number') {
    return `best acc ${fmt(best.accuracy)}`;
  }
  if (typeof best.mae === 'number') {
    return `best MAE ${fmt(best.mae)}`;
  }
  if (typeof best.loss === 'number') {
    return `best loss ${fmt(best.loss)}`;
  }
  return 'no best epoch yet';
}

/**
 * The SVG path of a sparkline of `values` in a `width` x `height` box (y grows downwards);
 * null values (a diverged epoch) break the line. Empty when there is nothing to draw.
 */
export function sparklinePath(values: (number | null)[], width: number, height: number): string {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) {
    return '';
  }
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const span = hi - lo || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const r = (n: number) => Math.round(n * 100) / 100;
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = values.length > 1 ? i * step : width / 2;
    const y = hi === lo ? height / 2 : height - ((v - lo) / span) * height;
    d += `${pen ? 'L' : 'M'}${r(x)},${r(y)}`;
    pen = true;
  });
  return d;
}
