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

/**
 * An element to write. Writers build a tree of these and `encode` writes the whole tree once, into
 * one buffer of its exact size: writing each element as its own Buffer copied every byte once per
 * level of nesting and took a slice of Node's shared 64 KiB Buffer pool for every piece, some 50 KB of
 * garbage for each certificate issued, and a pool slab held for as long as any piece of it lived.
 */
export interface Der {
  /** The tag byte, or RAW: content that is already DER, written as it is. */
  readonly tag: number;
  /** Child elements, bytes, or text (UTF-8 when `utf8`, else one byte per character). */
  readonly content: readonly Der[] | Uint8Array | string;
  readonly utf8: boolean;
  /** The content's length in bytes. */
  readonly length: number;
}

const RAW = -1;
const EMPTY = new Uint8Array(0);

/** The element's whole encoding: tag, length octets and content. */
function encodedLength(d: Der): number {
  if (d.tag === RAW) return d.length;
  const n = d.length;
  return 1 + (n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5) + n;
}

function element(tag: number, content: Der['content'], utf8 = false): Der {
  let length: number;
  if (typeof content === 'string') length = utf8 ? Buffer.byteLength(content, 'utf8') : content.length;
  else if (content instanceof Uint8Array) length = content.length;
  else {
    length = 0;
    // Indexed loops: V8's lite mode (the chart's) allocates an iterator result for every step of for-of.
    for (let k = 0; k < content.length; k++) length += encodedLength(content[k]!);
  }
  return { tag, content, utf8, length };
}

function write(out: Buffer, at: number, d: Der): number {
  let i = at;
  if (d.tag !== RAW) {
    out[i++] = d.tag;
    const n = d.length;
    if (n < 0x80) out[i++] = n;
    else {
      const octets = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
      out[i++] = 0x80 | octets;
      for (let k = octets - 1; k >= 0; k--) out[i++] = Math.floor(n / 2 ** (8 * k)) & 0xff;
    }
  }
  const c = d.content;
  if (typeof c === 'string') i += out.write(c, i, d.utf8 ? 'utf8' : 'latin1');
  else if (c instanceof Uint8Array) {
    out.set(c, i);
    i += c.length;
  } else for (let k = 0; k < c.length; k++) i = write(out, i, c[k]!);
  return i;
}

/** The DER bytes of `d`, in a buffer of their own (not a slice of Node's shared pool). */
export function encode(d: Der): Buffer {
  const out = Buffer.alloc(encodedLength(d));
  const end = write(out, 0, d);
  if (end !== out.length) throw new Error(`DER: wrote ${end} bytes of ${out.length}`);
  return out;
}

/** Bytes that are already DER (a public key, a name read from a certificate), written as they are. */
export const raw = (bytes: Uint8Array): Der => element(RAW, bytes);

/** One element: tag, length, content. */
export const tlv = (tag: number, content: readonly Der[] | Uint8Array): Der => element(tag, content);

export const sequence = (...items: Der[]): Der => element(Tag.Sequence, items);
/** A SET of one element (Sigil never writes larger sets, so DER's sort order never arises). */
export const setOfOne = (item: Der): Der => element(Tag.Set, [item]);
/** An OCTET STRING of bytes, or of an element's encoding (an extension's value). */
export const octetString = (content: Der | Uint8Array): Der =>
  element(Tag.OctetString, content instanceof Uint8Array ? content : [content]);
const NULL = element(Tag.Null, EMPTY);
export const nullValue = (): Der => NULL;
const TRUE = element(Tag.Boolean, Uint8Array.of(0xff));
export const booleanTrue = (): Der => TRUE;
export const utf8String = (s: string): Der => element(Tag.Utf8String, s, true);
/** IA5String of ASCII text (names are checked before they get here). */
export const ia5String = (s: string): Der => element(Tag.Ia5String, s);
/** [n] EXPLICIT: a constructed context tag around a whole element. */
export const explicit = (n: number, inner: Der): Der => element(0xa0 | n, [inner]);
/** [n] IMPLICIT on a primitive: the content (bytes, or ASCII text) with a context tag instead of its own. */
export const implicit = (n: number, content: Uint8Array | string): Der => element(0x80 | n, content);

/** PrintableString when the text fits its alphabet (countryName must be one), else UTF8String. */
export function directoryString(s: string, preferPrintable: boolean): Der {
  return preferPrintable && /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(s)
    ? element(Tag.PrintableString, s)
    : utf8String(s);
}

const ZERO = raw(Uint8Array.of(0));

/** A non-negative INTEGER from big-endian magnitude bytes (a leading zero added when the top bit is set). */
export function unsignedInteger(magnitude: Uint8Array): Der {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return (trimmed[0]! & 0x80) !== 0
    ? element(Tag.Integer, [ZERO, raw(trimmed)])
    : element(Tag.Integer, trimmed);
}

export const smallInteger = (n: number): Der => unsignedInteger(Uint8Array.of(n));

/** Encoded identifiers by their dotted form: the writer only ever passes the constants below and EKU's table. */
const oids = new Map<string, Uint8Array>();
const MAX_CACHED_OIDS = 64;

export function oid(dotted: string): Der {
  let bytes = oids.get(dotted);
  if (!bytes) {
    const parts = dotted.split('.').map(Number);
    if (parts.length < 2 || parts.some((p) => !Number.isInteger(p) || p < 0)) {
      throw new Error(`not an object identifier: ${dotted}`);
    }
    const out: number[] = [];
    const arc = (v: number) => {
      const chunk: number[] = [v & 0x7f];
      for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift(0x80 | (x & 0x7f));
      out.push(...chunk);
    };
    arc(parts[0]! * 40 + parts[1]!);
    for (const p of parts.slice(2)) arc(p);
    bytes = Uint8Array.from(out);
    if (oids.size < MAX_CACHED_OIDS) oids.set(dotted, bytes);
  }
  return element(Tag.Oid, bytes);
}

/** A BIT STRING holding whole bytes (signatures, public keys). */
export const bitString = (bytes: Uint8Array): Der => element(Tag.BitString, [ZERO, raw(bytes)]);

/**
 * A named-bit BIT STRING (KeyUsage): bit i of `flags` is bit i of the string,
 * counted from the most significant bit of the first byte; trailing zero bits
 * are dropped as DER requires.
 */
export function namedBits(flags: number): Der {
  if (flags === 0) return element(Tag.BitString, Uint8Array.of(0));
  const highest = 31 - Math.clz32(flags);
  const out = new Uint8Array(Math.floor(highest / 8) + 2);
  out[0] = 7 - (highest % 8);
  for (let i = 0; i <= highest; i++) if (flags & (1 << i)) out[1 + (i >> 3)]! |= 0x80 >> (i & 7);
  return element(Tag.BitString, out);
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
export function time(d: Date): Der {
  const digits = asn1TimeDigits(d);
  return Number(digits.slice(0, 4)) < 2050
    ? element(Tag.UtcTime, `${digits.slice(2)}Z`)
    : element(Tag.GeneralizedTime, `${digits}Z`);
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
