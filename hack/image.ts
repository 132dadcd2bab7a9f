// make image: the Sigil image and the node's pause image as OCI archives in
// dist/images/, built from this checkout without Docker or a registry, and
// loaded into the running node (make cluster-up) if there is one.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { chartImage, pauseImage, sigilImage, writeImage } from '../lib/testing/node/images.ts';
import { importImage, isRunning, readNodeState } from '../lib/testing/node/node.ts';

const dir = resolve(process.env.SIGIL_CLUSTER_DIR ?? '.cluster');
const started = Date.now();
const name = chartImage();
const tag = name.slice(name.lastIndexOf(':') + 1);
const archives = [
  writeImage(pauseImage(), 'pause.oci.tar'),
  writeImage(sigilImage(name), `sigil-${tag}.oci.tar`),
];
for (const archive of archives)
  console.log(`${archive} (${(statSync(archive).size / 2 ** 20).toFixed(1)} MiB)`);
console.log(`${name} written in ${((Date.now() - started) / 1000).toFixed(1)} s`);

const node = readNodeState(dir);
if (node && isRunning(node, 'containerd')) {
  for (const archive of archives) importImage(node, archive);
  console.log(`loaded into the node's containerd (${dir})`);
} else {
  console.log('no node running: make cluster-up loads the archives when it starts one');
}
console.log(
  `to use it elsewhere: skopeo copy oci-archive:${archives[1]} docker://<registry>/sigil:${tag}, then helm install --set image.repository=<registry>/sigil`,
);
