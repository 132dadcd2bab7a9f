import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderApiDocs } from '../../hack/gen-api-docs.ts';
import { crdDirectory, loadCrds } from './crds.ts';

describe('the CRDs', () => {
  it('should be structural: every property typed and described', () => {
    const untyped: string[] = [];
    const walk = (s: Record<string, unknown>, path: string) => {
      if (!s.type && !s['x-kubernetes-preserve-unknown-fields']) untyped.push(path);
      if (path.split('.').length > 2 && path !== 'metadata' && !s.description && !path.endsWith('.metadata'))
        untyped.push(`${path} (no description)`);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Record<string, unknown>>))
        walk(v, `${path}.${k}`);
      if (s.items) walk(s.items as Record<string, unknown>, `${path}[]`);
    };
    for (const crd of loadCrds())
      walk(crd.spec.versions[0]!.schema!.openAPIV3Schema as Record<string, unknown>, crd.spec.names.kind);
    expect(untyped.filter((p) => !p.endsWith('[] (no description)'))).toEqual([]);
  });

  it('should be the same in the Helm chart (run make docs after changing a CRD)', () => {
    const dir = crdDirectory();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      expect(readFileSync(join(dir, '..', 'charts', 'sigil', 'files', 'crds', file), 'utf8')).toBe(
        readFileSync(join(dir, file), 'utf8'),
      );
    }
  });

  it('should match docs/api.md (run make docs after changing a CRD)', () => {
    expect(readFileSync(join(crdDirectory(), '..', 'docs', 'api.md'), 'utf8')).toBe(renderApiDocs());
  });
});
