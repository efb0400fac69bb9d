/**
 * A finished task's evaluation (`evaluation/{id}`, the run's evaluation.json): the confusion
 * matrix and per-class report of a classification, the residuals of a regression. Labels come
 * from the user's data, so they are only ever set as text.
 */
import { el } from './dom';
import { formatNumber } from './pageData';

export interface IEvaluation {
  task: 'classification' | 'regression';
  split: string;
  n_samples: number;
  metrics: Record<string, number | null>;
  notes?: string[];
  classes?: unknown[];
  confusion_matrix?: number[][];
  report?: Record<string, unknown>[];
  points?: { row: unknown[]; actual: number[]; predicted: number[]; residual: number[] };
}

/** Each cell's share of its row (the actual class), 0 for an empty row: how dark the cell is. */
export function confusionShares(matrix: number[][]): number[][] {
  return matrix.map(row => {
    const total = row.reduce((s, v) => s + v, 0);
    return row.map(v => (total > 0 ? v / total : 0));
  });
}

/** Residual (actual - predicted) against predicted, as [x, y] in a width x height plot, and
 * the y of the zero line. */
export function residualPoints(
  predicted: number[],
  residual: number[],
  width = 320,
  height = 200
): { points: [number, number][]; zeroY: number } {
  const pairs = predicted
    .map((p, i) => [p, residual[i]] as [number, number])
    .filter(([p, r]) => Number.isFinite(p) && Number.isFinite(r));
  const left = 52;
  const right = width - 10;
  const top = 8;
  const bottom = height - 24;
  const xs = pairs.map(p => p[0]);
  const ys = [...pairs.map(p => p[1]), 0];
  const [x0, x1] = span(xs);
  const [y0, y1] = span(ys);
  const sx = (v: number): number => left + ((v - x0) / (x1 - x0)) * (right - left);
  const sy = (v: number): number => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
  return { points: pairs.map(([p, r]) => [sx(p), sy(r)]), zeroY: sy(0) };
}

function span(values: number[]): [number, number] {
  if (values.length === 0) {
    return [0, 1];
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = hi > lo ? (hi - lo) * 0.05 : Math.abs(lo) * 0.1 || 1;
  return [lo - pad, hi + pad];
}

function metricsLine(evaluation: IEvaluation): HTMLElement {
  const parts = Object.entries(evaluation.metrics).map(([k, v]) => `${k} ${formatNumber(v)}`);
  return el('p', `${evaluation.split} split, ${evaluation.n_samples} samples: ${parts.join(', ')}`,
    'ew-lab-eval-metrics');
}

function confusionTable(evaluation: IEvaluation): HTMLElement {
  const classes = (evaluation.classes ?? []).map(c => String(c));
  const matrix = evaluation.confusion_matrix ?? [];
  const shares = confusionShares(matrix);
  const table = el('table', undefined, 'ew-lab-confusion');
  const head = table.createTHead().insertRow();
  head.appendChild(el('th', 'actual \\ predicted'));
  classes.forEach(c => head.appendChild(el('th', c)));
  const body = table.createTBody();
  matrix.forEach((row, i) => {
    const tr = body.insertRow();
    tr.appendChild(el('th', classes[i] ?? String(i)));
    row.forEach((count, j) => {
      const td = el('td', String(count));
      // Shaded by the row's share, so a small class's mistakes show as clearly as a big one's.
      td.style.background = `rgba(33, 150, 243, ${(0.08 + 0.72 * shares[i][j]).toFixed(3)})`;
      td.title = `actual ${classes[i]}, predicted ${classes[j]}: ${count} (${Math.round(shares[i][j] * 100)} % of ${classes[i]})`;
      tr.appendChild(td);
    });
  });
  return table;
}

function reportTable(report: Record<string, unknown>[]): HTMLElement {
  const table = el('table', undefined, 'ew-lab-report');
  const cols = ['class', 'precision', 'recall', 'f1-score', 'support'];
  const head = table.createTHead().insertRow();
  cols.forEach(c => head.appendChild(el('th', c)));
  const body = table.createTBody();
  for (const row of report) {
    const tr = body.insertRow();
    cols.forEach(c => tr.appendChild(el('td', c === 'class' ? String(row[c]) : formatNumber(row[c]))));
  }
  return table;
}

function residualPlot(evaluation: IEvaluation): HTMLElement {
  const figure = el('figure', undefined, 'ew-lab-chart');
  figure.dataset.chart = 'Residuals';
  figure.appendChild(el('figcaption', 'Residuals (actual − predicted) against predicted'));
  const points = evaluation.points ?? { row: [], actual: [], predicted: [], residual: [] };
  const { points: xy, zeroY } = residualPoints(points.predicted, points.residual);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 320 200');
  svg.setAttribute('width', '320');
  svg.setAttribute('height', '200');
  const zero = document.createElementNS(ns, 'line');
  Object.entries({ x1: 52, x2: 310, y1: zeroY, y2: zeroY, class: 'ew-lab-axis' })
    .forEach(([k, v]) => zero.setAttribute(k, String(v)));
  svg.appendChild(zero);
  for (const [x, y] of xy) {
    const dot = document.createElementNS(ns, 'circle');
    dot.setAttribute('cx', x.toFixed(1));
    dot.setAttribute('cy', y.toFixed(1));
    dot.setAttribute('r', '1.8');
    dot.setAttribute('class', 'ew-lab-residual');
    svg.appendChild(dot);
  }
  figure.appendChild(svg);
  return figure;
}

/** The evaluation as a block of the task page. */
export function renderEvaluation(evaluation: IEvaluation): HTMLElement {
  const box = el('div', undefined, 'ew-lab-evaluation');
  box.appendChild(metricsLine(evaluation));
  if (evaluation.task === 'classification') {
    box.appendChild(confusionTable(evaluation));
    box.appendChild(reportTable(evaluation.report ?? []));
  } else {
    box.appendChild(residualPlot(evaluation));
  }
  for (const note of evaluation.notes ?? []) {
    box.appendChild(el('p', note, 'ew-lab-note'));
  }
  return box;
}
