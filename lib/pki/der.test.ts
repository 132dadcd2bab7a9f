import { randomBytes, X509Certificate } from 'node:crypto';
import { testCA } from '../testing/pki.ts';
import {
  type Der,
  encode,
  explicit,
  implicit,
  ipBytes,
  namedBits,
  oid,
  raw,
  readCertificate,
  readElement,
  readOid,
  readString,
  sequence,
  time,
  tlv,
  unsignedInteger,
  utf8String,
} from './der.ts';

const hex = (d: Der | Buffer) => (Buffer.isBuffer(d) ? d : encode(d)).toString('hex');

describe('DER writer', () => {
  it('encodes short and long lengths', () => {
    expect(hex(tlv(0x04, Buffer.alloc(3)))).toBe('0403000000');
    expect(hex(tlv(0x04, Buffer.alloc(200))).slice(0, 6)).toBe('0481c8');
    expect(hex(tlv(0x04, Buffer.alloc(300))).slice(0, 8)).toBe('0482012c');
  });

  // An independent writer, element by element, to check the tree's single pass against.
  const reference = (tag: number, content: Buffer): Buffer => {
    const n = content.length;
    const len: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) len.unshift(v & 0xff);
    const header = n < 0x80 ? [tag, n] : [tag, 0x80 | len.length, ...len];
    return Buffer.concat([Buffer.from(header), content]);
  };

  it('writes a tree in one pass exactly as element by element, across every length form', () => {
    for (const size of [0, 1, 127, 128, 255, 256, 65_535, 65_536, 70_000]) {
      const bytes = randomBytes(size);
      const inner = tlv(0x04, bytes);
      const tree = sequence(
        explicit(3, sequence(inner, raw(Buffer.from([5, 0])))),
        utf8String('Zürich 東京'),
      );
      const expected = reference(
        0x30,
        Buffer.concat([
          reference(0xa3, reference(0x30, Buffer.concat([reference(0x04, bytes), Buffer.from([5, 0])]))),
          reference(0x0c, Buffer.from('Zürich 東京', 'utf8')),
        ]),
      );
      expect(encode(tree).equals(expected)).toBe(true);
    }
  });

  it('writes text content without a copy: ASCII one byte a character, UTF-8 by its byte length', () => {
    expect(hex(implicit(2, 'a.example'))).toBe(`8209${Buffer.from('a.example').toString('hex')}`);
    expect(hex(utf8String('é'))).toBe('0c02c3a9');
  });

  it('gives each encoding a buffer of its own, not a slice of the shared pool', () => {
    const out = encode(sequence(oid('2.5.29.17'), tlv(0x04, Buffer.alloc(3))));
    expect(out.byteOffset).toBe(0);
    expect(out.buffer.byteLength).toBe(out.length);
  });

  it('encodes object identifiers with multi-byte arcs', () => {
    expect(hex(oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    expect(() => oid('1')).toThrow(/not an object identifier/);
  });

  it('encodes non-negative integers minimally, with a zero byte before a set top bit', () => {
    expect(hex(unsignedInteger(Buffer.from([0x80])))).toBe('02020080');
    expect(hex(unsignedInteger(Buffer.from([0, 0, 0x7f])))).toBe('02017f');
    expect(hex(unsignedInteger(Buffer.from([0])))).toBe('020100');
  });

  it('encodes key usage bits with trailing zero bits dropped', () => {
    // digitalSignature | keyEncipherment: bits 0 and 2 -> 1010 0000, 5 unused bits.
    expect(hex(namedBits(1 | 4))).toBe('030205a0');
    // digitalSignature | keyCertSign | cRLSign: bits 0, 5, 6 -> 1000 0110, 1 unused bit.
    expect(hex(namedBits(1 | 32 | 64))).toBe('03020186');
    // decipherOnly is bit 8: a second byte.
    expect(hex(namedBits(256))).toBe('0303070080');
  });

  it('uses UTCTime through 2049 and GeneralizedTime from 2050', () => {
    const at = (iso: string) => encode(time(new Date(iso)));
    expect(at('2049-12-31T23:59:59Z').toString('latin1').slice(2)).toBe('491231235959Z');
    expect(at('2049-12-31T23:59:59Z')[0]).toBe(0x17);
    expect(at('2050-01-01T00:00:00Z').toString('latin1').slice(2)).toBe('20500101000000Z');
    expect(at('2050-01-01T00:00:00Z')[0]).toBe(0x18);
  });

  it.each([
    ['10.0.0.7', '0a000007'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['::1', '00000000000000000000000000000001'],
    ['::', '00000000000000000000000000000000'],
    ['fe80::', 'fe800000000000000000000000000000'],
    ['::ffff:1.2.3.4', '00000000000000000000ffff01020304'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '20010db8000000000000ff0000428329'],
  ])('writes the IP address %s as %s', (ip, expected) => {
    expect(hex(ipBytes(ip))).toBe(expected);
  });

  it('refuses what is not an IP address', () => {
    expect(() => ipBytes('10.0.0')).toThrow(/not an IP address/);
  });

  it('reads BMP, Universal and Teletex strings as OpenSSL does', () => {
    const at = (b: Buffer) => readElement(b, 0);
    const bmp = Buffer.concat([Buffer.from([0x1e, 0x06]), Buffer.from('Zür', 'utf16le').swap16()]);
    expect(readString(bmp, at(bmp))).toBe('Zür');
    const universal = Buffer.from([0x1c, 0x04, 0, 0x01, 0xf6, 0x00]);
    expect(readString(universal, at(universal))).toBe('\u{1f600}');
    const teletex = Buffer.from([0x14, 0x02, 0xfc, 0x41]);
    expect(readString(teletex, at(teletex))).toBe('üA');
  });

  it('reads object identifiers back', () => {
    for (const id of ['1.2.840.113549.1.1.11', '2.5.29.17', '1.3.6.1.5.5.7.3.1', '2.999.3']) {
      const b = encode(oid(id));
      expect(readOid(b, readElement(b, 0))).toBe(id);
    }
  });

  it("finds a certificate's subject byte for byte", async () => {
    const { ca } = await testCA({ commonName: 'Subject Finder' });
    const subject = readCertificate(ca.certificate.der).subjectDer;
    // A self-signed certificate's issuer is its subject; node:crypto agrees it holds the CN.
    expect(subject.includes(Buffer.from('Subject Finder'))).toBe(true);
    expect(new X509Certificate(ca.certificate.der).subject).toContain('CN=Subject Finder');
    expect(() => readCertificate(Buffer.from([0x30, 0x05, 0x30]))).toThrow(/DER/);
  });
});
