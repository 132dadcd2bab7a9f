// For services that use the files Sigil mounts: TLS server and client options
// from the directory, reloaded when the files rotate, and peer authorization
// by SPIFFE ID. Works with node:tls and node:https.
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  createSecureContext,
  createServer,
  type PeerCertificate,
  type SecureContext,
  type Server,
  type TLSSocket,
} from 'node:tls';
import { uriSubjectAltNames } from '../pki/der.ts';
import { spiffeIdProblem } from '../tenancy/spiffe.ts';

export const DEFAULT_DIRECTORY = '/var/run/secrets/sigil.dev';

export interface IdentityFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Where the webhook mounted the files: the directory of $SIGIL_CERT_FILE, else the default. */
export function identityDirectory(): string {
  return process.env.SIGIL_CERT_FILE ? dirname(process.env.SIGIL_CERT_FILE) : DEFAULT_DIRECTORY;
}

export function readIdentity(directory = identityDirectory()): IdentityFiles {
  return {
    cert: readFileSync(join(directory, 'tls.crt'), 'utf8'),
    key: readFileSync(join(directory, 'tls.key'), 'utf8'),
    ca: readFileSync(join(directory, 'ca.crt'), 'utf8'),
  };
}

/**
 * The SPIFFE ID of a peer certificate: its one URI SAN, read from the DER as
 * written, when that is a canonical SPIFFE ID (lib/tenancy's rule, the same
 * one the operator issues by). A certificate with several URI SANs, or a
 * non-canonical one (SPIFFE://, %2e%2e, "//", non-ASCII), has no SPIFFE ID
 * and is refused: a verifier that normalised it could be fooled.
 */
export function spiffeIdOf(cert: PeerCertificate | undefined): string | undefined {
  if (!cert?.raw || cert.raw.length === 0) return undefined;
  let uris: string[];
  try {
    uris = uriSubjectAltNames(cert.raw);
  } catch {
    return undefined;
  }
  if (uris.length !== 1) return undefined;
  const id = uris[0]!;
  return spiffeIdProblem(id) === undefined ? id : undefined;
}

/**
 * A matcher for allowed peers: exact IDs, or patterns where `*` matches one
 * path segment and a trailing `/**` any rest ("spiffe://cluster.local/ns/shop/sa/*").
 * Only canonical SPIFFE IDs ever match.
 */
export function spiffeMatcher(allowed: readonly string[]): (id: string | undefined) => boolean {
  const patterns = allowed.map((a) => {
    const escaped = a.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    const source = escaped
      .replace(/\/\*\*$/, '\u0000')
      .replace(/\*/g, '[^/]+')
      .replace('\u0000', '(/.*)?');
    return new RegExp(`^${source}$`);
  });
  return (id) => id !== undefined && spiffeIdProblem(id) === undefined && patterns.some((p) => p.test(id));
}

export interface ReloadingIdentity {
  /** The current context; changes when the files rotate. */
  context: () => SecureContext;
  current: () => IdentityFiles;
  /** Called after every successful reload. */
  onReload: (listener: (files: IdentityFiles) => void) => void;
  close: () => void;
}

/**
 * Watches the directory (Kubernetes swaps the files atomically through a
 * `..data` symlink; a plain directory works too) and rebuilds the TLS context
 * when the content changes. A half-written or mismatched pair is ignored
 * until it is whole.
 */
export function watchIdentity(directory = identityDirectory(), intervalMs = 1000): ReloadingIdentity {
  let files = readIdentity(directory);
  let context = createSecureContext({
    cert: files.cert,
    key: files.key,
    ca: files.ca,
    minVersion: 'TLSv1.2',
  });
  const listeners: ((f: IdentityFiles) => void)[] = [];
  const check = () => {
    let next: IdentityFiles;
    try {
      next = readIdentity(directory);
    } catch {
      return;
    }
    if (next.cert === files.cert && next.key === files.key && next.ca === files.ca) return;
    try {
      context = createSecureContext({ cert: next.cert, key: next.key, ca: next.ca, minVersion: 'TLSv1.2' });
    } catch {
      return; // key and certificate do not match yet: wait for the rest of the update
    }
    files = next;
    for (const l of listeners) l(files);
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(directory, () => check());
  } catch {
    watcher = undefined;
  }
  // fs.watch misses some symlink swaps; a cheap periodic compare catches them.
  const timer = setInterval(check, intervalMs);
  timer.unref();
  return {
    context: () => context,
    current: () => files,
    onReload: (l) => listeners.push(l),
    close: () => {
      watcher?.close();
      clearInterval(timer);
    },
  };
}

/**
 * A mutual-TLS server on the current identity. It follows rotations without a
 * restart, and hands `onConnection` only peers whose SPIFFE ID is allowed;
 * others are disconnected before the application sees them. `onRefused` hears
 * of each: a certificate the CA did not sign (or expired, or none), a SPIFFE ID
 * not allowed, and a handshake that failed.
 */
export function createMtlsServer(
  identity: ReloadingIdentity,
  allowedPeers: readonly string[],
  onConnection: (socket: TLSSocket, peerId: string) => void,
  onRefused?: (reason: string) => void,
): Server {
  const allowed = spiffeMatcher(allowedPeers);
  const files = identity.current();
  const server = createServer(
    {
      cert: files.cert,
      key: files.key,
      ca: files.ca,
      requestCert: true,
      // Checked below instead: with rejectUnauthorized Node drops the socket without saying why,
      // and the refusal should name the reason (another CA, expired, no certificate).
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (socket) => {
      if (!socket.authorized) {
        const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
        onRefused?.(
          presented
            ? `certificate not accepted: ${socket.authorizationError ?? 'not verified'}`
            : 'no client certificate presented',
        );
        socket.destroy();
        return;
      }
      const peer = spiffeIdOf(socket.getPeerCertificate());
      if (!allowed(peer)) {
        onRefused?.(`peer ${peer ?? '(no SPIFFE ID)'} is not allowed`);
        socket.destroy();
        return;
      }
      onConnection(socket, peer!);
    },
  );
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    // A connection closed before or during the handshake (a TCP health check, a port probe) is not
    // a refusal; a handshake that fails on its content (not TLS, no common version) is.
    if (err.code === 'ECONNRESET') return;
    onRefused?.(`handshake failed: ${err.message}`);
  });
  identity.onReload((f) =>
    server.setSecureContext({ cert: f.cert, key: f.key, ca: f.ca, minVersion: 'TLSv1.2' }),
  );
  return server;
}

/** Options for tls.connect / https.request: the current identity, and the server's SPIFFE ID checked. */
export function clientOptions(identity: ReloadingIdentity, allowedServers: readonly string[]) {
  const allowed = spiffeMatcher(allowedServers);
  return {
    secureContext: identity.context(),
    minVersion: 'TLSv1.2' as const,
    // SPIFFE identities carry no host names; the server is checked by its URI SAN instead.
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const id = spiffeIdOf(cert);
      return allowed(id)
        ? undefined
        : new Error(`server identity ${id ?? '(none)'} is not one of ${allowedServers.join(', ')}`);
    },
  };
}
