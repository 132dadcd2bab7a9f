// Builds the Secret a Certificate's issuance writes, and what the operator's
// cache keeps of Secrets. Pure: existing metadata that other tools added is
// kept; Sigil's labels and annotations are laid on top.

import type { V1OwnerReference, V1Secret } from '@kubernetes/client-node';
import { Annotation, type Certificate, Label } from '../../lib/api/types.ts';
import { Interner } from '../../lib/lru.ts';
import { displaySerial } from '../../lib/pki/certificate.ts';
import { type KeyFingerprint, keyFingerprint } from '../../lib/pki/inspect.ts';
import type { IssuedCertificate } from '../../lib/pki/issue.ts';

export interface SecretInputs {
  certificate: Certificate;
  issued: IssuedCertificate;
  issuerKind: string;
  issuerName: string;
  existing: V1Secret | undefined;
  ownerReference: boolean;
}

export function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

/** At most this many labels, and this many annotations, in spec.secretTemplate. */
export const MAX_TEMPLATE_ENTRIES = 64;
/** The most characters the template's annotation keys and values may add up to. */
export const MAX_TEMPLATE_ANNOTATION_CHARS = 64 * 1024;
const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function qualifiedName(key: string): boolean {
  const slash = key.lastIndexOf('/');
  return QUALIFIED_NAME.test(key) && slash <= 253 && key.length - slash - 1 <= 63;
}

/**
 * What is wrong with a secretTemplate, by the bounds the CRD's schema sets
 * (Kubernetes' own for labels and annotations, and 64 KiB of annotations).
 * The schema refuses such a template at admission; this catches one stored
 * before the schema had the bounds, or under an older CRD, before Sigil
 * copies it into a Secret and its cache. Sigil's own sigil.dev/ keys are not a
 * problem: Sigil's values replace them.
 */
export function secretTemplateProblems(template: Certificate['spec']['secretTemplate']): string[] {
  const problems: string[] = [];
  const labels = Object.entries(template?.labels ?? {});
  const annotations = Object.entries(template?.annotations ?? {});
  if (labels.length > MAX_TEMPLATE_ENTRIES)
    problems.push(
      `secretTemplate.labels has ${labels.length} entries, at most ${MAX_TEMPLATE_ENTRIES} are allowed`,
    );
  if (annotations.length > MAX_TEMPLATE_ENTRIES)
    problems.push(
      `secretTemplate.annotations has ${annotations.length} entries, at most ${MAX_TEMPLATE_ENTRIES} are allowed`,
    );
  const shown = (k: string) => JSON.stringify(k.length > 80 ? `${k.slice(0, 80)}…` : k);
  for (const [k, v] of labels) {
    if (!qualifiedName(k)) problems.push(`secretTemplate.labels key ${shown(k)} is not a qualified name`);
    else if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      problems.push(
        `secretTemplate.labels value of ${shown(k)} is not a label value (at most 63 characters)`,
      );
  }
  let chars = 0;
  for (const [k, v] of annotations) {
    if (!qualifiedName(k))
      problems.push(`secretTemplate.annotations key ${shown(k)} is not a qualified name`);
    chars += k.length + (typeof v === 'string' ? v.length : 0);
  }
  if (chars > MAX_TEMPLATE_ANNOTATION_CHARS)
    problems.push(
      `secretTemplate.annotations add up to ${chars} characters, at most ${MAX_TEMPLATE_ANNOTATION_CHARS} are allowed`,
    );
  return problems;
}

/** A secretTemplate Sigil refuses to copy into a Secret. */
export class SecretTemplateRefused extends Error {}

/**
 * Sigil's own metadata on the Secret (labels, annotations), given the
 * Certificate. Throws SecretTemplateRefused for a template beyond the bounds.
 */
export function managedMetadata(certificate: Certificate, issuerKind: string, issuerName: string) {
  const problems = secretTemplateProblems(certificate.spec.secretTemplate);
  if (problems.length > 0)
    throw new SecretTemplateRefused(
      `The Secret is not written: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''}. Fix spec.secretTemplate`,
    );
  return {
    labels: { ...(certificate.spec.secretTemplate?.labels ?? {}), [Label.Managed]: 'true' },
    annotations: {
      ...(certificate.spec.secretTemplate?.annotations ?? {}),
      [Annotation.CertificateName]: certificate.metadata.name!,
      [Annotation.IssuerName]: issuerName,
      [Annotation.IssuerKind]: issuerKind,
    },
  };
}

