// OCI image archives written from files, without Docker or a registry: gzip'd
// tar layers, a config, a manifest and an index in an OCI image layout, itself
// a tar. `ctr images import`, skopeo (oci-archive:) and crane read it.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tarArchive } from './tar.ts';

export interface ImageConfig {
  user?: string;
  env?: string[];
  entrypoint?: string[];
  cmd?: string[];
  workingDir?: string;
}

export interface Image {
  /** The full reference, e.g. ghcr.io/sigil-dev/sigil:0.1.0. */
  name: string;
  /** Uncompressed layer tars, lowest first. */
  layers: Buffer[];
  config: ImageConfig;
}

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

interface Blob {
  digest: string;
  data: Buffer;
}

function blob(data: Buffer): Blob {
  return { digest: sha256(data), data };
}

/** The image as an OCI layout in one tar (an "oci-archive"). */
export function ociArchive(image: Image): Buffer {
  const layers = image.layers.map((tar) => ({
    diffId: sha256(tar),
    blob: blob(gzipSync(tar, { level: 6 })),
  }));
  const config = blob(
    Buffer.from(
      JSON.stringify({
        created: '1970-01-01T00:00:00Z',
        architecture: 'amd64',
        os: 'linux',
        config: {
          User: image.config.user,
          Env: image.config.env,
          Entrypoint: image.config.entrypoint,
          Cmd: image.config.cmd,
          WorkingDir: image.config.workingDir,
        },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      }),
    ),
  );
  const manifest = blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: { mediaType: MEDIA.config, digest: config.digest, size: config.data.length },
        layers: layers.map((l) => ({
          mediaType: MEDIA.layer,
          digest: l.blob.digest,
          size: l.blob.data.length,
        })),
      }),
    ),
  );
  const tag = image.name.slice(image.name.lastIndexOf(':') + 1);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        mediaType: MEDIA.manifest,
        digest: manifest.digest,
        size: manifest.data.length,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: {
          // containerd names the imported image from this; other tools from ref.name.
          'io.containerd.image.name': image.name,
          'org.opencontainers.image.ref.name': tag,
        },
      },
    ],
  };
  const blobs = [config, manifest, ...layers.map((l) => l.blob)];
  return tarArchive([
    { path: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { path: 'index.json', type: 'file', mode: 0o644, data: Buffer.from(JSON.stringify(index)) },
    { path: 'blobs', type: 'dir', mode: 0o755 },
    { path: 'blobs/sha256', type: 'dir', mode: 0o755 },
    ...blobs.map((b) => ({
      path: `blobs/sha256/${b.digest.slice('sha256:'.length)}`,
      type: 'file' as const,
      mode: 0o644,
      data: b.data,
    })),
  ]);
}
