// A small DER writer and reader for the one structure Sigil handles at volume:
// a certificate. @peculiar/x509 builds and reads certificates through a
// generic ASN.1 schema layer, about 3 ms to write one (it parses its own
// output back) and 1.4 ms to read one, the largest costs of a burst of
// issuance and of a restart. This writes the fixed leaf template directly and
// reads the few fields node:crypto does not expose, from DER that OpenSSL has
// already accepted. The tests read every certificate written here back with
// @peculiar/x509 and node:crypto, verify it with OpenSSL, and compare this
// reader's facts with @peculiar/x509's.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { asn1TimeDigits } from '../time.ts';
import { canonicalIp } from './names.ts';

const Tag = {
  Boolean: 0x01,
  Integer: 0x02,
  BitString: 0x03,
  OctetString: 0x04,
  Null: 0x05,
  Oid: 0x06,
  Utf8String: 0x0c,
  PrintableString: 0x13,
  Ia5String: 0x16,
  UtcTime: 0x17,
  GeneralizedTime: 0x18,
  Sequence: 0x30,
  Set: 0x31,
} as const;

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One element: tag, length, content. */
export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), lengthBytes(content.length), content]);
}

export const sequence = (...items: Buffer[]) => tlv(Tag.Sequence, Buffer.concat(items));
/** A SET of one element (Sigil never writes larger sets, so DER's sort order never arises). */
export const setOfOne = (item: Buffer) => tlv(Tag.Set, item);
export const octetString = (b: Buffer) => tlv(Tag.OctetString, b);
export const nullValue = () => tlv(Tag.Null, Buffer.alloc(0));
export const booleanTrue = () => tlv(Tag.Boolean, Buffer.from([0xff]));
export const utf8String = (s: string) => tlv(Tag.Utf8String, Buffer.from(s, 'utf8'));
export const ia5String = (s: string) => tlv(Tag.Ia5String, Buffer.from(s, 'ascii'));
/** [n] EXPLICIT: a constructed context tag around a whole element. */
export const explicit = (n: number, inner: Buffer) => tlv(0xa0 | n, inner);
/** [n] IMPLICIT on a primitive: the content with a context tag instead of its own. */
export const implicit = (n: number, content: Buffer) => tlv(0x80 | n, content);

/** PrintableString when the text fits its alphabet (countryName must be one), else UTF8String. */
export function directoryString(s: string, preferPrintable: boolean): Buffer {
  return preferPrintable && /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(s)
    ? tlv(Tag.PrintableString, Buffer.from(s, 'ascii'))
    : utf8String(s);
}