export function ownerReferenceFor(certificate: Certificate): V1OwnerReference {
  return {
    apiVersion: certificate.apiVersion,
    kind: 'Certificate',
    name: certificate.metadata.name!,
    uid: certificate.metadata.uid!,
    controller: true,
    blockOwnerDeletion: false,
  };
}

/** The data keys Sigil writes and reads; the only ones its cache keeps. */
export const TLS_KEYS = ['tls.crt', 'tls.key', 'ca.crt'] as const;
/** Base64 of the largest PEM bundle Sigil reads back (256 KiB); a larger value is dropped from the cache. */
const MAX_CACHED_VALUE_CHARS = Math.ceil((256 * 1024) / 3) * 4;

const partialViews = new WeakSet<V1Secret>();
/** The fingerprint of each cached view's tls.key, which the view itself does not keep. */
const cachedKeys = new WeakMap<V1Secret, KeyFingerprint>();

/**
 * ca.crt values seen lately, each kept once: every Secret of an issuer holds the same trust
 * bundle, and a cache of 10,000 Secrets held 10,000 copies of it (about 0.8 KiB each for one
 * ECDSA CA). Bounded in count and size, least recently used first out: a tenant rewriting its
 * Secrets' ca.crt with many values can pin at most 64 x 16 KiB here after those Secrets are
 * gone, and the issuers' bundles in use stay in, since every look at their Secrets refreshes them.
 */
/** At most 64 values of base64 of 12 KiB of PEM, about a dozen CA certificates: a real trust bundle fits. */
const sharedBundles = new Interner(64, 16 * 1024);

/** The one copy of a ca.crt value (base64) that cached views and the controller's own records share. */
export function sharedBundle(value: string): string {
  return sharedBundles.intern(value);
}

/** True when the cache dropped some of this Secret's TLS data: read it from the API before relying on it. */
export function isPartialView(secret: V1Secret): boolean {
  return partialViews.has(secret);
}

/**
 * What the cache knows of a cached view's tls.key (its public key's fingerprint, or why it does not
 * parse); undefined for a Secret read from the API, which has its tls.key, or one without a key.
 */
export function cachedKeyOf(secret: V1Secret): KeyFingerprint | undefined {
  return cachedKeys.get(secret);
}

/**
 * The fingerprint of a view of the same Secret at the same resourceVersion (the same content): a
 * relist, and the watch event of a write whose answer came first, do not parse the key again.
 */
function knownKey(
  meta: { uid?: string | undefined; resourceVersion?: string | undefined },
  previous: readonly (V1Secret | undefined)[],
): KeyFingerprint | undefined {
  if (!meta.uid || !meta.resourceVersion) return undefined;
  for (const p of previous)
    if (p && p.metadata?.uid === meta.uid && p.metadata.resourceVersion === meta.resourceVersion) {
      const known = cachedKeys.get(p);
      if (known) return known;
    }
  return undefined;
}

/** True when the Secret has a tls.key, in its data or as a cached view's fingerprint. */
export function hasPrivateKey(secret: V1Secret | undefined): boolean {
  return !!secret && (!!secret.data?.['tls.key'] || cachedKeys.has(secret));
}

/**
 * What the operator caches of a Secret carrying the managed label. The label
 * selector is the server-side filter, but anyone who may write Secrets can set
 * the label, so it proves nothing. A Secret whose certificate-name annotation
 * names a Certificate that uses it (`claimed`) keeps its metadata and the three
 * TLS keys (each at most what Sigil parses); any other keeps only its name,
 * type, resourceVersion and Sigil's own labels and annotations, no data.
 *
 * Of tls.key only the fingerprint of its public key is kept (cachedKeyOf): the
 * operator's memory holds no tenant's private key at rest, and with 1,000 RSA
 * 2048 keys about 2 MiB less. The one use of the key itself, to keep it across
 * a renewal (rotationPolicy: Never), reads the Secret.
 */
