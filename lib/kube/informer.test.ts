import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ApiException, KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { silentLogger } from '../log.ts';
import { cached, Informer, type ListResult, listInPages, type PageRequest, shortValues } from './informer.ts';

function secret(name: string, resourceVersion = '1', bytes = 0): V1Secret {
  return {
    metadata: { name, namespace: 'ns', resourceVersion },
    data: bytes > 0 ? { big: 'x'.repeat(bytes) } : undefined,
  };
}

/**
 * A fake API server list over `items`: pages of `limit`, continue tokens that
 * are the next index, and `expireOnce` tokens that answer 410 the first time.
 */
function pagedList(items: () => V1Secret[], expireOnce = new Set<string>()) {
  const requests: PageRequest[] = [];
  const list = async (page: PageRequest): Promise<ListResult<V1Secret>> => {
    requests.push(page);
    if (page.continue && expireOnce.delete(page.continue))
      throw new ApiException(410, 'Expired', '{"reason":"Expired"}', {});
    const all = items();
    const start = page.continue ? Number(page.continue) : 0;
    const end = Math.min(all.length, start + page.limit);
    return {
      items: all.slice(start, end),
      metadata: { resourceVersion: '42', continue: end < all.length ? String(end) : undefined },
    };
  };
  return { list, requests };
}

/** A KubeConfig whose server refuses connections: the watch after the list fails and retries until stopped. */
function unreachable(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:9', skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('listInPages', () => {
  it('should ask for every page with the limit and the previous continue token, and return the resourceVersion', async () => {
    const all = Array.from({ length: 250 }, (_, i) => secret(`s${i}`));
    const { list, requests } = pagedList(() => all);
    const pages: number[] = [];
    const rv = await listInPages(list, 100, (items) => pages.push(items.length));
    expect(rv).toBe('42');
    expect(pages).toEqual([100, 100, 50]);
    expect(requests).toEqual([
      { limit: 100, continue: undefined },
      { limit: 100, continue: '100' },
      { limit: 100, continue: '200' },
    ]);
  });

  it('should list again from the first page when a continue token has expired (410)', async () => {
    const all = Array.from({ length: 250 }, (_, i) => secret(`s${i}`));
    const { list, requests } = pagedList(() => all, new Set(['200']));
    const calls: [number, boolean][] = [];
    let expired = 0;
    await listInPages(
      list,
      100,
      (items, restarted) => calls.push([items.length, restarted]),
      () => expired++,
    );
    expect(expired).toBe(1);
    expect(calls).toEqual([
      [100, false],
      [100, false],
      [100, true],
      [100, false],
      [50, false],
    ]);
    expect(requests.map((r) => r.continue)).toEqual([undefined, '100', '200', undefined, '100', '200']);
  });

  it('should fail on a 410 for the first page, and after repeated expiries, so the informer backs off', async () => {
    const first = async () => {
      throw new ApiException(410, 'Expired', '', {});
    };
    await expect(listInPages(first, 10, () => {})).rejects.toMatchObject({ code: 410 });

    const all = Array.from({ length: 30 }, (_, i) => secret(`s${i}`));
    let n = 0;
    const alwaysExpiring = async (page: PageRequest): Promise<ListResult<V1Secret>> => {
      n++;
      if (page.continue) throw new ApiException(410, 'Expired', '', {});
      return { items: all.slice(0, 10), metadata: { continue: '10' } };
    };
    await expect(listInPages(alwaysExpiring, 10, () => {})).rejects.toMatchObject({ code: 410 });
    expect(n).toBeLessThanOrEqual(8);
  });

  it('should pass on any other error at once', async () => {
    const { list } = pagedList(() => [secret('a'), secret('b')]);
    const failing = async (page: PageRequest) => {
      if (page.continue) throw new ApiException(500, 'boom', '', {});
      return list(page);
    };
    await expect(listInPages(failing, 1, () => {})).rejects.toMatchObject({ code: 500 });
  });
});

describe('Informer list', () => {
  it('should transform each page before asking for the next, so untransformed objects never pile up', async () => {
    const all = Array.from({ length: 45 }, (_, i) => secret(`s${i}`, '1', 1024));
    const { list, requests } = pagedList(() => all);
    let untransformedAtRequest = 0;
    let transformed = 0;
    const informer = new Informer<V1Secret>(unreachable(), {
      name: 'test',
      path: '/api/v1/secrets',
      logger: silentLogger(),
      pageSize: 10,
      list: (page) => {
        // Everything listed so far has been transformed by the time the next page is asked for.
        untransformedAtRequest = Math.max(untransformedAtRequest, requests.length * 10 - transformed);
        return list(page);
      },
      transform: (s) => {
        transformed++;
        return { metadata: s.metadata };
      },
    });
    await informer.start();
    informer.stop();
    expect(requests).toHaveLength(5);
    expect(untransformedAtRequest).toBe(0);
    expect(informer.size).toBe(45);
    expect(informer.list().every((s) => s.data === undefined)).toBe(true);
  });

  it('should deliver adds across pages and, on a list after an expired token, drop only what is gone', async () => {
    let items = Array.from({ length: 25 }, (_, i) => secret(`s${i}`));
    const expire = new Set<string>();
    const { list } = pagedList(() => items, expire);
    const informer = new Informer<V1Secret>(unreachable(), {
      name: 'test',
      path: '/api/v1/secrets',
      logger: silentLogger(),
      pageSize: 10,
      list,
    });
    const added: string[] = [];
    const deleted: string[] = [];
    informer
      .on('add', (s) => added.push(s.metadata!.name!))
      .on('delete', (s) => deleted.push(s.metadata!.name!));
    await informer.start();
    expect(added).toHaveLength(25);

    // Relist (as after a watch's 410): s3 is gone, and the second page's token expires once.
    items = items.filter((s) => s.metadata!.name !== 's3');
    expire.add('10');
    await (informer as unknown as { relist(): Promise<void> }).relist();
    informer.stop();
    expect(deleted).toEqual(['s3']);
    expect(informer.size).toBe(24);
  });
});

