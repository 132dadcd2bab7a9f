// Every failure the PKI core can report, with a stable code callers branch on
// and a message a person can act on. Controllers copy the code into condition
// reasons, so codes are PascalCase and never change meaning.
export const PkiErrorCode = {
  /** Input larger than the cap for its kind; rejected before any parsing. */
  PemTooLarge: 'PemTooLarge',
  /** Not PEM at all, or a PEM block whose base64 or DER does not decode. */
  MalformedPem: 'MalformedPem',
  /** No CERTIFICATE block where one is required. */
  NoCertificate: 'NoCertificate',
  /** No private key block where one is required. */
  NoPrivateKey: 'NoPrivateKey',
  /** A key type or size Sigil does not issue or sign with. */
  UnsupportedKey: 'UnsupportedKey',
  /** The private key does not belong to the certificate. */
  KeyMismatch: 'KeyMismatch',
  /** The certificate lacks the CA basic constraint. */
  NotACA: 'NotACA',
  /** The CA certificate's key usage does not allow signing certificates. */
  NoCertSignUsage: 'NoCertSignUsage',
  /** The certificate's notAfter has passed. */
  Expired: 'Expired',
  /** The certificate's notBefore is in the future. */
  NotYetValid: 'NotYetValid',
  /** The issuance request itself is invalid (bad name, bad duration, ...). */
  InvalidRequest: 'InvalidRequest',
} as const;
export type PkiErrorCode = (typeof PkiErrorCode)[keyof typeof PkiErrorCode];

export class PkiError extends Error {
  readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string) {
    super(message);
    this.name = 'PkiError';
    this.code = code;
  }
}

export function isPkiError(err: unknown): err is PkiError {
  return err instanceof PkiError;
}
