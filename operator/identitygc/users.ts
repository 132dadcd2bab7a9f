// Which pods use each identity, for the identity garbage collector. Counted by
// pod uid, not by events: adding a pod twice, or deleting one never added,
// changes nothing, and a pod relabelled from one identity to another moves
// from the first to the second. Pure.
import type { V1Pod } from '@kubernetes/client-node';

/** The pod label the webhook sets to the name of the identity Certificate the pod uses. */
export const POD_LABEL = 'sigil.dev/identity';

/** `namespace/certificate name` of the identity a pod uses, or undefined when it carries no label. */
export function identityOf(pod: V1Pod): string | undefined {
  const name = pod.metadata?.labels?.[POD_LABEL];
  return name ? `${pod.metadata?.namespace}/${name}` : undefined;
}

/** A pod's uid, or its namespace/name when it has none (a pod always has one from the API server). */
function podId(pod: V1Pod): string {
  return pod.metadata?.uid ?? `${pod.metadata?.namespace}/${pod.metadata?.name}`;
}

export class IdentityUsers {
  /** Pod ids by identity key. */
  private readonly byIdentity = new Map<string, Set<string>>();
  /** The identity each pod was last counted under. */
  private readonly byPod = new Map<string, string>();

  /** How many pods use the identity. */
  count(identity: string): number {
    return this.byIdentity.get(identity)?.size ?? 0;
  }

  /**
   * Counts the pod under the identity its labels name now (an add or an
   * update). Returns the identity it no longer counts under when that one has
   * no pod left, so the caller can look at it.
   */
  set(pod: V1Pod): string | undefined {
    const id = podId(pod);
    const now = identityOf(pod);
    const before = this.byPod.get(id);
    if (before === now) return undefined;
    const emptied = before === undefined ? undefined : this.remove(id, before);
    if (now !== undefined) {
      this.byPod.set(id, now);
      let pods = this.byIdentity.get(now);
      if (!pods) {
        pods = new Set();
        this.byIdentity.set(now, pods);
      }
      pods.add(id);
    }
    return emptied;
  }

  /**
   * Forgets the pod, under the identity it was counted under (not the one its
   * labels name now). Returns that identity when no pod uses it any more.
   */
  delete(pod: V1Pod): string | undefined {
    const id = podId(pod);
    const before = this.byPod.get(id);
    return before === undefined ? undefined : this.remove(id, before);
  }

  private remove(id: string, identity: string): string | undefined {
    this.byPod.delete(id);
    const pods = this.byIdentity.get(identity);
    pods?.delete(id);
    if (pods && pods.size > 0) return undefined;
    this.byIdentity.delete(identity);
    return identity;
  }
}

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
