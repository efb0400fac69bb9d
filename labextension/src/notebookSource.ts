/**
 * The notebooks "Train on this table" and "New training panel" create: a first cell that builds a
 * TrainingPanel on the file (or on generated demo data), and a free name beside the file.
 */

/** File endings the panel's `data_path` reads (trainer/tables.py: CSV and TSV, also compressed,
 * and Parquet). */
const COMPRESSIONS = ['', '.gz', '.bz2', '.xz', '.zip', '.zst'];
export const TABLE_SUFFIXES: string[] = [
  ...['.csv', '.tsv'].flatMap(text => COMPRESSIONS.map(c => text + c)),
  '.parquet',
  '.pq'
];

/** Whether `name` is a table the panel can train on. */
export function isTableFile(name: string): boolean {
  const lower = name.toLowerCase();
  return TABLE_SUFFIXES.some(suffix => lower.endsWith(suffix) && lower.length > suffix.length);
}

/** `name` without its table ending (`sales.csv.gz` -> `sales`). */
export function tableStem(name: string): string {
  const lower = name.toLowerCase();
  const suffix = TABLE_SUFFIXES.filter(s => lower.endsWith(s)).sort((a, b) => b.length - a.length)[0];
  return suffix ? name.slice(0, name.length - suffix.length) : name;
}

/** `<stem>-training.ipynb`, or `<stem>-training-2.ipynb`, ... : the first not in `taken`. */
export function freeNotebookName(stem: string, taken: Iterable<string>): string {
  const names = new Set(taken);
  for (let n = 1; ; n++) {
    const name = `${stem}-training${n === 1 ? '' : `-${n}`}.ipynb`;
    if (!names.has(name)) {
      return name;
    }
  }
}

/** A Python string literal holding `text` (a JSON string is one, escapes included). */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/** The first cell for a table: the panel reads the file itself, from the notebook's folder. */
export function tableCell(fileName: string): string {
  return [
    'from epoch_widgets import TrainingPanel',
    '',
    '# Pick the column to predict (Data: Target column) and the features in the panel, then press Start.',
    `panel = TrainingPanel(data_path=${pythonString(fileName)})`,
    'panel'
  ].join('\n');
}

/** The first cell on generated demo data (the quickstart's classification table). */
export const DEMO_CELL = [
  'from epoch_widgets import TrainingPanel',
  'from trainer.datasets import make_classification',
  '',
  'df = make_classification(rows=20_000, seed=0)    # generated demo data: columns f1..f4 and label',
  'panel = TrainingPanel(data=df, target_column="label", epochs=30)',
  'panel'
].join('\n');

export interface IKernelSpec {
  name: string;
  display_name: string;
}

/** An nbformat 4.5 notebook whose only cell is `source`, for `kernel`. */
export function notebookWith(source: string, kernel: IKernelSpec): Record<string, unknown> {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: kernel.name, display_name: kernel.display_name, language: 'python' },
      language_info: { name: 'python' }
    },
    cells: [
      { cell_type: 'code', id: 'training-panel', metadata: {}, execution_count: null, outputs: [], source }
    ]
  };
}
