// Who may call /mutate-v1-pod: with a client CA configured, only a caller that
// presents a certificate from it (the API server does, through its admission
// configuration's kubeconfig), optionally only one whose subject common name or
// DNS SAN is listed. Checked before the body is read.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { fs } from '../lib/builtins.ts';
import { ReviewError, ReviewErrorCode } from './errors.ts';

export interface ClientAuthOptions {
  /** PEM bundle of the CAs whose client certificates may call the webhook. */
  caFile: string;
  /** Subject common names or DNS SANs allowed; empty means any certificate from the CA. */
  names: readonly string[];
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads and checks the client CA bundle; throws a sentence naming the file and what is wrong. */
export function readClientCa(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--client-ca-file ${file} cannot be read: ${(err as Error).message}`);
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0)
    throw new Error(
      `--client-ca-file ${file} holds no PEM certificate; give the CA that signs the API server's client certificate`,
    );
  for (const block of blocks) {
    try {
      if (!new X509Certificate(block).ca)
        throw new Error('it is not a CA certificate (basicConstraints CA:FALSE)');
    } catch (err) {
      throw new Error(
        `--client-ca-file ${file} holds a certificate that cannot be used: ${(err as Error).message}`,
      );
    }
  }
  return blocks.join('\n');
}

/** Undefined when the connection's client may call the webhook; otherwise the error to answer with. */
export function clientAuthProblem(socket: TLSSocket, names: readonly string[]): ReviewError | undefined {
  const peer = socket.getPeerCertificate?.();
  if (!peer || Object.keys(peer).length === 0) {
    return new ReviewError(
      ReviewErrorCode.Unauthenticated,
      'this endpoint answers only the API server: present a client certificate signed by the CA in --client-ca-file (the API server presents one from the kubeconfig named in its --admission-control-config-file)',
    );
  }
  if (!socket.authorized) {
    return new ReviewError(
      ReviewErrorCode.Unauthenticated,
      `the client certificate was not accepted (${String(socket.authorizationError)}); present one signed by the CA in --client-ca-file`,
    );
  }
  if (names.length === 0) return undefined;
  const cn = peer.subject?.CN;
  const presented = [
    ...(Array.isArray(cn) ? cn : cn ? [cn] : []),
    ...(peer.subjectaltname ?? '')
      .split(', ')
      .filter((s) => s.startsWith('DNS:'))
      .map((s) => s.slice(4)),
  ];
  if (presented.some((n) => names.includes(n))) return undefined;
  return new ReviewError(
    ReviewErrorCode.Forbidden,
    `the client certificate names ${presented.join(', ') || 'no one'}, and --client-names allows only ${names.join(', ')}`,
  );
}
