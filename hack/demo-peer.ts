// One side of the demo's mutual TLS: a service using the files Sigil mounts,
// through the helper in lib/mtls. Prints what it sees.
//   node hack/demo-peer.ts server <dir> <port> <allowed client SPIFFE ID pattern>
//   node hack/demo-peer.ts client <dir> <port> <allowed server SPIFFE ID pattern>
import { connect } from 'node:tls';
import { clientOptions, createMtlsServer, spiffeIdOf, watchIdentity } from '../lib/mtls/index.ts';
import { parseCertificateChain } from '../lib/pki/certificate.ts';

const [mode, dir, portText, allowed] = process.argv.slice(2);
if (!mode || !dir || !portText || !allowed) {
  console.error('usage: demo-peer.ts server|client <dir> <port> <allowed SPIFFE ID>');
  process.exit(2);
}
const identity = watchIdentity(dir, 200);
const own = () => parseCertificateChain(identity.current().cert)[0]!.facts;
const me = own().uris[0];

if (mode === 'server') {
  const server = createMtlsServer(
    identity,
    [allowed],
    (socket, peer) => {
      console.log(`[server ${me}] accepted ${peer}`);
      socket.end(`hello from ${me}, serving certificate serial ${own().serialNumber}\n`);
    },
    (reason) => console.log(`[server ${me}] refused a client: ${reason}`),
  );
  identity.onReload(() =>
    console.log(
      `[server ${me}] certificate files changed; now serving serial ${own().serialNumber} (no restart)`,
    ),
  );
  server.listen(Number(portText), '127.0.0.1', () =>
    console.log(`[server ${me}] listening on 127.0.0.1:${portText}, serial ${own().serialNumber}`),
  );
  process.on('SIGTERM', () => process.exit(0));
} else {
  const socket = connect({
    host: '127.0.0.1',
    port: Number(portText),
    ...clientOptions(identity, [allowed]),
  });
  let reply = '';
  socket.on('secureConnect', () =>
    console.log(`[client ${me}] connected; server is ${spiffeIdOf(socket.getPeerCertificate())}`),
  );
  socket.on('data', (d) => {
    reply += d;
  });
  socket.on('end', () => {
    if (reply) console.log(`[client ${me}] server says: ${reply.trim()}`);
    else console.log(`[client ${me}] the server closed the connection without a word: refused`);
    identity.close();
    process.exit(reply ? 0 : 1);
  });
  socket.on('error', (err) => {
    console.log(`[client ${me}] refused: ${err.message}`);
    identity.close();
    process.exit(1);
  });
}
