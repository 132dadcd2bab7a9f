import { CoreV1Api, VersionApi } from '@kubernetes/client-node';
import { kubeFor } from '../lib/kube/client.ts';
import { statusCode } from '../lib/kube/errors.ts';
import { createTestNamespace, testKubeConfig } from './support/kube.ts';

describe('the local control plane', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);

  it('should answer with the pinned kube-apiserver version', async () => {
    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe(process.env.SIGIL_KUBE_VERSION ?? 'v1.37.2');
  });

  it('should store a Secret in a new namespace and read it back', async () => {
    const namespace = await createTestNamespace(kc, 'cp');
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 'greeting', labels: { app: 'test' } },
        type: 'Opaque',
        stringData: { hello: 'world' },
      },
    });
    const read = await core.readNamespacedSecret({ name: 'greeting', namespace });
    expect(Buffer.from(read.data!.hello!, 'base64').toString()).toBe('world');
    expect(read.metadata?.labels).toEqual({ app: 'test' });
    expect(read.metadata?.resourceVersion).toMatch(/^\d+$/);
  });

  it('should answer 404 for a Secret that does not exist', async () => {
    const namespace = await createTestNamespace(kc, 'cp');
    const err = await core.readNamespacedSecret({ name: 'absent', namespace }).catch((e: unknown) => e);
    expect(statusCode(err)).toBe(404);
  });

  it("should read a body of many TLS records whole through Sigil's client, characters split across chunks included", async () => {
    const namespace = await createTestNamespace(kc, 'cp');
    // 3- and 2-byte characters over ~300 KB: record and chunk boundaries fall inside characters.
    const text = 'é東'.repeat(60_000);
    const kube = kubeFor(kc);
    await kube.create(`/api/v1/namespaces/${namespace}/configmaps`, {
      metadata: { name: 'wide' },
      data: { text },
    });
    const read = await kube.get<{ data: { text: string } }>(
      `/api/v1/namespaces/${namespace}/configmaps/wide`,
    );
    expect(read.data.text.length).toBe(text.length);
    expect(read.data.text === text).toBe(true);
  });
});
