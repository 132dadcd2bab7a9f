import { type CommandSpec, helpText, parseFlags, UsageError } from './flags.ts';

const spec: CommandSpec = {
  name: 'operator',
  description: 'Run the controllers',
  flags: [
    { name: 'kubeconfig', value: '<path>', description: 'kubeconfig file' },
    { name: 'metrics-address', value: '<host:port>', description: 'metrics', default: '0.0.0.0:9402' },
    { name: 'leader-elect', description: 'run without leader election', default: true },
    { name: 'pod-certificates', description: 'sign pod certificates', default: false },
  ],
};

const values = (argv: string[]) => {
  const parsed = parseFlags(spec, argv);
  if ('help' in parsed) throw new Error('help');
  return parsed.values;
};

describe('parseFlags', () => {
  it('should give every flag its default, camel-cased, when none is given', () => {
    expect(values([])).toEqual({
      kubeconfig: undefined,
      metricsAddress: '0.0.0.0:9402',
      leaderElect: true,
      podCertificates: false,
    });
  });

  it('should take values in both spellings, switches, and --no- for a switch that is on by default', () => {
    expect(
      values([
        '--kubeconfig',
        '/k',
        '--metrics-address=127.0.0.1:1',
        '--no-leader-elect',
        '--pod-certificates',
      ]),
    ).toEqual({ kubeconfig: '/k', metricsAddress: '127.0.0.1:1', leaderElect: false, podCertificates: true });
  });

  it.each([
    ['an unknown flag', ['--bogus'], "Unknown option '--bogus'"],
    ['a flag without its value', ['--kubeconfig'], "Option '--kubeconfig <value>' argument missing"],
    ['an argument the command does not take', ['extra'], "Unexpected argument 'extra'"],
  ])('should refuse %s, saying which', (_case, argv, message) => {
    expect(() => parseFlags(spec, argv)).toThrow(UsageError);
    expect(() => parseFlags(spec, argv)).toThrow(message);
  });

  it('should answer --help and -h with help, whatever else is given', () => {
    expect(parseFlags(spec, ['--bogus', '--help'])).toEqual({ help: true });
    expect(parseFlags(spec, ['-h'])).toEqual({ help: true });
  });
});

describe('helpText', () => {
  it('should list each flag with its placeholder and default, and a switch on by default as --no-', () => {
    const text = helpText(spec, 'kubectl sigil');
    expect(text).toContain('Usage: kubectl sigil operator [options]');
    expect(text).toMatch(/--metrics-address <host:port> +metrics \(default: "0\.0\.0\.0:9402"\)/);
    expect(text).toMatch(/--no-leader-elect +run without leader election\n/);
    expect(text).toMatch(/--pod-certificates +sign pod certificates\n/);
  });
});