export function cachedSecretView(
  secret: V1Secret,
  claimed: (secret: V1Secret) => boolean,
  /** Views already made of this Secret (cached, just written): one at the same resourceVersion lends its fingerprint. */
  previous: readonly (V1Secret | undefined)[] = [],
): V1Secret {
  const meta = secret.metadata ?? {};
  const isClaimed =
    secret.type === 'kubernetes.io/tls' &&
    !!meta.annotations?.[Annotation.CertificateName] &&
    claimed(secret);
  const data: Record<string, string> = {};
  let dropped = false;
  let key: KeyFingerprint | undefined;
  if (isClaimed) {
    for (const k of TLS_KEYS) {
      const v = secret.data?.[k];
      if (v === undefined) continue;
      if (v.length > MAX_CACHED_VALUE_CHARS) dropped = true;
      else if (k === 'tls.key' && v !== '')
        key =
          knownKey(meta, previous) ??
          keyFingerprint(Buffer.from(v, 'base64'), `Secret ${meta.namespace}/${meta.name}`);
      else data[k] = k === 'ca.crt' ? sharedBundle(v) : v;
    }
    const view: V1Secret = {
      apiVersion: secret.apiVersion,
      kind: secret.kind,
      type: secret.type,
      metadata: meta,
      data,
    };
    if (dropped) partialViews.add(view);
    if (key) cachedKeys.set(view, key);
    return view;
  }
  const sigilOnly = (m: Record<string, string> | undefined) =>
    m ? Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('sigil.dev/'))) : undefined;
  const view: V1Secret = {
    apiVersion: secret.apiVersion,
    kind: secret.kind,
    type: secret.type,
    metadata: {
      name: meta.name,
      namespace: meta.namespace,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      creationTimestamp: meta.creationTimestamp,
      labels: sigilOnly(meta.labels),
      annotations: sigilOnly(meta.annotations),
      ownerReferences: meta.ownerReferences,
    },
  };
  if (secret.data && Object.keys(secret.data).length > 0) partialViews.add(view);
  return view;
}

/**
 * A JSON merge patch that writes a new issuance into a Secret Sigil may write:
 * only Sigil's keys, labels and annotations change, with the Secret's
 * resourceVersion as a precondition (a change since it was read is a 409).
 */
export function secretPatch(i: SecretInputs & { existing: V1Secret }): V1Secret {
  const full = buildSecret(i);
  const before = i.existing.metadata?.ownerReferences ?? [];
  const after = full.metadata?.ownerReferences ?? [];
  const ownersChanged = JSON.stringify(before) !== JSON.stringify(after);
  const managed = managedMetadata(i.certificate, i.issuerKind, i.issuerName);
  const annotations: Record<string, string> = {
    ...managed.annotations,
    [Annotation.SerialNumber]: displaySerial(i.issued.serialNumber),
  };
  const renewAsked = i.certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  if (renewAsked) annotations[Annotation.RenewHandled] = renewAsked;
  return {
    metadata: {
      resourceVersion: i.existing.metadata?.resourceVersion,
      labels: managed.labels,
      annotations,
      ...(ownersChanged ? { ownerReferences: after } : {}),
    },
    data: {
      'tls.crt': b64(i.issued.certificatePem),
      'tls.key': b64(i.issued.privateKeyPem),
      'ca.crt': b64(i.issued.caPem),
    },
  };
}

export function buildSecret(i: SecretInputs): V1Secret {
  const managed = managedMetadata(i.certificate, i.issuerKind, i.issuerName);
  const renewAsked = i.certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  const annotations: Record<string, string> = {
    ...(i.existing?.metadata?.annotations ?? {}),
    ...managed.annotations,
    [Annotation.SerialNumber]: displaySerial(i.issued.serialNumber),
  };
  if (renewAsked) annotations[Annotation.RenewHandled] = renewAsked;
  // A Secret has one controller: a stale reference to an earlier Certificate of the same name gives way.
  const owners = (i.existing?.metadata?.ownerReferences ?? []).filter(
    (o) =>
      o.uid !== i.certificate.metadata.uid && !(i.ownerReference && o.controller && o.kind === 'Certificate'),
  );
  if (i.ownerReference) owners.push(ownerReferenceFor(i.certificate));
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name: i.certificate.spec.secretName,
      namespace: i.certificate.metadata.namespace,
      resourceVersion: i.existing?.metadata?.resourceVersion,
      labels: { ...(i.existing?.metadata?.labels ?? {}), ...managed.labels },
      annotations,
      ownerReferences: owners.length > 0 ? owners : undefined,
    },
    data: {
      ...(i.existing?.data ?? {}),
      'tls.crt': b64(i.issued.certificatePem),
      'tls.key': b64(i.issued.privateKeyPem),
      'ca.crt': b64(i.issued.caPem),
    },
  };
}

/** True when the Secret lacks some of Sigil's labels or annotations (a metadata-only repair, no re-issue). */
export function metadataDrift(
  secret: V1Secret,
  certificate: Certificate,
  issuerKind: string,
  issuerName: string,
): boolean {
  const managed = managedMetadata(certificate, issuerKind, issuerName);
  const labels = secret.metadata?.labels ?? {};
  const annotations = secret.metadata?.annotations ?? {};
  return (
    Object.entries(managed.labels).some(([k, v]) => labels[k] !== v) ||
    Object.entries(managed.annotations).some(([k, v]) => annotations[k] !== v)
  );
}
