// Certificates a node adds to the local control plane's: the kubelet's serving
// certificate and the API server's client certificate for it, the
// controller-manager's cluster signer, and the CA pods trust for the API
// server relay (apiserver-relay.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSelfSignedCA, loadCertificateAuthority } from '../../pki/ca.ts';
import { issueCertificate } from '../../pki/issue.ts';
import { KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME } from './layout.ts';

const DAY = 86_400_000;

/** Files the API server needs before it starts, to call the kubelet (logs, exec, port-forward). */
export interface KubeletClientPki {
  apiserverArgs: string[];
  dir: string;
}

/**
 * A CA for the kubelet's serving certificate, a CA for its clients and the API
 * server's client certificate: the API server flags that use them are returned
 * so the control plane starts with them.
 */
export async function kubeletClientPki(clusterDir: string): Promise<KubeletClientPki> {
  const dir = join(clusterDir, 'node', 'pki');
  mkdirSync(dir, { recursive: true });
  const now = new Date();
  const span = { notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 365 * DAY) };
  const servingCa = await createSelfSignedCA({ commonName: 'sigil-local-kubelet-ca', ...span });
  const clientCa = await createSelfSignedCA({ commonName: 'sigil-local-kubelet-client-ca', ...span });
  const signingCa = await createSelfSignedCA({ commonName: 'sigil-local-cluster-signer', ...span });
  const inClusterCa = await createSelfSignedCA({ commonName: 'sigil-local-in-cluster-ca', ...span });
  const relay = await issueCertificate(
    loadCertificateAuthority(inClusterCa.certPem, inClusterCa.keyPem, now),
    {
      commonName: 'kubernetes',
      dnsNames: [
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ipAddresses: [KUBERNETES_SERVICE_IP, NODE_IP],
      usages: ['digital signature', 'key encipherment', 'server auth'],
      durationMs: 365 * DAY,
    },
    now,
  );
  const serving = await issueCertificate(
    loadCertificateAuthority(servingCa.certPem, servingCa.keyPem, now),
    {
      commonName: NODE_NAME,
      dnsNames: [NODE_NAME],
      ipAddresses: [NODE_IP],
      usages: ['digital signature', 'key encipherment', 'server auth'],
      durationMs: 365 * DAY,
    },
    now,
  );
  const client = await issueCertificate(
    loadCertificateAuthority(clientCa.certPem, clientCa.keyPem, now),
    {
      commonName: 'kube-apiserver-kubelet-client',
      subject: { organizations: ['system:masters'] },
      usages: ['digital signature', 'key encipherment', 'client auth'],
      durationMs: 365 * DAY,
    },
    now,
  );
  const files: Record<string, string> = {
    'kubelet-ca.crt': servingCa.certPem,
    'kubelet.crt': serving.certificatePem,
    'kubelet.key': serving.privateKeyPem,
    'kubelet-client-ca.crt': clientCa.certPem,
    'apiserver-kubelet-client.crt': client.certificatePem,
    'apiserver-kubelet-client.key': client.privateKeyPem,
    'cluster-signing.crt': signingCa.certPem,
    'cluster-signing.key': signingCa.keyPem,
    'in-cluster-ca.crt': inClusterCa.certPem,
    'apiserver-relay.crt': relay.certificatePem,
    'apiserver-relay.key': relay.privateKeyPem,
  };
  for (const [name, content] of Object.entries(files))
    writeFileSync(join(dir, name), content, { mode: name.endsWith('.key') ? 0o600 : 0o644 });
  return {
    dir,
    apiserverArgs: [
      `--kubelet-client-certificate=${join(dir, 'apiserver-kubelet-client.crt')}`,
      `--kubelet-client-key=${join(dir, 'apiserver-kubelet-client.key')}`,
      `--kubelet-certificate-authority=${join(dir, 'kubelet-ca.crt')}`,
      '--kubelet-preferred-address-types=InternalIP',
      // Webhooks are called at their Service's endpoints, which the host routes to over the pod bridge.
      '--enable-aggregator-routing=true',
    ],
  };
}
