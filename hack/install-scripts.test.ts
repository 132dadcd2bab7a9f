// Every dependency with an install script is reviewed in package.json's allowScripts (npm 11
// lists unreviewed ones after every install; npm 12 will not run them). Update both together.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../lib/testing/node/images.ts';

describe('install scripts', () => {
  it('should all be reviewed in allowScripts, at the versions the lockfile installs', () => {
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string; hasInstallScript?: boolean }>;
    };
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      allowScripts?: Record<string, boolean>;
    };
    const withScripts = Object.entries(lock.packages)
      .filter(([path, p]) => path !== '' && p.hasInstallScript)
      .map(
        ([path, p]) =>
          `${path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)}@${p.version}`,
      )
      .sort();
    expect(withScripts.length).toBeGreaterThan(0);
    expect(Object.keys(pkg.allowScripts ?? {}).sort()).toEqual(withScripts);
  });
});
