/**
 * Small SVG line charts of a task's per-epoch history. `chartGeometry` is the pure part (scales,
 * ticks, path data), `renderChart` draws it; a chart library would be more code to ship than this.
 */
import { IEpochRow, ILineSpec, formatNumber } from './pageData';

export interface IPlotBox {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export interface ILineGeometry extends ILineSpec {
  /** SVG path data; a missing (null) value breaks the line. */
  d: string;
  /** [epoch, value, x, y] of every plotted point. */
  points: [number, number, number, number][];
}

export interface IChartGeometry {
  width: number;
  height: number;
  plot: IPlotBox;
  lines: ILineGeometry[];
  xTicks: { value: number; x: number }[];
  yTicks: { value: number; y: number }[];
}

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    return [lo];
  }
  const raw = (hi - lo) / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** The value range to plot: the finite values with 5 % room, or a unit range around a constant. */
function valueRange(values: number[]): [number, number] {
  if (values.length === 0) {
    return [0, 1];
  }
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi === lo) {
    const room = Math.abs(lo) * 0.1 || 1;
    return [lo - room, hi + room];
  }
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  // A metric that cannot go negative (loss, accuracy, rate) keeps its axis at 0 or above.
  if (lo < 0 && Math.min(...values) >= 0) {
    lo = 0;
  }
  return [lo, hi];
}

/**
 * Where everything of one chart goes: epochs 1..max(`epochs`, the last epoch seen) across, the
 * lines' finite values up.
 */
export function chartGeometry(
  history: IEpochRow[],
  lines: ILineSpec[],
  epochs: number,
  width = 320,
  height = 180
): IChartGeometry {
  const plot: IPlotBox = { left: 52, top: 8, right: width - 10, bottom: height - 24 };
  const lastEpoch = history.reduce((m, row) => Math.max(m, row.epoch), 0);
  const xMax = Math.max(1, epochs, lastEpoch);
  const x = (epoch: number): number =>
    xMax === 1
      ? (plot.left + plot.right) / 2
      : plot.left + ((epoch - 1) / (xMax - 1)) * (plot.right - plot.left);
  const values = history.flatMap(row =>
    lines.map(line => row[line.key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
  );
  const [lo, hi] = valueRange(values);
  const y = (v: number): number => plot.bottom - ((v - lo) / (hi - lo)) * (plot.bottom - plot.top);
  const geometry: ILineGeometry[] = lines.map(line => {
    const points: [number, number, number, number][] = [];
    let d = '';
    let pen = 'M';
    for (const row of history) {
      const v = row[line.key];
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        pen = 'M';
        continue;
      }
      const px = round(x(row.epoch));
      const py = round(y(v));
      points.push([row.epoch, v, px, py]);
      d += `${pen}${px},${py}`;
      pen = 'L';
    }
    return { ...line, d, points };
  });
  const xTicks = niceTicks(1, xMax, Math.min(xMax - 1, 6))
    .filter(v => Number.isInteger(v) && v >= 1)
    .map(value => ({ value, x: round(x(value)) }));
  const yTicks = niceTicks(lo, hi, 4).map(value => ({ value, y: round(y(value)) }));
  return { width, height, plot, lines: geometry, xTicks, yTicks };
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}

const SVG = 'http://www.w3.org/2000/svg';
/** Line colours by position: train, val (JupyterLab's theme colours, so dark themes work). */
const COLOURS = ['var(--jp-brand-color1)', 'var(--jp-warn-color1)'];

function svg(tag: string, attrs: Record<string, string | number>, parent: Element): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    el.setAttribute(name, String(value));
  }
  parent.appendChild(el);
  return el;
}

/** The chart `title` of `lines` drawn into a new element: an SVG and a legend with each line's
 * latest value under it. */
export function renderChart(title: string, history: IEpochRow[], lines: ILineSpec[], epochs: number): HTMLElement {
  const g = chartGeometry(history, lines, epochs);
  const box = document.createElement('figure');
  box.className = 'ew-lab-chart';
  box.dataset.chart = title;
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  box.appendChild(caption);
  const root = svg('svg', { viewBox: `0 0 ${g.width} ${g.height}`, width: g.width, height: g.height }, box);
  for (const tick of g.yTicks) {
    svg('line', { x1: g.plot.left, x2: g.plot.right, y1: tick.y, y2: tick.y, class: 'ew-lab-grid' }, root);
    svg('text', { x: g.plot.left - 4, y: tick.y + 4, 'text-anchor': 'end', class: 'ew-lab-tick' }, root)
      .textContent = formatNumber(tick.value);
  }
  for (const tick of g.xTicks) {
    svg('text', { x: tick.x, y: g.plot.bottom + 16, 'text-anchor': 'middle', class: 'ew-lab-tick' }, root)
      .textContent = String(tick.value);
  }
  svg('line', { x1: g.plot.left, x2: g.plot.right, y1: g.plot.bottom, y2: g.plot.bottom, class: 'ew-lab-axis' }, root);
  const legend = document.createElement('div');
  legend.className = 'ew-lab-legend';
  g.lines.forEach((line, i) => {
    const colour = COLOURS[i % COLOURS.length];
    svg('path', { d: line.d, fill: 'none', stroke: colour, 'stroke-width': 2, class: 'ew-lab-line',
      'data-key': line.key }, root);
    for (const [epoch, value, px, py] of line.points) {
      svg('circle', { cx: px, cy: py, r: 2.5, fill: colour, class: 'ew-lab-dot' }, root)
        .appendChild(document.createElementNS(SVG, 'title')).textContent =
        `epoch ${epoch}: ${line.label} ${formatNumber(value)}`;
    }
    const last = line.points[line.points.length - 1];
    const item = document.createElement('span');
    item.innerHTML = `<i style="background:${colour}"></i>`;
    item.append(`${line.label} ${last ? formatNumber(last[1]) : '–'}`);
    legend.appendChild(item);
  });
  box.appendChild(legend);
  return box;
}