describe('cached', () => {
  it("should keep neither managedFields nor kubectl's last-applied copy, unless told to, and freeze the object", () => {
    const applied: V1Secret = {
      metadata: {
        name: 's',
        annotations: {
          'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({
            data: { big: 'x'.repeat(4096) },
          }),
          'sigil.dev/certificate-name': 'web',
        },
        managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
      },
    };
    const annotations = { ...applied.metadata!.annotations };
    const whole = cached({ ...applied, metadata: { ...applied.metadata, annotations } }, undefined, true);
    expect(whole.metadata?.annotations).toEqual(annotations);
    const kept = cached(applied);
    expect(kept.metadata).toEqual({ name: 's', annotations: { 'sigil.dev/certificate-name': 'web' } });
    expect(Object.isFrozen(kept)).toBe(true);
  });

  it('should keep one copy of each short value many objects share, and every value as it was', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // As from the API server: JSON.parse gives each object its own copy of every value.
    const object = (salt: string, i: number) =>
      JSON.parse(
        JSON.stringify({
          apiVersion: 'sigil.dev/v1alpha1',
          kind: 'Certificate',
          metadata: { name: `c-${i}`, namespace: `tenant-${salt}` },
          spec: { issuerRef: { kind: 'ClusterIssuer', name: `cluster-ca-${salt}` } },
          status: {
            conditions: [
              {
                type: 'Ready',
                reason: `Ready-${salt}`,
                message: `Certificate ${salt} is up to date and has not expired`,
              },
            ],
          },
        }),
      ) as V1Secret;
    const keep = (salt: (i: number) => string) => {
      gc();
      const before = process.memoryUsage().heapUsed;
      const kept = Array.from({ length: 40_000 }, (_, i) => cached(object(salt(i), i)));
      gc();
      return { kept, bytes: process.memoryUsage().heapUsed - before };
    };
    const distinct = keep((i) => String(i).padStart(6, '0'));
    const same = keep(() => 'shared');
    expect(same.kept[123]).toEqual(object('shared', 123));
    expect(distinct.kept[123]).toEqual(object('000123', 123));
    // Four values of 12 to 52 characters per object, each about 30 to 70 bytes in V8: about 8 MB
    // for 40,000 objects when each has its own, next to nothing shared. The bar is a third of it:
    // the heap moves by a megabyte or so between two measures of the same work.
    expect(distinct.bytes - same.bytes).toBeGreaterThan(3_000_000);
  });

  it("should hold no value the transform dropped and none of a Secret's or ConfigMap's contents", () => {
    const salt = `${process.pid}-${Date.now()}`;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `web-${salt}` },
      spec: {
        containers: [{ env: [{ name: 'DB_PASSWORD', value: `hunter2-${salt}` }], args: [`--token=${salt}`] }],
      },
    };
    const view = cached(pod as V1Secret, (p) => ({ metadata: { name: p.metadata!.name } }) as V1Secret);
    expect(view.metadata?.name).toBe(`web-${salt}`);
    expect(shortValues.has(`web-${salt}`)).toBe(true);
    expect(shortValues.has(`hunter2-${salt}`)).toBe(false);
    expect(shortValues.has(`--token=${salt}`)).toBe(false);
    const contents = {
      metadata: { name: `s-${salt}` },
      data: { password: `cGFzc3dvcmQ-${salt}` },
      stringData: { token: `token-${salt}` },
      binaryData: { blob: `YmxvYg-${salt}` },
    };
    const kept = cached(contents as V1Secret) as typeof contents;
    expect(kept.data.password).toBe(`cGFzc3dvcmQ-${salt}`);
    for (const value of [`cGFzc3dvcmQ-${salt}`, `token-${salt}`, `YmxvYg-${salt}`])
      expect(shortValues.has(value)).toBe(false);
  });

  it('should take an object it has cached before as it is', () => {
    const once = cached({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } } as V1Secret);
    expect(cached(once)).toBe(once);
    expect(Object.isFrozen(once)).toBe(true);
  });
});
