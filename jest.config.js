// Two projects: `unit` runs the pure-logic tests beside the code; `integration`
// runs test/ against a real kube-apiserver and etcd started once per run.
const transform = {
  '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
};

export default {
  testTimeout: 60_000,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      extensionsToTreatAsEsm: ['.ts'],
      resolver: '<rootDir>/test/support/resolver.cjs',
      transform,
      testMatch: ['<rootDir>/{lib,operator,webhook,cli,hack}/**/*.test.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      extensionsToTreatAsEsm: ['.ts'],
      resolver: '<rootDir>/test/support/resolver.cjs',
      transform,
      testMatch: ['<rootDir>/test/*.test.ts', '<rootDir>/test/security/*.test.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.mjs',
      globalTeardown: '<rootDir>/test/support/global-teardown.mjs',
    },
    {
      // make test-faults: each file starts and breaks its own control plane.
      displayName: 'faults',
      testEnvironment: 'node',
      extensionsToTreatAsEsm: ['.ts'],
      transform,
      resolver: '<rootDir>/test/support/resolver.cjs',
      testMatch: ['<rootDir>/test/faults/*.test.ts'],
    },
    {
      // make test-e2e: one real node (kubelet, containerd) per machine, so one file at a time.
      displayName: 'e2e',
      testEnvironment: 'node',
      extensionsToTreatAsEsm: ['.ts'],
      transform,
      resolver: '<rootDir>/test/support/resolver.cjs',
      testMatch: ['<rootDir>/test/e2e/*.test.ts'],
    },
  ],
};
