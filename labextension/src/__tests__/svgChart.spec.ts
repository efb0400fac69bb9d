import { chartGeometry, niceTicks } from '../svgChart';

const LINES = [{ key: 'train_loss', label: 'train' }, { key: 'val_loss', label: 'val' }];

describe('niceTicks', () => {
  it('gives round values 1, 2 or 5 times a power of ten apart covering the range', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(1, 30, 6)).toEqual([5, 10, 15, 20, 25, 30]);
    expect(niceTicks(3, 3)).toEqual([3]);
  });
});

describe('chartGeometry', () => {
  const history = [
    { epoch: 1, train_loss: 1.0, val_loss: 1.2 },
    { epoch: 2, train_loss: 0.5, val_loss: null },
    { epoch: 3, train_loss: 0.25, val_loss: 0.8 }
  ];

  it('spans the planned epochs before they are trained, each point at its epoch', () => {
    const g = chartGeometry(history, LINES, 10);
    const xs = g.lines[0].points.map(p => p[2]);
    expect(xs[0]).toBe(g.plot.left);
    // Epoch 3 of 10 sits two ninths across the plot.
    expect(xs[2]).toBeCloseTo(g.plot.left + (2 / 9) * (g.plot.right - g.plot.left), 0);
    expect(g.xTicks.every(t => Number.isInteger(t.value) && t.value >= 1 && t.value <= 10)).toBe(true);
  });

  it('puts smaller values lower and breaks a line at a missing value', () => {
    const g = chartGeometry(history, LINES, 3);
    const train = g.lines[0].points;
    expect(train[0][3]).toBeLessThan(train[2][3]);
    expect(g.lines[0].d.match(/M/g)).toHaveLength(1);
    expect(g.lines[1].points.map(p => p[0])).toEqual([1, 3]);
    expect(g.lines[1].d.match(/M/g)).toHaveLength(2);
    for (const [, , , y] of [...train, ...g.lines[1].points]) {
      expect(y).toBeGreaterThanOrEqual(g.plot.top);
      expect(y).toBeLessThanOrEqual(g.plot.bottom);
    }
  });

  it('grows past the planned epochs when the history does (a resumed run)', () => {
    const g = chartGeometry([...history, { epoch: 12, train_loss: 0.1, val_loss: 0.2 }], LINES, 10);
    expect(g.lines[0].points.at(-1)![2]).toBe(g.plot.right);
  });

  it('draws an empty chart before the first epoch', () => {
    const g = chartGeometry([], LINES, 5);
    expect(g.lines.every(l => l.d === '' && l.points.length === 0)).toBe(true);
    expect(g.yTicks.length).toBeGreaterThan(1);
  });
});
