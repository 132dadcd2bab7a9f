import type { KeyObject } from 'node:crypto';
import { isoString } from '../time.ts';
import {
  type CertificateFacts,
  displayName,
  type ParsedCertificate,
  parseCertificateChain,
  toPemBundle,
} from './certificate.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import { selfSignedCertificate } from './issue.ts';
import { type KeyDescription, type KeySpec, parsePrivateKeyPem, publicKeySpki } from './keys.ts';
import { KeyUsageFlag } from './usages.ts';

export { randomSerial } from './der.ts';

/** A CA ready to sign: its certificate, the chain above it, and its key. */
export interface CertificateAuthority {
  certificate: ParsedCertificate;
  /** The CA certificate followed by any chain stored with it. */
  chain: ParsedCertificate[];
  chainPem: string;
  /** The last certificate of the chain: what peers should trust (ca.crt). */
  trustAnchorPem: string;
  signingKey: KeyObject;
  keyDescription: KeyDescription;
  facts: CertificateFacts;
}

/**
 * Loads a CA from the PEM in a Secret's tls.crt and tls.key, and checks that
 * it can sign: key matches the certificate, CA basic constraint, key usage
 * allows cert signing, valid now. Each failure has its own code.
 */
export function loadCertificateAuthority(
  certPem: string | Buffer | undefined,
  keyPem: string | Buffer | undefined,
  now: Date,
  where = 'the CA Secret',
): CertificateAuthority {
  if (certPem === undefined || certPem.length === 0) {
    throw new PkiError(
      PkiErrorCode.NoCertificate,
      `${where} has no tls.crt; store the CA certificate (PEM) under tls.crt`,
    );
  }
  if (keyPem === undefined || keyPem.length === 0) {
    throw new PkiError(
      PkiErrorCode.NoPrivateKey,
      `${where} has no tls.key; store the CA private key (PEM) under tls.key`,
    );
  }
  const chain = parseCertificateChain(certPem, `${where} tls.crt`);
  const key = parsePrivateKeyPem(keyPem, `${where} tls.key`);
  const ca = chain[0]!;
  if (!publicKeySpki(key.keyObject).equals(ca.spki)) {
    throw new PkiError(
      PkiErrorCode.KeyMismatch,
      `${where}: tls.key does not belong to the first certificate in tls.crt; store the CA's own key, and put the CA certificate first`,
    );
  }
  if (!ca.facts.isCA) {
    throw new PkiError(
      PkiErrorCode.NotACA,
      `${where}: the certificate "${displayName(ca)}" is not a CA (basic constraints CA:TRUE missing); use a CA certificate`,
    );
  }
  if (ca.facts.keyUsageFlags !== undefined && (ca.facts.keyUsageFlags & KeyUsageFlag.keyCertSign) === 0) {
    throw new PkiError(
      PkiErrorCode.NoCertSignUsage,
      `${where}: the CA certificate's key usage does not include keyCertSign, so it cannot sign certificates; reissue it with "cert sign"`,
    );
  }
  if (now < ca.facts.notBefore) {
    throw new PkiError(
      PkiErrorCode.NotYetValid,
      `${where}: the CA certificate is not valid until ${isoString(ca.facts.notBefore)}; check the clock or the CA`,
    );
  }
  if (now >= ca.facts.notAfter) {
    throw new PkiError(
      PkiErrorCode.Expired,
      `${where}: the CA certificate expired at ${isoString(ca.facts.notAfter)}; replace it with a valid CA`,
    );
  }
  return {
    certificate: ca,
    chain,
    chainPem: toPemBundle(chain),
    trustAnchorPem: chain[chain.length - 1]!.pem,
    signingKey: key.keyObject,
    keyDescription: key.description,
    facts: ca.facts,
  };
}

export interface SelfSignedCAOptions {
  commonName: string;
  organization?: string;
  key?: Partial<KeySpec>;
  notBefore: Date;
  notAfter: Date;
  pathLength?: number;
}

export interface GeneratedCA {
  certPem: string;
  keyPem: string;
  keyObject: KeyObject;
}

/** Creates a self-signed root CA (bootstrap, the webhook's internal CA, tests). */
export function createSelfSignedCA(options: SelfSignedCAOptions): Promise<GeneratedCA> {
  return selfSignedCertificate(options);
}
