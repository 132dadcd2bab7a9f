// What the identity garbage collector keeps of the pods it watches. Pure.
import type { V1Pod } from '@kubernetes/client-node';

/** The pod label the webhook sets to the name of the identity Certificate the pod uses. */
export const POD_LABEL = 'sigil.dev/identity';

/**
 * What the collector's pod cache keeps of a pod: who it is and which identity
 * it uses. The label selector is the only filter and anyone who may create a
 * pod can set the label, so nothing else of the pod (its spec, status,
 * annotations) is held.
 */
export function podIdentityView(pod: V1Pod): V1Pod {
  const name = pod.metadata?.labels?.[POD_LABEL];
  return {
    metadata: {
      namespace: pod.metadata?.namespace,
      name: pod.metadata?.name,
      uid: pod.metadata?.uid,
      resourceVersion: pod.metadata?.resourceVersion,
      ...(name !== undefined ? { labels: { [POD_LABEL]: name } } : {}),
    },
  };
}
