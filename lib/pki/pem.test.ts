import { testCA } from '../testing/pki.ts';
import { parseCertificateChain } from './certificate.ts';
import { PkiErrorCode } from './errors.ts';
import { parsePrivateKeyPem } from './keys.ts';
import { decodePem, MAX_CHAIN_CERTIFICATES, MAX_KEY_PEM_BYTES, MAX_PEM_BUNDLE_BYTES } from './pem.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('PEM input limits', () => {
  it.each([
    ['empty input', '', PkiErrorCode.MalformedPem],
    ['DER bytes', Buffer.from([0x30, 0x82, 0x01, 0x0a]), PkiErrorCode.MalformedPem],
    ['a BEGIN with no END', '-----BEGIN CERTIFICATE-----\nAAAA\n', PkiErrorCode.MalformedPem],
    ['an empty block', '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n', PkiErrorCode.MalformedPem],
    [
      'a body that is not base64',
      '-----BEGIN CERTIFICATE-----\n<script>\n-----END CERTIFICATE-----\n',
      PkiErrorCode.MalformedPem,
    ],
    ['an oversized bundle', 'x'.repeat(MAX_PEM_BUNDLE_BYTES + 1), PkiErrorCode.PemTooLarge],
  ])('should refuse %s', (_name, input, code) => {
    expect(codeOf(() => decodePem(input, 'input'))).toBe(code);
  });

  it('should refuse an oversized private key before parsing it', () => {
    expect(codeOf(() => parsePrivateKeyPem('k'.repeat(MAX_KEY_PEM_BYTES + 1)))).toBe(
      PkiErrorCode.PemTooLarge,
    );
  });

  it('should refuse a chain with too many certificates', async () => {
    const { certPem } = await testCA();
    expect(codeOf(() => parseCertificateChain(certPem.repeat(MAX_CHAIN_CERTIFICATES + 1)))).toBe(
      PkiErrorCode.PemTooLarge,
    );
  });

  it('should refuse a file with only a private key where a certificate belongs', async () => {
    const { keyPem } = await testCA();
    expect(codeOf(() => parseCertificateChain(keyPem))).toBe(PkiErrorCode.NoCertificate);
  });

  it('should refuse a file with only a certificate where a key belongs', async () => {
    const { certPem } = await testCA();
    expect(codeOf(() => parsePrivateKeyPem(certPem))).toBe(PkiErrorCode.NoPrivateKey);
  });

  it('should read PEM with CRLF line ends and text around the blocks', async () => {
    const { certPem } = await testCA({ commonName: 'CRLF' });
    const messy = `subject=CRLF\r\n${certPem.replaceAll('\n', '\r\n')}trailing words\r\n`;
    expect(parseCertificateChain(messy)[0]!.facts.subject.commonName).toBe('CRLF');
  });

  it.each([
    ['many BEGIN lines', '-----BEGIN A-----'.repeat(14_000)],
    [
      'one huge base64 body',
      `-----BEGIN CERTIFICATE-----\n${'A'.repeat(MAX_PEM_BUNDLE_BYTES - 60)}\n-----END CERTIFICATE-----`,
    ],
    ['many dashes', '-'.repeat(MAX_PEM_BUNDLE_BYTES)],
  ])('should answer quickly for pathological input: %s', (_name, input) => {
    const started = process.hrtime.bigint();
    expect(codeOf(() => parseCertificateChain(input))).toBeDefined();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // A bound far above the measured time (~1-5 ms), low enough to catch quadratic behaviour.
    expect(ms).toBeLessThan(500);
  });
});
