// The JSONPatch that mounts an identity into a pod. Pure.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { bundleKey, Delivery, signerNameFor, TRUST_BUNDLE_CONFIGMAP } from '../lib/api/types.ts';
import { parseDuration } from '../lib/pki/renewal.ts';
import { type Identity, PodAnnotation } from './identity.ts';

/** The operator's default ClusterIssuer when the webhook is not told another. */
export const DEFAULT_ISSUER = 'sigil-ca';

export const VOLUME_NAME = 'sigil-identity';

export interface PatchOp {
  op: 'add' | 'replace';
  path: string;
  value: unknown;
}

export class PatchConflict extends Error {}

const escapePointer = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');

export function envFor(identity: Identity) {
  return [
    { name: 'SIGIL_CERT_FILE', value: `${identity.mountPath}/tls.crt` },
    { name: 'SIGIL_KEY_FILE', value: `${identity.mountPath}/tls.key` },
    { name: 'SIGIL_CA_FILE', value: `${identity.mountPath}/ca.crt` },
    { name: 'SIGIL_SPIFFE_ID', value: identity.spiffeId },
  ];
}

/**
 * How a pod's identity is delivered: the namespace's sigil.dev/delivery label, else the issuer's
 * spec.delivery, else Secret. An unknown label value is an error for the caller to report.
 */
export function deliveryFor(
  namespaceLabel: string | undefined,
  issuerDelivery: string | undefined,
): Delivery | { problem: string } {
  const values: string[] = Object.values(Delivery);
  if (namespaceLabel !== undefined) {
    if (values.includes(namespaceLabel)) return namespaceLabel as Delivery;
    return {
      problem: `the namespace's label sigil.dev/delivery=${namespaceLabel.slice(0, 63)} is neither ${values.join(' nor ')}; fix or remove the label`,
    };
  }
  return issuerDelivery === Delivery.PodCertificate ? Delivery.PodCertificate : Delivery.Secret;
}

/** The signer name of the issuer a pod's identity comes from. */
export function identitySignerName(identity: Identity, defaultIssuer: string): string {
  const ref = identity.issuerRef ?? { kind: 'ClusterIssuer' as const, name: defaultIssuer };
  return signerNameFor(ref.kind, identity.namespace, ref.name);
}

/**
 * The projected sources of the kubelet path: the key is generated on the node and the chain
 * comes from the signer, into the same tls.key and tls.crt files a Secret gives (the kubelet
 * writes the volume atomically, so the two never disagree); ca.crt is every ClusterTrustBundle of
 * the signer, deduplicated, so a rotation's overlapping CAs arrive together.
 */
function podCertificateSources(identity: Identity, defaultIssuer: string) {
  const signerName = identitySignerName(identity, defaultIssuer);
  const durationMs = identity.duration ? parseDuration(identity.duration) : undefined;
  return [
    {
      podCertificate: {
        signerName,
        keyType: 'ECDSAP256',
        keyPath: 'tls.key',
        certificateChainPath: 'tls.crt',
        ...(durationMs ? { maxExpirationSeconds: Math.round(durationMs / 1000) } : {}),
        ...(identity.dnsNames.length > 0
          ? { userAnnotations: { 'sigil.dev/dns-names': identity.dnsNames.join(',') } }
          : {}),
      },
    },
    { clusterTrustBundle: { signerName, labelSelector: {}, path: 'ca.crt' } },
  ];
}

/** True when the pod already went through the webhook. */
export function alreadyInjected(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[PodAnnotation.Status] === 'injected';
}

/**
 * Builds the patch. Throws PatchConflict when the pod already uses the volume
 * name, the mount path or one of the environment variables for something else.
 */
