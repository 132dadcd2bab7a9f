// A real mutual TLS handshake with node:tls between identities the PKI issued.

import type { AddressInfo } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { DAY, HOUR, testCA } from '../testing/pki.ts';
import type { CertificateAuthority } from './ca.ts';
import { issueCertificate } from './issue.ts';

const now = new Date();

async function identity(ca: CertificateAuthority, name: string, at = now, durationMs = DAY) {
  return issueCertificate(ca, { uris: [`spiffe://cluster.local/ns/shop/sa/${name}`], durationMs }, at);
}

interface Outcome {
  ok: boolean;
  serverSawPeer?: string | undefined;
  clientSawPeer?: string | undefined;
  error?: string | undefined;
}

async function handshake(
  server: { cert: string; key: string; ca: string },
  client: { cert?: string; key?: string; ca: string },
): Promise<Outcome> {
  let serverSawPeer: string | undefined;
  const srv = createServer(
    {
      cert: server.cert,
      key: server.key,
      ca: server.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    (socket: TLSSocket) => {
      serverSawPeer = socket.getPeerCertificate().subjectaltname;
      socket.end('hello');
    },
  );
  srv.on('tlsClientError', () => {});
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  try {
    return await new Promise<Outcome>((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: client.ca,
        cert: client.cert,
        key: client.key,
        checkServerIdentity: () => undefined, // SPIFFE identities carry no DNS name; the peer is checked by URI below
      });
      let data = '';
      socket.on('data', (d) => {
        data += d;
      });
      socket.on('end', () =>
        resolve({
          ok: data === 'hello',
          serverSawPeer,
          clientSawPeer: socket.getPeerCertificate().subjectaltname,
        }),
      );
      socket.on('error', (err) => resolve({ ok: false, error: err.message }));
    });
  } finally {
    srv.close();
  }
}

describe('mutual TLS between issued identities', () => {
  let ca: CertificateAuthority;
  let server: { cert: string; key: string; ca: string };

  beforeAll(async () => {
    ca = (await testCA()).ca;
    const s = await identity(ca, 'payments');
    server = { cert: s.certificatePem, key: s.privateKeyPem, ca: s.caPem };
  });

  it('should complete a handshake in which each side sees the other SPIFFE ID', async () => {
    const c = await identity(ca, 'frontend');
    const outcome = await handshake(server, { cert: c.certificatePem, key: c.privateKeyPem, ca: c.caPem });
    expect(outcome).toMatchObject({
      ok: true,
      serverSawPeer: 'URI:spiffe://cluster.local/ns/shop/sa/frontend',
      clientSawPeer: 'URI:spiffe://cluster.local/ns/shop/sa/payments',
    });
  });

  it('should refuse a client whose certificate comes from another CA', async () => {
    const other = (await testCA({ commonName: 'Other CA' })).ca;
    const c = await identity(other, 'intruder');
    const outcome = await handshake(server, { cert: c.certificatePem, key: c.privateKeyPem, ca: server.ca });
    expect(outcome.ok).toBe(false);
    expect(outcome.serverSawPeer).toBeUndefined();
  });

  it('should refuse an expired client', async () => {
    const past = (
      await testCA({ notBefore: new Date(now.getTime() - 10 * DAY), now: new Date(now.getTime() - 5 * DAY) })
    ).ca;
    const c = await identity(past, 'stale', new Date(now.getTime() - 3 * DAY), HOUR);
    const outcome = await handshake(
      { ...server, ca: past.trustAnchorPem },
      { cert: c.certificatePem, key: c.privateKeyPem, ca: server.ca },
    );
    expect(outcome.ok).toBe(false);
  });

  it('should refuse a client without a certificate', async () => {
    const outcome = await handshake(server, { ca: server.ca });
    expect(outcome.ok).toBe(false);
    expect(outcome.serverSawPeer).toBeUndefined();
  });
});
