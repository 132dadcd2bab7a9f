// The public key of a PKCS#10 certification request (RFC 2986). Only the key
// is read: a PodCertificateRequest's stub request names nothing else, and the
// API server has already checked its signature.
import { createPublicKey, type KeyObject } from 'node:crypto';
import * as der from './der.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import { describeKeyObject, type KeyDescription } from './keys.ts';

/** A request larger than this is refused unread (a stub request is a few hundred bytes). */
export const MAX_CSR_BYTES = 64 * 1024;

export interface RequestedKey {
  /** DER SubjectPublicKeyInfo, as it goes into the certificate. */
  spki: Buffer;
  publicKey: KeyObject;
  key: KeyDescription;
}

/** A DER SubjectPublicKeyInfo read as a key; throws PkiError with a sentence when it is not one. */
export function readPublicKey(spki: Buffer, what: string): RequestedKey {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: the public key does not decode (${(err as Error).message})`,
    );
  }
  return { spki, publicKey, key: describeKeyObject(publicKey) };
}

/**
 * The subject public key of a DER PKCS#10 request: CertificationRequest ::=
 * SEQUENCE { certificationRequestInfo SEQUENCE { version, subject, subjectPKInfo, attributes }, ... }.
 */
export function requestPublicKey(csr: Buffer, what = 'certificate request'): RequestedKey {
  if (csr.length > MAX_CSR_BYTES)
    throw new PkiError(
      PkiErrorCode.PemTooLarge,
      `${what} is ${csr.length} bytes, more than ${MAX_CSR_BYTES}`,
    );
  let spki: Buffer;
  try {
    const outer = der.readElement(csr, 0);
    if (outer.tag !== 0x30 || outer.end !== csr.length) throw new Error('not one DER SEQUENCE');
    const info = der.children(csr, outer)[0];
    if (info?.tag !== 0x30) throw new Error('no certificationRequestInfo');
    const fields = der.children(csr, info);
    const key = fields[2];
    if (fields[0]?.tag !== 0x02 || fields[1]?.tag !== 0x30 || !key || key.tag !== 0x30)
      throw new Error('certificationRequestInfo is not version, subject, subjectPKInfo');
    spki = csr.subarray(key.start, key.end);
  } catch (err) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what} is not a DER PKCS#10 request (${(err as Error).message})`,
    );
  }
  return readPublicKey(Buffer.from(spki), what);
}
