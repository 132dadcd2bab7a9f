import type { V1Pod } from '@kubernetes/client-node';
import { IdentityUsers, POD_LABEL, podIdentityView } from './users.ts';

function pod(name: string, identity: string | undefined, uid = `uid-${name}`): V1Pod {
  return {
    metadata: { name, namespace: 'ns', uid, labels: identity ? { [POD_LABEL]: identity } : undefined },
  };
}

describe('IdentityUsers', () => {
  it('should count pods, not events: an add seen twice counts once', () => {
    const users = new IdentityUsers();
    users.set(pod('a', 'x'));
    users.set(pod('a', 'x'));
    users.set(pod('b', 'x'));
    expect(users.count('ns/x')).toBe(2);
    expect(users.delete(pod('a', 'x'))).toBeUndefined();
    expect(users.delete(pod('a', 'x'))).toBeUndefined();
    expect(users.count('ns/x')).toBe(1);
    expect(users.delete(pod('b', 'x'))).toBe('ns/x');
    expect(users.count('ns/x')).toBe(0);
  });

  it('should move a relabelled pod to its new identity and report the old one when it is left unused', () => {
    const users = new IdentityUsers();
    users.set(pod('a', 'x'));
    users.set(pod('b', 'y'));
    expect(users.set(pod('a', 'y'))).toBe('ns/x');
    expect(users.count('ns/x')).toBe(0);
    expect(users.count('ns/y')).toBe(2);
  });

  it("should forget a deleted pod under the identity it was counted under, not its last label's", () => {
    // Labelled x, relabelled y, deleted: y's other pod keeps y in use.
    const users = new IdentityUsers();
    users.set(pod('other', 'y'));
    users.set(pod('a', 'x'));
    users.set(pod('a', 'y'));
    expect(users.delete(pod('a', 'y'))).toBeUndefined();
    expect(users.count('ns/y')).toBe(1);
    // Relabelled without the collector seeing it, then deleted: x is the one to look at.
    users.set(pod('c', 'x'));
    expect(users.delete(pod('c', 'z'))).toBe('ns/x');
    expect(users.count('ns/y')).toBe(1);
  });

  it('should stop counting a pod whose label is removed', () => {
    const users = new IdentityUsers();
    users.set(pod('a', 'x'));
    expect(users.set(pod('a', undefined))).toBe('ns/x');
    expect(users.delete(pod('a', undefined))).toBeUndefined();
  });
});

describe('podIdentityView', () => {
  it('should keep only who the pod is and its identity label', () => {
    const full: V1Pod = {
      metadata: {
        name: 'a',
        namespace: 'ns',
        uid: 'u',
        resourceVersion: '7',
        labels: { [POD_LABEL]: 'x', app: 'web' },
        annotations: { big: 'x'.repeat(100_000) },
      },
      spec: { containers: [{ name: 'c', image: 'i', env: [{ name: 'E', value: 'x'.repeat(100_000) }] }] },
    };
    expect(podIdentityView(full)).toEqual({
      metadata: { name: 'a', namespace: 'ns', uid: 'u', resourceVersion: '7', labels: { [POD_LABEL]: 'x' } },
    });
  });
});
