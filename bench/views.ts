// What the operator's cache keeps of one issued Secret, by key type: COUNT views made from the
// same Secret as the API sends it (each parse gives every view its own strings, as a watch does),
// measured as the V8 heap they hold after a full collection. Run with the project's Node:
//   PATH=node_modules/.bin:$PATH node --expose-gc bench/views.ts

import type { KeySpec } from '../lib/pki/keys.ts';
import { testCA } from '../lib/testing/pki.ts';
import { cachedSecretView } from '../operator/certificates/secret.ts';
import { machine } from './lib.ts';

const COUNT = Number(process.env.COUNT ?? 5000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function bytesPerView(key: KeySpec): Promise<number> {
  const { certPem, keyPem } = await testCA({ key });
  const body = JSON.stringify({
    type: 'kubernetes.io/tls',
    metadata: {
      name: 'app-tls',
      namespace: 'team-a',
      uid: '4c5e0f8e-0c4b-4bde-9d0a-2f6f1c1d2e3f',
      resourceVersion: '1',
      labels: { 'sigil.dev/managed': 'true' },
      annotations: { 'sigil.dev/certificate-name': 'app' },
    },
    data: { 'tls.crt': b64(certPem), 'tls.key': b64(keyPem), 'ca.crt': b64(certPem) },
  });
  gc!();
  const before = process.memoryUsage().heapUsed;
  const kept = Array.from({ length: COUNT }, () =>
    Object.freeze(cachedSecretView(JSON.parse(body), () => true)),
  );
  gc!();
  const bytes = process.memoryUsage().heapUsed - before;
  if (kept.length !== COUNT) throw new Error('views lost');
  return bytes / COUNT;
}

console.log(`machine: ${JSON.stringify(machine())}; COUNT=${COUNT}`);
// One key type per process: what one measure frees would otherwise show in the next.
const which = process.argv[2];
if (which) {
  const [algorithm, size] = which.split('-') as [KeySpec['algorithm'], string];
  const perView = await bytesPerView({ algorithm, size: Number(size) });
  console.log(`${which.padEnd(10)} ${(perView / 1024).toFixed(2)} KiB a cached Secret`);
} else {
  const { execFileSync } = await import('node:child_process');
  for (const k of ['ECDSA-256', 'RSA-2048', 'RSA-4096'])
    process.stdout.write(
      execFileSync(process.execPath, ['--expose-gc', import.meta.filename, k], { encoding: 'utf8' })
        .split('\n')
        .slice(1)
        .join('\n'),
    );
}
