// A service on `sigil/mtls`, as a service team writes one. It reads the identity Sigil
// mounts, follows renewals without a restart and authorizes peers by SPIFFE ID.
//   ROLE=backend:  serves mutual TLS on :8443 to the SPIFFE IDs in ALLOWED_PEERS.
//   ROLE=frontend: calls BACKEND (host:port) every INTERVAL_MS (2000), accepting only ALLOWED_PEERS,
//                  and logs the answer whenever it changes.
// Both log a `stats` line every 5 s: calls answered and failed (frontend), connections accepted and
// refused (backend). A CA rotation done right leaves `failed` and `refused` where they were.
import { X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { connect } from 'node:tls';
import { clientOptions, createMtlsServer, spiffeIdOf, watchIdentity } from 'sigil/mtls';

const role = process.env.ROLE;
const allowed = (process.env.ALLOWED_PEERS ?? '').split(',').filter(Boolean);
if ((role !== 'backend' && role !== 'frontend') || allowed.length === 0) {
  console.error('set ROLE=backend|frontend and ALLOWED_PEERS=<SPIFFE IDs, comma-separated>');
  process.exit(2);
}

const intervalMs = Number(process.env.INTERVAL_MS ?? 2000);
const stats = { ok: 0, failed: 0, accepted: 0, refused: 0 };
setInterval(
  () =>
    console.log(
      role === 'backend'
        ? `stats accepted=${stats.accepted} refused=${stats.refused}`
        : `stats ok=${stats.ok} failed=${stats.failed}`,
    ),
  5000,
);

const identity = watchIdentity();
const own = () => new X509Certificate(identity.current().cert);
const me = () => own().subjectAltName?.replace(/^URI:/, '') ?? own().subject;
const serial = () => own().serialNumber.toLowerCase();
console.log(`${role} ${hostname()} is ${me()}, certificate serial ${serial()}`);
identity.onReload(() => console.log(`certificate files changed: now serial ${serial()} (no restart)`));

if (role === 'backend') {
  let lastPeer = '';
  createMtlsServer(
    identity,
    allowed,
    (socket, peer) => {
      stats.accepted++;
      if (peer !== lastPeer) console.log(`accepted ${peer}`);
      lastPeer = peer;
      socket.end(`hello from ${hostname()}, serial ${serial()}`);
    },
    (reason) => {
      stats.refused++;
      console.log(`refused a client: ${reason}`);
    },
  ).listen(8443, () => console.log(`serving mutual TLS on :8443 to ${allowed.join(', ')}`));
} else {
  const [host, port = '443'] = (process.env.BACKEND ?? 'backend:443').split(':');
  let last = '';
  const say = (line) => {
    if (line !== last) console.log(line);
    last = line;
  };
  const call = () => {
    let peer;
    let body = '';
    let failure = '';
    const socket = connect({ host, port: Number(port), ...clientOptions(identity, allowed) }, () => {
      peer = spiffeIdOf(socket.getPeerCertificate());
    });
    socket.on('data', (d) => {
      body += d;
    });
    socket.on('error', (err) => {
      failure = err.code ?? err.message;
    });
    socket.on('close', () => {
      if (body) stats.ok++;
      else stats.failed++;
      if (body) say(`server ${peer} answered: ${body}`);
      // With TLS 1.3 the server checks the client's certificate after the client's side of the
      // handshake is done: a server that refuses us closes the connection without answering.
      else if (peer)
        say(`refused by server ${peer}: closed without answering${failure ? ` (${failure})` : ''}`);
      else say(`cannot reach ${host}:${port}: ${failure || 'closed'}`);
    });
  };
  call();
  setInterval(call, intervalMs);
}
