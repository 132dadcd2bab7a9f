// The node's two images, built from this checkout's files: the pod sandbox
// (hack/pause, a static Go binary) and Sigil itself, the content the
// Dockerfile describes: Node 24 with the glibc files it loads, dist/bundle
// (the code and its production dependencies in one module) and the CRDs, run
// as 65532.
import { execFileSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { type Image, ociArchive } from './oci.ts';
import type { TarEntry } from './tar.ts';
import { tarArchive } from './tar.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The sandbox image containerd runs first in every pod. */
export const PAUSE_IMAGE = 'sigil.local/pause:1';

/** Where `make image` writes the archives. */
export const IMAGE_DIR = join(REPO_ROOT, 'dist', 'images');

const NONROOT = 65532;

/** The image the chart installs by default: values' image.repository at the chart's appVersion. */
export function chartImage(): string {
  const values = parse(readFileSync(join(REPO_ROOT, 'charts/sigil/values.yaml'), 'utf8')) as {
    image: { repository: string; tag?: string };
  };
  const chart = parse(readFileSync(join(REPO_ROOT, 'charts/sigil/Chart.yaml'), 'utf8')) as {
    appVersion: string;
  };
  return `${values.image.repository}:${values.image.tag || chart.appVersion}`;
}

/** Parent directories of `path` (inside the image), outermost first. */
function parents(path: string): string[] {
  const parts = path.split('/').slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

/** Collects entries, adding each parent directory once, root-owned and 0755. */
class Layer {
  private readonly entries: TarEntry[] = [];
  private readonly seen = new Set<string>();

  dir(path: string, mode = 0o755) {
    for (const parent of parents(path)) this.addDir(parent, 0o755);
    this.addDir(path, mode);
  }

  private addDir(path: string, mode: number) {
    if (this.seen.has(path)) return;
    this.seen.add(path);
    this.entries.push({ path, type: 'dir', mode });
  }

  file(path: string, data: Buffer, mode: number) {
    for (const parent of parents(path)) this.addDir(parent, 0o755);
    this.entries.push({ path, type: 'file', mode, data });
  }

  /** A host file, its symlinks followed, at `path` in the image. */
  hostFile(path: string, hostPath: string) {
    const real = realpathSync(hostPath);
    this.file(path, readFileSync(real), lstatSync(real).mode & 0o755);
  }

  /** A host directory tree at `path`, symlinks kept, skipping names `skip` rejects. */
  hostTree(path: string, hostDir: string, skip: (name: string, rel: string) => boolean = () => false) {
    this.dir(path);
    const walk = (dir: string) => {
      for (const name of readdirSync(dir).sort()) {
        const host = join(dir, name);
        const rel = relative(hostDir, host);
        if (skip(name, rel)) continue;
        const target = `${path}/${rel}`;
        const stat = lstatSync(host);
        if (stat.isSymbolicLink())
          this.entries.push({ path: target, type: 'symlink', mode: 0o777, linkname: readlinkSync(host) });
        else if (stat.isDirectory()) {
          this.addDir(target, 0o755);
          walk(host);
        } else if (stat.isFile())
          this.entries.push({
            path: target,
            type: 'file',
            mode: stat.mode & 0o755,
            data: readFileSync(host),
          });
      }
    };
    walk(hostDir);
  }

  tar(): Buffer {
    return tarArchive(this.entries);
  }
}

/** The pause binary, built from hack/pause into the machine's cache. */
function buildPause(): string {
  const out = join(IMAGE_DIR, 'pause');
  mkdirSync(IMAGE_DIR, { recursive: true });
  execFileSync('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', out, '.'], {
    cwd: join(REPO_ROOT, 'hack', 'pause'),
    env: { ...process.env, CGO_ENABLED: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return out;
}

export function pauseImage(): Image {
  const layer = new Layer();
  layer.hostFile('pause', buildPause());
  return {
    name: PAUSE_IMAGE,
    layers: [layer.tar()],
    config: { entrypoint: ['/pause'], user: '65535:65535' },
  };
}

/** The shared libraries (and loader) `ldd` lists for a binary: the files glibc needs at run time. */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const paths = new Set<string>();
  for (const line of out.split('\n')) {
    const match = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (match) paths.add(match[1]!);
  }
  return [...paths];
}

export function sigilImage(name = chartImage()): Image {
  const base = new Layer();
  const nodeBinary = realpathSync(join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node'));
  base.hostFile('usr/local/bin/node', nodeBinary);
  for (const library of sharedLibraries(nodeBinary)) base.hostFile(library.slice(1), library);
  base.dir('tmp', 0o1777);
  base.file(
    'etc/passwd',
    Buffer.from(
      'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n',
    ),
    0o644,
  );
  base.file('etc/group', Buffer.from('root:x:0:\nnonroot:x:65532:\n'), 0o644);
  base.dir('home/nonroot', 0o755);

  // dist/bundle holds the code and its production dependencies in one module (hack/bundle.ts):
  // no node_modules.
  const app = new Layer();
  app.file('app/package.json', readFileSync(join(REPO_ROOT, 'package.json')), 0o644);
  app.hostTree('app/dist/bundle', join(REPO_ROOT, 'dist', 'bundle'));
  // sigil/mtls, for services on this image, where package.json's exports name it.
  app.file('app/dist/lib/mtls/index.js', readFileSync(join(REPO_ROOT, 'dist', 'bundle', 'mtls.mjs')), 0o644);
  app.hostTree('app/crds', join(REPO_ROOT, 'crds'));

  return {
    name,
    layers: [base.tar(), app.tar()],
    config: {
      user: `${NONROOT}:${NONROOT}`,
      env: [
        'PATH=/usr/local/bin:/usr/bin:/bin',
        'NODE_ENV=production',
        // As in the Dockerfile: a smaller young generation keeps RSS lower under bursts.
        'NODE_OPTIONS=--max-semi-space-size=8',
      ],
      entrypoint: ['/usr/local/bin/node', '/app/dist/bundle/sigil.mjs'],
      workingDir: '/app',
    },
  };
}

/** Writes `image` as an OCI archive into IMAGE_DIR and returns its path. */
export function writeImage(image: Image, file: string): string {
  mkdirSync(IMAGE_DIR, { recursive: true });
  const path = join(IMAGE_DIR, file);
  writeFileSync(path, ociArchive(image));
  return path;
}
