import {
  actionsFor, chartSpecs, formatConfigValue, formatNumber, isLive, isRegression, mergeHistory, tableColumns
} from '../pageData';

describe('mergeHistory', () => {
  it('merges the fetched history and stream events by epoch, in epoch order, the later report winning', () => {
    const fetched = [{ epoch: 1, train_loss: 0.9 }, { epoch: 2, train_loss: 0.7 }];
    const streamed = [{ epoch: 3, train_loss: 0.5 }, { epoch: 2, train_loss: 0.69 }];
    const merged = mergeHistory(fetched, streamed);
    expect(merged.map(r => r.epoch)).toEqual([1, 2, 3]);
    expect(merged[1].train_loss).toBe(0.69);
  });

  it('leaves out rows without a whole positive epoch', () => {
    const rows = [{ epoch: 0, train_loss: 1 }, { epoch: 1.5, train_loss: 1 }, { epoch: 2, train_loss: 1 }];
    expect(mergeHistory([], rows).map(r => r.epoch)).toEqual([2]);
  });

  it('keeps the inputs unchanged', () => {
    const history = [{ epoch: 2, train_loss: 1 }];
    mergeHistory(history, [{ epoch: 1, train_loss: 2 }]);
    expect(history).toEqual([{ epoch: 2, train_loss: 1 }]);
  });
});

describe('charts and table', () => {
  it('shows accuracy for a classification and MAE for a regression, told by the history first', () => {
    expect(isRegression([{ epoch: 1, train_mae: 0.3 }], { task: 'classification' })).toBe(true);
    expect(isRegression([{ epoch: 1, val_accuracy: 0.8 }], { task: 'regression' })).toBe(false);
    expect(isRegression([], { task: 'regression' })).toBe(true);
    expect(isRegression([], { task: 'auto' })).toBe(false);
    expect(chartSpecs(false).map(c => c.title)).toEqual(['Loss', 'Accuracy', 'Learning rate']);
    expect(chartSpecs(true)[1].lines.map(l => l.key)).toEqual(['train_mae', 'val_mae']);
    expect(tableColumns(true).map(c => c.key)).toContain('val_mae');
    expect(tableColumns(false).map(c => c.key)).toEqual(
      ['epoch', 'train_loss', 'val_loss', 'train_accuracy', 'val_accuracy', 'learning_rate', 'time_per_epoch']);
  });
});

describe('actionsFor', () => {
  it('offers only the buttons the API can accept in each state', () => {
    expect(actionsFor('running')).toEqual({ pause: true, resume: false, stop: true, delete: false });
    expect(actionsFor('paused')).toEqual({ pause: false, resume: true, stop: true, delete: false });
    expect(actionsFor('pending')).toEqual({ pause: false, resume: false, stop: true, delete: false });
    expect(actionsFor('stopped')).toEqual({ pause: false, resume: true, stop: false, delete: true });
    expect(actionsFor('completed')).toEqual({ pause: false, resume: false, stop: false, delete: true });
    expect(actionsFor('deleted')).toEqual({ pause: false, resume: false, stop: false, delete: false });
  });

  it('knows which states still change by themselves', () => {
    expect(['pending', 'running', 'paused'].map(isLive)).toEqual([true, true, true]);
    expect(['completed', 'stopped', 'early_stopped', 'failed', 'interrupted'].some(isLive)).toBe(false);
  });
});

describe('formatting', () => {
  it('prints metrics with 4 significant digits, exponents for tiny ones, a dash for missing ones', () => {
    expect(formatNumber(0.123456)).toBe('0.1235');
    expect(formatNumber(12)).toBe('12');
    expect(formatNumber(0.00001234)).toBe('1.23e-5');
    expect(formatNumber(0.0009)).toBe('9e-4');
    expect(formatNumber(null)).toBe('–');
    expect(formatNumber(NaN)).toBe('–');
    expect(formatNumber(undefined)).toBe('–');
  });

  it('prints config values as text, lists as JSON', () => {
    expect(formatConfigValue('mlp')).toBe('mlp');
    expect(formatConfigValue([64, 32])).toBe('[64,32]');
    expect(formatConfigValue(null)).toBe('null');
    expect(formatConfigValue(false)).toBe('false');
  });
});