/** A non-negative INTEGER from big-endian magnitude bytes (a leading zero added when the top bit is set). */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return tlv(Tag.Integer, (trimmed[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export const smallInteger = (n: number) => unsignedInteger(Buffer.from([n]));

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  if (parts.length < 2 || parts.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new Error(`not an object identifier: ${dotted}`);
  }
  const bytes: number[] = [];
  const arc = (v: number) => {
    const chunk: number[] = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift(0x80 | (x & 0x7f));
    bytes.push(...chunk);
  };
  arc(parts[0]! * 40 + parts[1]!);
  for (const p of parts.slice(2)) arc(p);
  return tlv(Tag.Oid, Buffer.from(bytes));
}

/** A BIT STRING holding whole bytes (signatures, public keys). */
export const bitString = (bytes: Buffer) => tlv(Tag.BitString, Buffer.concat([Buffer.from([0]), bytes]));

/**
 * A named-bit BIT STRING (KeyUsage): bit i of `flags` is bit i of the string,
 * counted from the most significant bit of the first byte; trailing zero bits
 * are dropped as DER requires.
 */
export function namedBits(flags: number): Buffer {
  if (flags === 0) return tlv(Tag.BitString, Buffer.from([0]));
  const highest = 31 - Math.clz32(flags);
  const out = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (let i = 0; i <= highest; i++) if (flags & (1 << i)) out[i >> 3]! |= 0x80 >> (i & 7);
  return tlv(Tag.BitString, Buffer.concat([Buffer.from([7 - (highest % 8)]), out]));
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(d: Date): Buffer {
  const digits = asn1TimeDigits(d);
  return Number(digits.slice(0, 4)) < 2050
    ? tlv(Tag.UtcTime, Buffer.from(`${digits.slice(2)}Z`, 'ascii'))
    : tlv(Tag.GeneralizedTime, Buffer.from(`${digits}Z`, 'ascii'));
}

/** Where one element sits in a buffer. */
export interface Element {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the content. */
  end: number;
}

/** Reads one element's header at `offset`. Throws on truncated or oversized lengths. */
export function readElement(buf: Buffer, offset: number): Element {
  const tag = buf[offset];
  const first = buf[offset + 1];
  if (tag === undefined || first === undefined) throw new Error('DER: truncated element');
  let length = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length');
    length = 0;
    for (let i = 0; i < n; i++) {
      const b = buf[offset + 2 + i];
      if (b === undefined) throw new Error('DER: truncated length');
      length = length * 256 + b;
    }
    contentStart += n;
  }
  const end = contentStart + length;
  if (end > buf.length) throw new Error('DER: element runs past the end');
  return { tag, start: offset, contentStart, end };
}

/** The elements directly inside a constructed element. */
export function children(buf: Buffer, parent: Element): Element[] {
  const out: Element[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const e = readElement(buf, at);
    out.push(e);
    at = e.end;
  }
  return out;
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (what a key identifier hashes). */
export function spkiPublicKeyBits(spki: Buffer): Buffer {
  const info = readElement(spki, 0);
  const bits = children(spki, info)[1];
  if (!bits || bits.tag !== Tag.BitString) throw new Error('DER: SubjectPublicKeyInfo without a key');
  return spki.subarray(bits.contentStart + 1, bits.end);
}

/** 4 bytes for IPv4, 16 for IPv6 (the iPAddress GeneralName form). */
export function ipBytes(ip: string): Buffer {
  const kind = isIP(ip);
  if (kind === 4) return Buffer.from(ip.split('.').map(Number));
  if (kind !== 6) throw new Error(`not an IP address: ${ip}`);
  // The canonical form has no embedded IPv4 part and at most one "::".
  const [head = '', tail] = canonicalIp(ip).split('::');
  const words = (s: string) => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const left = words(head);
  const right = tail === undefined ? [] : words(tail);
  const all = [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => {
    out.writeUInt16BE(w, i * 2);
  });
  return out;
}

/** A dotted object identifier from an OBJECT IDENTIFIER element. */
export function readOid(buf: Buffer, e: Element): string {
  const arcs: number[] = [];
  let value = 0;
  for (let i = e.contentStart; i < e.end; i++) {
    const b = buf[i]!;
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (arcs.length === 0)
        arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else arcs.push(value);
      value = 0;
    }
  }
  return arcs.join('.');
}

/** The text of a directory string (UTF8, Printable, IA5, Teletex, BMP or Universal). */
export function readString(buf: Buffer, e: Element): string {
  const content = buf.subarray(e.contentStart, e.end);
  switch (e.tag) {
    case 0x1e: // BMPString: UTF-16BE
      return Buffer.from(content).swap16().toString('utf16le');
    case 0x1c: {
      // UniversalString: UTF-32BE
      let out = '';
      for (let i = 0; i + 3 < content.length; i += 4) out += String.fromCodePoint(content.readUInt32BE(i));
      return out;
    }
    case 0x14: // TeletexString, read as Latin-1 as OpenSSL does
      return content.toString('latin1');
    default:
      return content.toString('utf8');
  }
}

/** Lower-case hex of a content's bytes. */
export const contentHex = (buf: Buffer, e: Element) => buf.subarray(e.contentStart, e.end).toString('hex');

/** An iPAddress GeneralName's text: dotted IPv4, or IPv6 as groups (callers canonicalise). */
export function readIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  throw new Error(`DER: an IP address of ${bytes.length} bytes`);
}

/** The parts of a certificate Sigil reads, found by walking its DER. */
export interface CertificateFields {
  serialHex: string;
  /** Attribute values by type OID, in order. */
  subject: Map<string, string[]>;
  /** The subject Name, byte for byte (a leaf's issuer must match its CA's subject exactly). */
  subjectDer: Buffer;
  /** The issuer Name, byte for byte. */
  issuerDer: Buffer;
  spki: Buffer;
  /** Extensions by OID: whether critical, and the DER inside the OCTET STRING. */
  extensions: Map<string, { critical: boolean; value: Buffer }>;
}

export function readCertificate(der: Buffer): CertificateFields {
  const root = readElement(der, 0);
  const tbs = children(der, root)[0];
  if (!tbs) throw new Error('DER: certificate without TBSCertificate');
  const fields = children(der, tbs);
  const skip = fields[0]?.tag === 0xa0 ? 1 : 0;
  const serial = fields[skip];
  const issuer = fields[skip + 2];
  const subject = fields[skip + 4];
  const spki = fields[skip + 5];
  if (!serial || !issuer || !subject || !spki) throw new Error('DER: TBSCertificate is missing fields');
  const names = new Map<string, string[]>();
  for (const rdn of children(der, subject)) {
    for (const atv of children(der, rdn)) {
      const [type, value] = children(der, atv);
      if (!type || !value) continue;
      const oidText = readOid(der, type);
      names.set(oidText, [...(names.get(oidText) ?? []), readString(der, value)]);
    }
  }
  const extensions = new Map<string, { critical: boolean; value: Buffer }>();
  const wrapper = fields.slice(skip + 6).find((f) => f.tag === 0xa3);
  const list = wrapper ? children(der, wrapper)[0] : undefined;
  for (const ext of list ? children(der, list) : []) {
    const parts = children(der, ext);
    const id = parts[0];
    const octets = parts[parts.length - 1];
    if (!id || !octets || octets.tag !== Tag.OctetString) throw new Error('DER: malformed extension');
    const critical = parts.length === 3 && parts[1]!.tag === Tag.Boolean && der[parts[1]!.contentStart] !== 0;
    extensions.set(readOid(der, id), { critical, value: der.subarray(octets.contentStart, octets.end) });
  }
  return {
    serialHex: contentHex(der, serial),
    subject: names,
    subjectDer: der.subarray(subject.start, subject.end),
    issuerDer: der.subarray(issuer.start, issuer.end),
    spki: der.subarray(spki.start, spki.end),
    extensions,
  };
}

/**
 * The URI SANs of a certificate, byte for byte (latin1, so nothing is
 * normalised: a non-ASCII byte stays visible to whoever checks the text).
 */
export function uriSubjectAltNames(der: Buffer): string[] {
  const san = readCertificate(der).extensions.get(ExtensionOid.subjectAltName);
  if (!san) return [];
  return children(san.value, readElement(san.value, 0))
    .filter((n) => n.tag === 0x86)
    .map((n) => san.value.subarray(n.contentStart, n.end).toString('latin1'));
}

/** Object identifiers of the subject attributes Sigil writes and reads. */
export const AttributeOid = {
  CN: '2.5.4.3',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  O: '2.5.4.10',
  OU: '2.5.4.11',
} as const;

/** Object identifiers of the certificate extensions Sigil writes and reads. */
export const ExtensionOid = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  nameConstraints: '2.5.29.30',
} as const;

/** A random positive 128-bit serial number as hex (RFC 5280: at most 20 octets, never negative). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive, and never a leading zero byte
  return bytes.toString('hex');
}
