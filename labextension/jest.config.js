// Jest runs the pure modules (task-list state, stream parsing) under ts-jest in Node; the widgets
// themselves are driven in a real JupyterLab by the browser test (tests/browser/).
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/src'],
  testRegex: '.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  }
};
