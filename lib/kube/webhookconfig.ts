// The MutatingWebhookConfiguration that sends opted-in pods to the webhook.
// Two entries, because one selector cannot say "namespace label OR pod label":
// pods in a namespace labelled sigil.dev/inject=enabled (or true), and pods labelled
// sigil.dev/inject=true (or enabled) elsewhere; a pod labelled false or disabled never.
// kube-system and Sigil's own namespace never match.
import type { V1MutatingWebhook, V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { InjectValue, Label } from '../api/types.ts';

export interface WebhookConfigOptions {
  name: string;
  operatorNamespace: string;
  /** https://host:port/mutate-v1-pod, for a webhook outside the cluster (tests, make dev). */
  url?: string;
  service?: { name: string; namespace: string; port: number };
  caBundle?: string;
  failurePolicy?: 'Fail' | 'Ignore';
  timeoutSeconds?: number;
}

export function webhookConfiguration(o: WebhookConfigOptions): V1MutatingWebhookConfiguration {
  const clientConfig = o.url
    ? { url: o.url, caBundle: o.caBundle }
    : {
        service: {
          name: o.service!.name,
          namespace: o.service!.namespace,
          path: '/mutate-v1-pod',
          port: o.service!.port,
        },
        caBundle: o.caBundle,
      };
  const excluded = {
    key: 'kubernetes.io/metadata.name',
    operator: 'NotIn',
    values: ['kube-system', o.operatorNamespace],
  };
  const common: Omit<V1MutatingWebhook, 'name'> = {
    admissionReviewVersions: ['v1'],
    clientConfig,
    rules: [
      {
        apiGroups: [''],
        apiVersions: ['v1'],
        operations: ['CREATE'],
        resources: ['pods'],
        scope: 'Namespaced',
      },
    ],
    sideEffects: 'NoneOnDryRun',
    failurePolicy: o.failurePolicy ?? 'Fail',
    timeoutSeconds: o.timeoutSeconds ?? 10,
    reinvocationPolicy: 'IfNeeded',
    matchPolicy: 'Equivalent',
  };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: o.name, labels: { 'app.kubernetes.io/name': 'sigil' } },
    webhooks: [
      {
        ...common,
        name: 'namespace.inject.sigil.dev',
        namespaceSelector: {
          matchExpressions: [excluded, { key: Label.Inject, operator: 'In', values: [...InjectValue.on] }],
        },
        objectSelector: {
          matchExpressions: [{ key: Label.Inject, operator: 'NotIn', values: [...InjectValue.off] }],
        },
      },
      {
        ...common,
        name: 'pod.inject.sigil.dev',
        namespaceSelector: {
          matchExpressions: [excluded, { key: Label.Inject, operator: 'NotIn', values: [...InjectValue.on] }],
        },
        objectSelector: {
          matchExpressions: [{ key: Label.Inject, operator: 'In', values: [...InjectValue.on] }],
        },
      },
    ],
  };
}
