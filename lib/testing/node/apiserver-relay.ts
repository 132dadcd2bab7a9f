// How pods reach the API server: it listens on loopback only, and its serving
// certificate names neither the `kubernetes` Service's ClusterIP nor the node.
// This relay listens on the node's bridge address with a certificate that
// names both (signed by a CA the controller-manager publishes to pods as
// kube-root-ca.crt), and forwards each connection over TLS to the API server.
// Requests pass through unchanged, so pods authenticate with their own tokens.
//
// Run as its own process: node apiserver-relay.ts <config.json>
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:tls';
import { fileURLToPath } from 'node:url';

export interface RelayConfig {
  listenHost: string;
  listenPort: number;
  certFile: string;
  keyFile: string;
  /** The API server on loopback, and the CA its serving certificate chains to. */
  upstreamPort: number;
  upstreamCaFile: string;
}

function relay(config: RelayConfig) {
  const upstreamCa = readFileSync(config.upstreamCaFile);
  const server = createServer(
    {
      cert: readFileSync(config.certFile),
      key: readFileSync(config.keyFile),
      // HTTP/1.1 on both legs, so the bytes piped through mean the same thing on each.
      ALPNProtocols: ['http/1.1'],
    },
    (client) => {
      const upstream = connect({
        host: '127.0.0.1',
        port: config.upstreamPort,
        ca: upstreamCa,
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close);
      upstream.on('error', close);
      client.pipe(upstream).pipe(client);
    },
  );
  server.on('tlsClientError', () => {});
  server.listen(config.listenPort, config.listenHost);
  // Watches hold connections open for minutes: stop at once.
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  relay(JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as RelayConfig);
}
