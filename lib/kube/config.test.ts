import { KubeConfig, RequestContext } from '@kubernetes/client-node';
import { createSelfSignedCA } from '../pki/ca.ts';
import { reuseConnections } from './config.ts';

const caNamed = (commonName: string) =>
  createSelfSignedCA({ commonName, notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000) });

async function kubeconfigWith(clientCert: string) {
  const ca = await caNamed('Test API CA');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: 'https://127.0.0.1:6443', caData: Buffer.from(ca.certPem).toString('base64') },
    ],
    users: [{ name: 'u', token: 'secret-token', certData: clientCert }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
    currentContext: 'ctx',
  });
  return kc;
}

async function dispatcherOf(kc: KubeConfig) {
  const ctx = new RequestContext('https://127.0.0.1:6443/api/v1/namespaces', 'GET' as never);
  await kc.applySecurityAuthentication(ctx);
  return { dispatcher: ctx.getDispatcher(), auth: ctx.getHeaders().Authorization };
}

describe('reuseConnections', () => {
  it('gives every request of one configuration the same connection pool', async () => {
    const kc = reuseConnections(await kubeconfigWith(''));
    const a = await dispatcherOf(kc);
    const b = await dispatcherOf(kc);
    expect(a.dispatcher).toBeDefined();
    expect(b.dispatcher).toBe(a.dispatcher);
    // Credentials still travel per request.
    expect(b.auth).toBe('Bearer secret-token');
  });

  it('without it, client-node makes a new pool per request (the reason it exists)', async () => {
    const kc = await kubeconfigWith('');
    const a = await dispatcherOf(kc);
    const b = await dispatcherOf(kc);
    expect(b.dispatcher).not.toBe(a.dispatcher);
  });

  it('makes a new pool when the TLS material changes', async () => {
    const kc = reuseConnections(await kubeconfigWith(''));
    const a = await dispatcherOf(kc);
    const other = await caNamed('Rotated CA');
    (kc.clusters[0] as { caData?: string }).caData = Buffer.from(other.certPem).toString('base64');
    const b = await dispatcherOf(kc);
    expect(b.dispatcher).not.toBe(a.dispatcher);
    expect((await dispatcherOf(kc)).dispatcher).toBe(b.dispatcher);
  });
});
