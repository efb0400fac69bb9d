import {
  bestMetricText,
  elapsedAt,
  etaAt,
  formatDuration,
  sparklinePath,
  TaskListState,
  TaskSummary
} from '../taskList';

function task(id: string, overrides: Partial<TaskSummary> = {}): TaskSummary {
  return {
    task_id: id,
    name: `run ${id}`,
    model_type: 'mlp',
    training_state: 'running',
    current_epoch: 1,
    total_epochs: 10,
    best_metrics: {},
    latest_metrics: {},
    val_loss: [0.9],
    elapsed_s: 2,
    eta_s: 18,
    reason: null,
    error: null,
    created_at: null,
    finished_at: null,
    ...overrides
  };
}

const ids = (state: TaskListState, filter = {}) => state.list(filter).map(e => e.summary.task_id);

describe('TaskListState', () => {
  it('starts from a snapshot (newest first) and puts created tasks on top', () => {
    const state = new TaskListState();
    state.apply({ type: 'snapshot', tasks: [task('b'), task('a')] });
    expect(ids(state)).toEqual(['b', 'a']);
    state.apply({ type: 'task', change: 'created', task: task('c') });
    expect(ids(state)).toEqual(['c', 'b', 'a']);
  });

  it('updates a task in place, keeping its place in the list', () => {
    const state = new TaskListState();
    state.apply({ type: 'snapshot', tasks: [task('b'), task('a')] });
    state.apply({
      type: 'task',
      change: 'epoch',
      task: task('a', { current_epoch: 2, val_loss: [0.9, 0.7] })
    });
    expect(ids(state)).toEqual(['b', 'a']);
    expect(state.get('a')!.summary.val_loss).toEqual([0.9, 0.7]);
    expect(state.size).toBe(2);
  });

  it('forgets deleted tasks, and a new snapshot replaces everything', () => {
    const state = new TaskListState();
    state.apply({ type: 'snapshot', tasks: [task('b'), task('a')] });
    expect(state.apply({ type: 'deleted', task_id: 'a' })).toBe(true);
    expect(state.apply({ type: 'deleted', task_id: 'a' })).toBe(false);
    expect(ids(state)).toEqual(['b']);
    state.apply({ type: 'snapshot', tasks: [task('x')] });
    expect(ids(state)).toEqual(['x']);
  });

  it('filters by state and by a part of the name or id, in any case', () => {
    const state = new TaskListState();
    state.apply({
      type: 'snapshot',
      tasks: [
        task('t3', { name: 'LSTM prices', training_state: 'paused' }),
        task('t2', { name: 'mlp baseline', training_state: 'completed' }),
        task('t1', { name: null, training_state: 'failed' })
      ]
    });
    expect(ids(state, { states: ['completed', 'failed'] })).toEqual(['t2', 't1']);
    expect(ids(state, { name: 'lstm' })).toEqual(['t3']);
    expect(ids(state, { name: 'T1' })).toEqual(['t1']);
    expect(ids(state, { states: new Set(['paused']), name: 'mlp' })).toEqual([]);
    expect(state.count('paused')).toBe(1);
    expect(state.count('running')).toBe(0);
  });
});

describe('clocks', () => {
  it("tick from a running task's last event, and stand still otherwise", () => {
    const state = new TaskListState();
    state.apply({ type: 'task', change: 'created', task: task('r') }, 1000);
    const running = state.get('r')!;
    expect(elapsedAt(running, 6000)).toBe(7);
    expect(etaAt(running, 6000)).toBe(13);
    expect(etaAt(running, 60000)).toBe(0);
    state.apply({ type: 'task', change: 'state', task: task('r', { training_state: 'paused' }) }, 1000);
    expect(elapsedAt(state.get('r')!, 6000)).toBe(2);
    state.apply({
      type: 'task',
      change: 'state',
      task: task('r', { training_state: 'completed', eta_s: null, elapsed_s: null })
    });
    expect(etaAt(state.get('r')!, 6000)).toBeNull();
    expect(elapsedAt(state.get('r')!, 6000)).toBeNull();
  });

  it('format as seconds, minutes or hours', () => {
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(12.4)).toBe('12s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(3720)).toBe('1h 02m');
  });
});

describe('bestMetricText', () => {
  it('shows accuracy, MAE or loss, whichever the task has', () => {
    expect(bestMetricText({ loss: 0.3, accuracy: 0.9123, epoch: 4 })).toBe('best acc 0.912');
    expect(bestMetricText({ loss: 0.3, mae: 1.5, epoch: 4 })).toBe('best MAE 1.50');
    expect(bestMetricText({ loss: 0.25 })).toBe('best loss 0.250');
    expect(bestMetricText({})).toBe('no best epoch yet');
  });
});

describe('sparklinePath', () => {
  it('spans the box, the highest loss at the top, a null breaking the line', () => {
    expect(sparklinePath([], 100, 20)).toBe('');
    expect(sparklinePath([null], 100, 20)).toBe('');
    expect(sparklinePath([2, 1, 0], 100, 20)).toBe('M0,0L50,10L100,20');
    expect(sparklinePath([2, null, 1, 0], 90, 20)).toBe('M0,0M60,10L90,20');
    expect(sparklinePath([5], 100, 20)).toBe('M50,10');
    expect(sparklinePath([3, 3], 100, 20)).toBe('M0,10L100,10');
  });
});
