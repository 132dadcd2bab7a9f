import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inClusterAccess, kubeconfigAccess, loadAccess, StaticAccess } from './access.ts';
import { TokenFile } from './client.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-access-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (s: string) => Buffer.from(s).toString('base64');

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  const path = join(dir, 'config');
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: here',
      'contexts:',
      '- name: elsewhere',
      '  context: { cluster: other, user: nobody }',
      '- name: here',
      '  context: { cluster: main, user: me }',
      'clusters:',
      '- name: other',
      '  cluster: { server: "https://other.example:6443" }',
      '- name: main',
      `  cluster: ${JSON.stringify({ server: 'https://10.0.0.1:6443', 'certificate-authority-data': b64('CA PEM'), ...cluster })}`,
      'users:',
      '- name: nobody',
      '  user: { token: wrong }',
      '- name: me',
      `  user: ${JSON.stringify(user)}`,
    ].join('\n'),
  );
  return path;
}

async function applied(access: StaticAccess | { applyToHTTPSOptions(o: RequestOptions): Promise<void> }) {
  const opts: RequestOptions = {};
  await access.applyToHTTPSOptions(opts);
  return opts;
}

describe('kubeconfigAccess', () => {
  it('takes the current context: its server, CA and bearer token', async () => {
    const access = (await kubeconfigAccess(kubeconfig({ token: 'secret-token' })))!;
    expect(access.getCurrentCluster().server).toBe('https://10.0.0.1:6443');
    const opts = await applied(access);
    expect(String(opts.ca)).toBe('CA PEM');
    expect(opts.headers).toEqual({ authorization: 'Bearer secret-token' });
    expect(opts.rejectUnauthorized).toBeUndefined();
  });

  it('reads client certificate files relative to the kubeconfig, and the TLS options', async () => {
    writeFileSync(join(dir, 'client.crt'), 'CERT PEM');
    writeFileSync(join(dir, 'client.key'), 'KEY PEM');
    const access = (await kubeconfigAccess(
      kubeconfig(
        { 'client-certificate': 'client.crt', 'client-key': join(dir, 'client.key'), as: 'jane' },
        { 'insecure-skip-tls-verify': true, 'tls-server-name': 'api.internal' },
      ),
    ))!;
    const opts = await applied(access);
    expect([String(opts.cert), String(opts.key)]).toEqual(['CERT PEM', 'KEY PEM']);
    expect(opts.rejectUnauthorized).toBe(false);
    expect(opts.servername).toBe('api.internal');
    expect(opts.headers).toEqual({ 'impersonate-user': 'jane' });
  });

  it('takes basic credentials when there is no token', async () => {
    const opts = await applied((await kubeconfigAccess(kubeconfig({ username: 'admin', password: 'pw' })))!);
    expect(opts.headers).toEqual({ authorization: `Basic ${b64('admin:pw')}` });
  });

  it('leaves exec plugins, auth providers and proxies to client-node', async () => {
    expect(await kubeconfigAccess(kubeconfig({ exec: { command: 'aws' } }))).toBeUndefined();
    expect(await kubeconfigAccess(kubeconfig({ 'auth-provider': { name: 'oidc' } }))).toBeUndefined();
    expect(
      await kubeconfigAccess(kubeconfig({ token: 't' }, { 'proxy-url': 'http://proxy:3128' })),
    ).toBeUndefined();
    // loadAccess hands such a file to client-node's KubeConfig, which knows the plugin.
    const access = await loadAccess(
      kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' } }),
    );
    expect(access).not.toBeInstanceOf(StaticAccess);
    expect(access.getCurrentCluster()?.server).toBe('https://10.0.0.1:6443');
  });

  it('reads a kubeconfig written as JSON, as kubectl does, and YAML that looks like it', async () => {
    const path = join(dir, 'config.json');
    writeFileSync(
      path,
      `  ${JSON.stringify({
        'current-context': 'here',
        contexts: [{ name: 'here', context: { cluster: 'main', user: 'me' } }],
        clusters: [{ name: 'main', cluster: { server: 'https://10.0.0.2:6443' } }],
        users: [{ name: 'me', user: { token: 'json-token' } }],
      })}`,
    );
    const access = (await kubeconfigAccess(path))!;
    expect(access.getCurrentCluster().server).toBe('https://10.0.0.2:6443');
    expect((await applied(access)).headers).toEqual({ authorization: 'Bearer json-token' });
    // With a byte-order mark, and in YAML's flow style, which starts as JSON does.
    writeFileSync(path, `\uFEFF${JSON.stringify({ 'current-context': 'x', contexts: [] })}`);
    await expect(kubeconfigAccess(path)).rejects.toThrow('current-context "x" not found');
    writeFileSync(path, '{current-context: y, contexts: []}');
    await expect(kubeconfigAccess(path)).rejects.toThrow('current-context "y" not found');
  });

  it('says which context or cluster is missing', async () => {
    const path = join(dir, 'broken');
    writeFileSync(path, 'current-context: gone\ncontexts: []\n');
    await expect(kubeconfigAccess(path)).rejects.toThrow(`${path}: current-context "gone" not found`);
    writeFileSync(path, 'current-context: c\ncontexts: [{ name: c, context: { cluster: x, user: u } }]\n');
    await expect(kubeconfigAccess(path)).rejects.toThrow(`${path}: cluster "x" has no server`);
  });
});

describe('inClusterAccess', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env.KUBERNETES_SERVICE_HOST = saved.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_PORT = saved.KUBERNETES_SERVICE_PORT;
    if (saved.KUBERNETES_SERVICE_HOST === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    if (saved.KUBERNETES_SERVICE_PORT === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
  });

  it('uses the service account token, CA and the API server Service (IPv6 in brackets)', async () => {
    writeFileSync(join(dir, 'ca.crt'), 'CLUSTER CA');
    writeFileSync(join(dir, 'token'), 'projected-token\n');
    process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    const access = inClusterAccess(dir);
    expect(access.getCurrentCluster().server).toBe('https://[fd00::1]:443');
    const opts = await applied(access);
    expect(String(opts.ca)).toBe('CLUSTER CA');
    expect(opts.headers).toEqual({ authorization: 'Bearer projected-token' });
  });
});

describe('TokenFile', () => {
  it('reads the token again once a minute has passed and the file changed', () => {
    const path = join(dir, 'token');
    writeFileSync(path, 'first');
    const token = new TokenFile(path);
    const realNow = Date.now;
    let now = realNow();
    Date.now = () => now;
    try {
      expect(token.get()).toBe('first');
      writeFileSync(path, 'second');
      utimesSync(path, new Date(), new Date(Date.now() + 5_000));
      now += 30_000;
      expect(token.get()).toBe('first');
      now += 31_000;
      expect(token.get()).toBe('second');
    } finally {
      Date.now = realNow;
    }
  });
});

describe('StaticAccess over plain HTTP', () => {
  it('refuses to send credentials unless told the connection is insecure', () => {
    expect(() => new StaticAccess({ server: 'http://10.0.0.1:8080', token: 't' })).toThrow(
      'refusing to send credentials to http://10.0.0.1:8080 over plain HTTP',
    );
    expect(
      () => new StaticAccess({ server: 'http://10.0.0.1:8080', token: 't', insecure: true }),
    ).not.toThrow();
    expect(() => new StaticAccess({ server: 'http://10.0.0.1:8080' })).not.toThrow();
  });
});
