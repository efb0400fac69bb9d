import { confusionShares, residualPoints } from '../evaluationView';

describe('confusionShares', () => {
  it("is each cell's share of its actual class, 0 for a class with no samples", () => {
    expect(confusionShares([[3, 1], [0, 0]])).toEqual([[0.75, 0.25], [0, 0]]);
  });
});

describe('residualPoints', () => {
  it('places larger predictions right, larger residuals higher, and zero between them', () => {
    const { points, zeroY } = residualPoints([1, 2, 3], [-1, 0.5, 1]);
    expect(points[0][0]).toBeLessThan(points[2][0]);
    expect(points[2][1]).toBeLessThan(points[0][1]);
    expect(zeroY).toBeGreaterThan(points[2][1]);
    expect(zeroY).toBeLessThan(points[0][1]);
  });

  it('skips non-finite points', () => {
    expect(residualPoints([1, NaN], [0, 1]).points).toHaveLength(1);
  });
});
