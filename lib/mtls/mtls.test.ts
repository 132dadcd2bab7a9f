import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { CertificateAuthority } from '../pki/ca.ts';
import { parseCertificateChain } from '../pki/certificate.ts';
import { issueCertificate } from '../pki/issue.ts';
import { DAY, testCA } from '../testing/pki.ts';
import { clientOptions, createMtlsServer, spiffeMatcher, watchIdentity } from './index.ts';

const TD = 'spiffe://cluster.local';

async function identityDir(
  ca: CertificateAuthority,
  sa: string,
  dir = mkdtempSync(join(tmpdir(), 'sigil-mtls-')),
) {
  const issued = await issueCertificate(
    ca,
    { uris: [`${TD}/ns/shop/sa/${sa}`], durationMs: DAY },
    new Date(),
  );
  // Write beside, then rename: the reader never sees half a file, as with the kubelet's symlink swap.
  for (const [name, content] of [
    ['tls.key', issued.privateKeyPem],
    ['tls.crt', issued.certificatePem],
    ['ca.crt', issued.caPem],
  ] as const) {
    writeFileSync(join(dir, `.${name}.tmp`), content);
    renameSync(join(dir, `.${name}.tmp`), join(dir, name));
  }
  return { dir, serial: issued.serialNumber };
}

function call(port: number, dir: string, allowedServers: string[]) {
  const identity = watchIdentity(dir);
  return new Promise<{ ok: boolean; serverSerial?: string; error?: string; reply?: string }>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ...clientOptions(identity, allowedServers) });
    let reply = '';
    let serverSerial: string | undefined;
    socket.on('secureConnect', () => {
      serverSerial = socket.getPeerCertificate()?.serialNumber?.toLowerCase().replace(/^0+/, '');
      socket.write('hi');
    });
    socket.on('data', (d) => {
      reply += d;
      socket.end();
    });
    socket.on('close', () => {
      identity.close();
      resolve({ ok: reply.length > 0, reply, serverSerial });
    });
    socket.on('error', (err) => {
      identity.close();
      resolve({ ok: false, error: err.message });
    });
  });
}

