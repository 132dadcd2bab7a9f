// Sigil's kinds are named like cert-manager's (Certificate, Issuer, ClusterIssuer). Beside
// cert-manager, `kubectl get certificate` resolves to cert-manager's resource, so every kubectl
// command Sigil prints or documents names Sigil's fully (certificates.sigil.dev) or by a Sigil
// short name (scert, sissuer, sclusterissuer). test/e2e/kubectl.test.ts runs those forms with
// cert-manager's CRDs installed.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '../lib/testing/node/images.ts';

/** A kubectl command line naming one of the shared kinds without its group. */
const AMBIGUOUS = /kubectl\b[^`'"\n]*?\s(certificates?|certs?|issuers?|clusterissuers?)(?=[\s/`'")]|$)/i;

function files(dir: string, keep: (path: string) => boolean): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory())
      return name === 'node_modules' || name === 'testing' ? [] : files(path, keep);
    return keep(path) ? [path] : [];
  });
}

describe('kubectl commands Sigil prints or documents', () => {
  const sources = [
    join(REPO_ROOT, 'README.md'),
    ...files(join(REPO_ROOT, 'charts'), (p) => /\.(md|txt|yaml|tpl)$/.test(p)),
    ...files(join(REPO_ROOT, 'docs'), (p) => p.endsWith('.md')),
    ...files(join(REPO_ROOT, 'examples'), () => true),
    ...['operator', 'webhook', 'cli', 'lib'].flatMap((d) =>
      files(join(REPO_ROOT, d), (p) => p.endsWith('.ts') && !p.endsWith('.test.ts')),
    ),
  ];

  it('should be read', () => {
    expect(sources.length).toBeGreaterThan(50);
    expect(AMBIGUOUS.test('kubectl get certificate web')).toBe(true);
    expect(AMBIGUOUS.test('kubectl -n shop wait --for=condition=Ready certificates/web')).toBe(true);
    expect(AMBIGUOUS.test('kubectl get clusterissuer sigil-ca   # READY True')).toBe(true);
    expect(AMBIGUOUS.test('kubectl get certificates.sigil.dev -A')).toBe(false);
    expect(AMBIGUOUS.test('kubectl get scert web')).toBe(false);
  });

  it('should name Sigil resources fully or by a Sigil short name everywhere', () => {
    const found = sources.flatMap((path) =>
      readFileSync(path, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${relative(REPO_ROOT, path)}:${i + 1}` }))
        // A line saying what the short form means beside cert-manager is the warning, not an instruction.
        .filter(({ line }) => AMBIGUOUS.test(line) && !line.includes("means cert-manager's"))
        .map(({ line, at }) => `${at}: ${line.trim()}`),
    );
    expect(found).toEqual([]);
  });
});