export function buildPatch(
  pod: V1Pod,
  identity: Identity,
  defaultIssuer = DEFAULT_ISSUER,
  delivery: Delivery = Delivery.Secret,
): PatchOp[] {
  const ops: PatchOp[] = [];
  const spec = pod.spec ?? { containers: [] };
  if ((spec.volumes ?? []).some((v) => v.name === VOLUME_NAME)) {
    throw new PatchConflict(
      `the pod already has a volume named ${VOLUME_NAME}; rename it or remove the sigil.dev/inject opt-in`,
    );
  }
  const all: [string, V1Container[] | undefined][] = [
    ['initContainers', spec.initContainers],
    ['containers', spec.containers],
  ];
  const known = new Set(all.flatMap(([, cs]) => (cs ?? []).map((c) => c.name)));
  for (const name of identity.containers ?? []) {
    if (!known.has(name)) {
      throw new PatchConflict(
        `annotation ${PodAnnotation.Containers} names container "${name}", which the pod does not have`,
      );
    }
  }
  const volume = {
    name: VOLUME_NAME,
    projected: {
      // Readable by any user the containers run as; the volume is private to the pod.
      defaultMode: 0o444,
      sources:
        delivery === Delivery.PodCertificate
          ? podCertificateSources(identity, defaultIssuer)
          : [
              {
                secret: {
                  name: identity.certificateName,
                  items: [
                    { key: 'tls.crt', path: 'tls.crt' },
                    { key: 'tls.key', path: 'tls.key' },
                  ],
                },
              },
              // ca.crt is the issuer's trust bundle from the namespace's ConfigMap: a rotation rewrites one
              // object per namespace, and every pod of the namespace sees it on the kubelet's next sync.
              {
                configMap: {
                  name: TRUST_BUNDLE_CONFIGMAP,
                  items: [
                    {
                      key: bundleKey(
                        identity.issuerRef?.kind ?? 'ClusterIssuer',
                        identity.issuerRef?.name ?? defaultIssuer,
                      ),
                      path: 'ca.crt',
                    },
                  ],
                },
              },
            ],
    },
  };
  ops.push(
    spec.volumes
      ? { op: 'add', path: '/spec/volumes/-', value: volume }
      : { op: 'add', path: '/spec/volumes', value: [volume] },
  );
  // A set, not identity.containers.includes in the loop: a pod may have very many containers.
  const selected = identity.containers ? new Set(identity.containers) : undefined;
  const mount = { name: VOLUME_NAME, mountPath: identity.mountPath, readOnly: true };
  const env = envFor(identity);
  for (const [field, containers] of all) {
    (containers ?? []).forEach((c, i) => {
      if (selected && !selected.has(c.name)) return;
      const base = `/spec/${field}/${i}`;
      const clash = (c.volumeMounts ?? []).find((m) => m.mountPath === identity.mountPath);
      if (clash) {
        throw new PatchConflict(
          `container "${c.name}" already mounts ${clash.name} at ${identity.mountPath}; set ${PodAnnotation.MountPath} to another path`,
        );
      }
      ops.push(
        c.volumeMounts
          ? { op: 'add', path: `${base}/volumeMounts/-`, value: mount }
          : { op: 'add', path: `${base}/volumeMounts`, value: [mount] },
      );
      const existing = new Map((c.env ?? []).map((e) => [e.name, e]));
      for (const e of env) {
        const have = existing.get(e.name);
        if (have && have.value !== e.value) {
          throw new PatchConflict(
            `container "${c.name}" already sets ${e.name}; remove it so Sigil can set it`,
          );
        }
      }
      const missing = env.filter((e) => !existing.has(e.name));
      if (missing.length === 0) return;
      if (c.env) for (const e of missing) ops.push({ op: 'add', path: `${base}/env/-`, value: e });
      else ops.push({ op: 'add', path: `${base}/env`, value: missing });
    });
  }
  // With the kubelet path there is no Certificate: nothing names one, and identity GC has none to keep.
  const podCertificate = delivery === Delivery.PodCertificate;
  const annotations = {
    [PodAnnotation.Status]: 'injected',
    ...(podCertificate ? { [PodAnnotation.Delivery]: Delivery.PodCertificate } : {}),
    ...(podCertificate ? {} : { [PodAnnotation.CertificateName]: identity.certificateName }),
  };
  if (!pod.metadata?.annotations) ops.push({ op: 'add', path: '/metadata/annotations', value: annotations });
  else
    for (const [k, v] of Object.entries(annotations))
      ops.push({ op: 'add', path: `/metadata/annotations/${escapePointer(k)}`, value: v });
  if (podCertificate) return ops;
  const labels = { 'sigil.dev/identity': identity.certificateName };
  if (!pod.metadata?.labels) ops.push({ op: 'add', path: '/metadata/labels', value: labels });
  else
    for (const [k, v] of Object.entries(labels))
      ops.push({ op: 'add', path: `/metadata/labels/${escapePointer(k)}`, value: v });
  return ops;
}
