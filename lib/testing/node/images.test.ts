import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { chartImage, REPO_ROOT } from './images.ts';

/** Every container image named in a YAML file, at any depth. */
function images(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(images);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, v]) =>
    key === 'image' && typeof v === 'string' ? [v] : images(v),
  );
}

describe('the examples', () => {
  it('should run the image the chart installs, so make image and helm install are all they need', () => {
    const dir = join(REPO_ROOT, 'examples', 'mtls');
    const named = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).flatMap((d) => images(d.toJS())));
    expect(named.length).toBeGreaterThanOrEqual(2);
    expect(new Set(named)).toEqual(new Set([chartImage()]));
  });
});
