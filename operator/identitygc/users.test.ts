import type { V1Pod } from '@kubernetes/client-node';
import { POD_LABEL, podIdentityView } from './users.ts';

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
