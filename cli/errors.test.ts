import { ApiException } from '@kubernetes/client-node';
import { CommanderError } from 'commander';
import { doctorSummary } from './doctor.ts';
import { CliError, commanderExit, describeCliError, Exit } from './errors.ts';

const api = (code: number, message?: string) =>
  new ApiException(code, 'failed', message ? JSON.stringify({ kind: 'Status', message }) : '', {});
const at = { server: 'https://10.0.0.1:6443', kubeconfig: '/home/me/.kube/config' };

describe('CLI errors in one line', () => {
  it.each([
    [
      api(401),
      'the API server at https://10.0.0.1:6443 refused the credentials in the kubeconfig (from /home/me/.kube/config) (401 Unauthorized)',
    ],
    [
      api(403, 'certificates.sigil.dev is forbidden: User "me" cannot list'),
      'not allowed: certificates.sigil.dev is forbidden',
    ],
    [
      api(404, 'the server could not find the requested resource'),
      "Sigil's resources (sigil.dev) are not installed in the cluster at https://10.0.0.1:6443",
    ],
    [
      api(429, 'too many requests'),
      'is too busy to answer (429 Too Many Requests; right after an install it may still be starting): retry in a few seconds',
    ],
    [api(500, 'etcdserver: request timed out'), 'answered 500: etcdserver: request timed out'],
    [
      Object.assign(new TypeError('fetch failed'), {
        cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      }),
      'cannot reach the API server at https://10.0.0.1:6443 (from /home/me/.kube/config): connection refused',
    ],
    [
      Object.assign(new TypeError('fetch failed'), {
        cause: Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }),
      }),
      'its host name does not resolve',
    ],
    [new CliError('give a Certificate name or --all'), 'give a Certificate name or --all'],
  ])('%#: should say what failed and what to do', (err, text) => {
    const line = describeCliError(err, at);
    expect(line).toContain(text);
    expect(line).not.toContain('\n');
  });

  it('should make usage errors exit 2 and help exit 0', () => {
    expect(commanderExit(new CommanderError(1, 'commander.unknownCommand', 'x'))).toBe(Exit.Error);
    expect(commanderExit(new CommanderError(1, 'commander.help', 'x'))).toBe(Exit.Error);
    expect(commanderExit(new CommanderError(0, 'commander.helpDisplayed', 'x'))).toBe(Exit.Ok);
  });
});

describe('sigil doctor summary', () => {
  it.each([
    [[{ level: 'ok' as const }], 'no problems found'],
    [[{ level: 'ok' as const }, { level: 'warn' as const }], '1 warning'],
    [
      [{ level: 'fail' as const }, { level: 'fail' as const }, { level: 'warn' as const }],
      '2 problems, 1 warning',
    ],
  ])('%#: should count what the lines show', (findings, text) => {
    expect(doctorSummary(findings)).toBe(text);
  });
});
