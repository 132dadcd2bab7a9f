import { PkiError, PkiErrorCode } from './errors.ts';

/** A bundle (CA chain, tls.crt) larger than this is refused before parsing. */
export const MAX_PEM_BUNDLE_BYTES = 256 * 1024;
/** At most this many certificates in one chain. */
export const MAX_CHAIN_CERTIFICATES = 16;
/** A single private key PEM larger than this is refused (RSA-8192 PKCS#8 is ~6.5 KB). */
export const MAX_KEY_PEM_BYTES = 16 * 1024;

export interface PemBlock {
  label: string;
  der: Buffer;
}

const BEGIN = /-----BEGIN ([A-Z0-9 ]{1,40})-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/=\s]*$/;

/**
 * Splits PEM text into blocks. Linear in the input size: the input is capped
 * first, each BEGIN is matched to the next END with indexOf, and the body is
 * checked with an anchored character-class test.
 */
export function decodePem(input: string | Buffer, what: string, maxBytes = MAX_PEM_BUNDLE_BYTES): PemBlock[] {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > maxBytes) {
    throw new PkiError(
      PkiErrorCode.PemTooLarge,
      `${what} is ${size} bytes, more than the ${maxBytes} bytes allowed; check that the right data was stored there`,
    );
  }
  const text = typeof input === 'string' ? input : input.toString('latin1');
  const blocks: PemBlock[] = [];
  BEGIN.lastIndex = 0;
  for (let m = BEGIN.exec(text); m !== null; m = BEGIN.exec(text)) {
    const label = m[1]!;
    const endMarker = `-----END ${label}-----`;
    const bodyStart = m.index + m[0].length;
    const end = text.indexOf(endMarker, bodyStart);
    if (end < 0) {
      throw new PkiError(PkiErrorCode.MalformedPem, `${what}: the ${label} block has no matching END line`);
    }
    const body = text.slice(bodyStart, end);
    if (!BASE64_BODY.test(body)) {
      throw new PkiError(
        PkiErrorCode.MalformedPem,
        `${what}: the ${label} block holds characters that are not base64 (PEM headers are not supported)`,
      );
    }
    const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    if (der.length === 0) {
      throw new PkiError(PkiErrorCode.MalformedPem, `${what}: the ${label} block is empty`);
    }
    blocks.push({ label, der });
    BEGIN.lastIndex = end + endMarker.length;
  }
  if (blocks.length === 0) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what} is not PEM: expected "-----BEGIN ...-----" blocks; store the PEM text itself, not DER or a file name`,
    );
  }
  return blocks;
}

export function encodePem(label: string, der: ArrayBuffer | Uint8Array | Buffer): string {
  const b64 = Buffer.from(der as Uint8Array).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