describe('the mTLS helper', () => {
  it('should match SPIFFE IDs exactly and by pattern', () => {
    const m = spiffeMatcher([`${TD}/ns/shop/sa/*`, `${TD}/ns/ops/sa/admin`, `${TD}/ns/edge/**`]);
    expect(m(`${TD}/ns/shop/sa/web`)).toBe(true);
    expect(m(`${TD}/ns/shop/sa/web/extra`)).toBe(false);
    expect(m(`${TD}/ns/ops/sa/admin`)).toBe(true);
    expect(m(`${TD}/ns/ops/sa/adminx`)).toBe(false);
    expect(m(`${TD}/ns/edge/sa/a`)).toBe(true);
    expect(m('spiffe://evil.example/ns/shop/sa/web')).toBe(false);
    expect(m(undefined)).toBe(false);
  });

  it('should serve the rotated certificate without a restart and refuse a peer with the wrong SPIFFE ID', async () => {
    const { ca } = await testCA();
    const server = await identityDir(ca, 'payments');
    const frontend = await identityDir(ca, 'frontend');
    const intruder = await identityDir(ca, 'intruder');
    const identity = watchIdentity(server.dir, 50);
    const seen: string[] = [];
    const srv = createMtlsServer(identity, [`${TD}/ns/shop/sa/frontend`], (socket, peer) => {
      seen.push(peer);
      socket.on('data', () => socket.write('hello'));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    try {
      const first = await call(port, frontend.dir, [`${TD}/ns/shop/sa/payments`]);
      expect(first).toMatchObject({ ok: true, reply: 'hello' });
      expect(first.serverSerial).toBe(server.serial);

      const refused = await call(port, intruder.dir, [`${TD}/ns/shop/sa/payments`]);
      expect(refused.ok).toBe(false);
      expect(seen).toEqual([`${TD}/ns/shop/sa/frontend`]);

      const wrongServer = await call(port, frontend.dir, [`${TD}/ns/shop/sa/ledger`]);
      expect(wrongServer.ok).toBe(false);
      expect(wrongServer.error).toContain('is not one of');

      const rotated = await identityDir(ca, 'payments', server.dir);
      let reloaded = false;
      identity.onReload(() => {
        reloaded = true;
      });
      for (let i = 0; i < 100 && !reloaded; i++) await new Promise((r) => setTimeout(r, 20));
      const second = await call(port, frontend.dir, [`${TD}/ns/shop/sa/payments`]);
      expect(second.ok).toBe(true);
      expect(second.serverSerial).toBe(rotated.serial);
      expect(parseCertificateChain(identity.current().cert)[0]!.facts.serialNumber).toBe(rotated.serial);
    } finally {
      identity.close();
      srv.close();
      for (const d of [server.dir, frontend.dir, intruder.dir]) rmSync(d, { recursive: true, force: true });
    }
  });

  it('should accept peers of both CAs while ca.crt holds both (a rotation), and refuse the old one once it leaves', async () => {
    const { ca: oldCa, certPem: oldPem } = await testCA();
    const { ca: newCa, certPem: newPem } = await testCA();
    const server = await identityDir(newCa, 'payments');
    const client = await identityDir(oldCa, 'frontend');
    // Both ends hold the bundle: the server already on the new CA, the client still on the old one.
    for (const d of [server.dir, client.dir]) writeFileSync(join(d, 'ca.crt'), `${newPem}\n${oldPem}`);
    const identity = watchIdentity(server.dir, 50);
    const refusals: string[] = [];
    const srv = createMtlsServer(
      identity,
      [`${TD}/ns/shop/sa/frontend`],
      (socket) => socket.on('data', () => socket.write('hello')),
      (reason) => refusals.push(reason),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    try {
      expect((await call(port, client.dir, [`${TD}/ns/shop/sa/payments`])).ok).toBe(true);
      // The old CA retired too early: the server trusts only the new CA while the client still holds an old leaf.
      let reloaded = false;
      identity.onReload(() => {
        reloaded = true;
      });
      writeFileSync(join(server.dir, 'ca.crt'), newPem);
      for (let i = 0; i < 100 && !reloaded; i++) await new Promise((r) => setTimeout(r, 20));
      expect((await call(port, client.dir, [`${TD}/ns/shop/sa/payments`])).ok).toBe(false);
      for (let i = 0; i < 50 && refusals.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(refusals).toEqual([expect.stringMatching(/^certificate not accepted: /)]);
    } finally {
      identity.close();
      srv.close();
      for (const d of [server.dir, client.dir]) rmSync(d, { recursive: true, force: true });
    }
  });

  it('should refuse a client whose certificate another CA signed, even with an allowed SPIFFE ID, and say so', async () => {
    const { ca, certPem: caPem } = await testCA();
    const { ca: other } = await testCA();
    const server = await identityDir(ca, 'payments');
    const impostor = await identityDir(other, 'frontend');
    // The impostor trusts the real CA, so only the server's check can stop it.
    writeFileSync(join(impostor.dir, 'ca.crt'), caPem);
    const identity = watchIdentity(server.dir, 50);
    const seen: string[] = [];
    const refusals: string[] = [];
    const srv = createMtlsServer(
      identity,
      [`${TD}/ns/shop/sa/frontend`],
      (socket, peer) => {
        seen.push(peer);
        socket.on('data', () => socket.write('hello'));
      },
      (reason) => refusals.push(reason),
    );
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    try {
      const result = await call(port, impostor.dir, [`${TD}/ns/shop/sa/payments`]);
      expect(result.ok).toBe(false);
      expect(seen).toEqual([]);
      for (let i = 0; i < 50 && refusals.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      // Its chain ends in the other CA's self-signed root, which the server does not trust.
      expect(refusals).toEqual(['certificate not accepted: SELF_SIGNED_CERT_IN_CHAIN']);

      // A client with no certificate at all gets nothing either.
      const bare = await new Promise<string>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () =>
          socket.write('hi'),
        );
        let reply = '';
        socket.on('data', (d) => {
          reply += d;
        });
        socket.on('close', () => resolve(reply));
        socket.on('error', () => undefined);
      });
      expect(bare).toBe('');
      for (let i = 0; i < 50 && refusals.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(refusals[1]).toBe('no client certificate presented');
      expect(seen).toEqual([]);

      // A TCP probe that connects and leaves (a load balancer's health check) is not a refusal;
      // bytes that are not TLS are.
      const probe = (bytes?: string) =>
        new Promise<void>((resolve) => {
          const socket = netConnect(port, '127.0.0.1', () => (bytes ? socket.end(bytes) : socket.destroy()));
          socket.on('close', () => resolve());
          socket.on('error', () => undefined);
        });
      await probe();
      await probe('GET / HTTP/1.1\r\n\r\n');
      for (let i = 0; i < 50 && refusals.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
      expect(refusals.slice(2)).toEqual([expect.stringMatching(/^handshake failed: /)]);
    } finally {
      identity.close();
      srv.close();
      for (const d of [server.dir, impostor.dir]) rmSync(d, { recursive: true, force: true });
    }
  });
});
