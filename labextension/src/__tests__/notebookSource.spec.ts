import {
  DEMO_CELL, freeNotebookName, isTableFile, notebookWith, pythonString, tableCell, tableStem
} from '../notebookSource';

describe('isTableFile', () => {
  it('accepts the files the panel reads and nothing else', () => {
    for (const name of ['a.csv', 'B.TSV', 'x.csv.gz', 'y.tsv.bz2', 'z.parquet', 'p.pq']) {
      expect(isTableFile(name)).toBe(true);
    }
    for (const name of ['a.txt', 'csv', '.csv', 'a.parquet.gz', 'notes.ipynb', 'a.csvx']) {
      expect(isTableFile(name)).toBe(false);
    }
  });

  it('names the notebook after the table without its endings', () => {
    expect(tableStem('sales.csv.gz')).toBe('sales');
    expect(tableStem('Train.Parquet')).toBe('Train');
  });
});

describe('freeNotebookName', () => {
  it('never takes the name of a file already in the folder', () => {
    expect(freeNotebookName('sales', ['sales.csv'])).toBe('sales-training.ipynb');
    expect(freeNotebookName('sales', ['sales-training.ipynb', 'sales-training-2.ipynb'])).toBe('sales-training-3.ipynb');
  });
});

describe('cells', () => {
  it('gives the panel the file name as a Python string, quotes and backslashes escaped', () => {
    expect(pythonString('a "b"\\c.csv')).toBe('"a \\"b\\"\\\\c.csv"');
    expect(tableCell('my data.csv')).toContain('panel = TrainingPanel(data_path="my data.csv")');
  });

  it('builds the demo panel on the generated classification data', () => {
    expect(DEMO_CELL).toContain('make_classification(');
    expect(DEMO_CELL).toContain('target_column="label"');
  });

  it('writes an nbformat 4.5 notebook with the kernel and one code cell', () => {
    const nb = notebookWith('x = 1', { name: 'python3', display_name: 'Python 3 (ipykernel)' }) as any;
    expect(nb.nbformat).toBe(4);
    expect(nb.metadata.kernelspec.name).toBe('python3');
    expect(nb.cells).toHaveLength(1);
    expect(nb.cells[0]).toMatchObject({ cell_type: 'code', source: 'x = 1', outputs: [] });
  });
});
