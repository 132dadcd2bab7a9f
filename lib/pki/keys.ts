import { createPrivateKey, createPublicKey, generateKeyPair, KeyObject, webcrypto } from 'node:crypto';
import { children, readElement, readOid } from './der.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import { decodePem, MAX_KEY_PEM_BYTES } from './pem.ts';

export const KeyAlgorithm = { ECDSA: 'ECDSA', RSA: 'RSA', Ed25519: 'Ed25519' } as const;
export type KeyAlgorithm = (typeof KeyAlgorithm)[keyof typeof KeyAlgorithm];

export const KeyEncoding = { PKCS1: 'PKCS1', PKCS8: 'PKCS8' } as const;
export type KeyEncoding = (typeof KeyEncoding)[keyof typeof KeyEncoding];

export interface KeySpec {
  algorithm: KeyAlgorithm;
  /** ECDSA: 256 or 384; RSA: 2048, 3072 or 4096; ignored for Ed25519. */
  size?: number | undefined;
}

/** What a key is, as read back from a PEM or a certificate. */
export interface KeyDescription {
  algorithm: KeyAlgorithm;
  size: number;
}

export const RSA_SIZES = [2048, 3072, 4096] as const;
export const ECDSA_SIZES = [256, 384] as const;

/** Fills in the default size and checks it is one Sigil issues. */
export function normalizeKeySpec(spec: Partial<KeySpec> | undefined): Required<KeySpec> {
  const algorithm = spec?.algorithm ?? KeyAlgorithm.ECDSA;
  switch (algorithm) {
    case KeyAlgorithm.ECDSA: {
      const size = spec?.size ?? 256;
      if (!(ECDSA_SIZES as readonly number[]).includes(size)) {
        throw new PkiError(
          PkiErrorCode.UnsupportedKey,
          `ECDSA key size ${size} is not supported; use 256 or 384`,
        );
      }
      return { algorithm, size };
    }
    case KeyAlgorithm.RSA: {
      const size = spec?.size ?? 2048;
      if (!(RSA_SIZES as readonly number[]).includes(size)) {
        throw new PkiError(
          PkiErrorCode.UnsupportedKey,
          `RSA key size ${size} is not supported; use 2048, 3072 or 4096`,
        );
      }
      return { algorithm, size };
    }
    case KeyAlgorithm.Ed25519:
      return { algorithm, size: 256 };
    default:
      throw new PkiError(
        PkiErrorCode.UnsupportedKey,
        `key algorithm ${String(algorithm)} is not supported; use ECDSA, RSA or Ed25519`,
      );
  }
}

function curveFor(size: number): 'P-256' | 'P-384' {
  return size === 384 ? 'P-384' : 'P-256';
}

/** The WebCrypto algorithm a key of this kind signs with. */
export function signingAlgorithmFor(key: KeyDescription): Algorithm | EcdsaParams {
  switch (key.algorithm) {
    case KeyAlgorithm.ECDSA:
      return { name: 'ECDSA', hash: key.size === 384 ? 'SHA-384' : 'SHA-256' } as EcdsaParams;
    case KeyAlgorithm.RSA:
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as Algorithm;
    case KeyAlgorithm.Ed25519:
      return { name: 'Ed25519' };
  }
}

/**
 * RSA key generation takes 0.1–3 s of a libuv thread-pool thread (4 by default,
 * shared with signing, DNS and file I/O); ECDSA and Ed25519 take under a
 * millisecond. At most this many RSA keys are generated at once, so a
 * namespace asking for many 4096-bit keys queues behind itself instead of
 * occupying every thread other issuances need.
 */
export const DEFAULT_RSA_KEYGEN_CONCURRENCY = 2;

/** A counting semaphore: `run` waits for a free slot, first come first served. */
export class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  constructor(size: number) {
    this.free = Math.max(1, size);
  }
  get waiting(): number {
    return this.waiters.length;
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiters.push(r));
    try {
      return await work();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    }
  }
}

let rsaSlots = new Slots(DEFAULT_RSA_KEYGEN_CONCURRENCY);

/** Sets how many RSA keys may be generated at once in this process. */
export function setRsaKeygenConcurrency(n: number): void {
  rsaSlots = new Slots(n);
}

/** RSA key generations waiting for a slot, for metrics. */
export function rsaKeygenWaiting(): number {
  return rsaSlots.waiting;
}

export interface GeneratedKey {
  keyObject: KeyObject;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  description: KeyDescription;
}

/** Generates a key pair off the event loop (WebCrypto runs on the thread pool). */
export async function generateKey(spec: Partial<KeySpec> | undefined): Promise<GeneratedKey> {
  const { algorithm, size } = normalizeKeySpec(spec);
  const subtle = webcrypto.subtle;
  let params: EcKeyGenParams | RsaHashedKeyGenParams | Algorithm;
  if (algorithm === KeyAlgorithm.ECDSA) params = { name: 'ECDSA', namedCurve: curveFor(size) };
  else if (algorithm === KeyAlgorithm.RSA)
    params = {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: size,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    };
  else params = { name: 'Ed25519' };
  const make = async () => (await subtle.generateKey(params, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pair = algorithm === KeyAlgorithm.RSA ? await rsaSlots.run(make) : await make();
  return {
    keyObject: KeyObject.from(pair.privateKey as webcrypto.CryptoKey),
    publicKey: pair.publicKey,
    privateKey: pair.privateKey,
    description: { algorithm, size },
  };
}

/** A private key as a KeyObject, generated on the thread pool (no WebCrypto round trip). */
export async function generatePrivateKey(
  spec: Partial<KeySpec> | undefined,
): Promise<{ keyObject: KeyObject; description: KeyDescription }> {
  const description = normalizeKeySpec(spec);
  const done =
    (resolve: (k: KeyObject) => void, reject: (e: Error) => void) =>
    (err: Error | null, _pub: KeyObject, priv: KeyObject) =>
      err ? reject(err) : resolve(priv);
  if (description.algorithm === KeyAlgorithm.RSA) {
    const keyObject = await rsaSlots.run(
      () =>
        new Promise<KeyObject>((resolve, reject) =>
          generateKeyPair(
            'rsa',
            { modulusLength: description.size, publicExponent: 0x10001 },
            done(resolve, reject),
          ),
        ),
    );
    return { keyObject, description };
  }
  const keyObject = await new Promise<KeyObject>((resolve, reject) => {
    if (description.algorithm === KeyAlgorithm.ECDSA)
      generateKeyPair('ec', { namedCurve: curveFor(description.size) }, done(resolve, reject));
    else generateKeyPair('ed25519', {}, done(resolve, reject));
  });
  return { keyObject, description };
}

/** PEM of a private key in the requested encoding. PKCS#1 means SEC1 for ECDSA, as OpenSSL writes it. */
export function exportPrivateKeyPem(key: KeyObject, encoding: KeyEncoding = KeyEncoding.PKCS8): string {
  if (encoding === KeyEncoding.PKCS8) return key.export({ type: 'pkcs8', format: 'pem' }) as string;
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return key.export({ type: 'pkcs1', format: 'pem' }) as string;
    case 'ec':
      return key.export({ type: 'sec1', format: 'pem' }) as string;
    default:
      throw new PkiError(
        PkiErrorCode.UnsupportedKey,
        'Ed25519 keys can only be encoded as PKCS8; set privateKey.encoding to PKCS8',
      );
  }
}

export function describeKeyObject(key: KeyObject): KeyDescription {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { algorithm: KeyAlgorithm.RSA, size: details.modulusLength ?? 0 };
    case 'ec': {
      const curve = details.namedCurve;
      if (curve === 'prime256v1' || curve === 'P-256') return { algorithm: KeyAlgorithm.ECDSA, size: 256 };
      if (curve === 'secp384r1' || curve === 'P-384') return { algorithm: KeyAlgorithm.ECDSA, size: 384 };
      if (curve === 'secp521r1' || curve === 'P-521') return { algorithm: KeyAlgorithm.ECDSA, size: 521 };
      throw new PkiError(
        PkiErrorCode.UnsupportedKey,
        `EC curve ${curve} is not supported; use P-256 or P-384`,
      );
    }
    case 'ed25519':
      return { algorithm: KeyAlgorithm.Ed25519, size: 256 };
    default:
      throw new PkiError(
        PkiErrorCode.UnsupportedKey,
        `${key.asymmetricKeyType} keys are not supported; use ECDSA, RSA or Ed25519`,
      );
  }
}

const KEY_LABELS: Record<string, 'pkcs8' | 'pkcs1' | 'sec1'> = {
  'PRIVATE KEY': 'pkcs8',
  'RSA PRIVATE KEY': 'pkcs1',
  'EC PRIVATE KEY': 'sec1',
};

export interface ParsedPrivateKey {
  keyObject: KeyObject;
  description: KeyDescription;
  encoding: KeyEncoding;
}

/** The PKCS#8 key algorithms Sigil uses, by OID. */
const PKCS8_ALGORITHMS: Record<string, string> = {
  '1.2.840.113549.1.1.1': 'rsa',
  '1.2.840.10045.2.1': 'ec',
  '1.3.101.112': 'ed25519',
};
/** Others a PKCS#8 block may name, for the message. */
const OTHER_PKCS8_ALGORITHMS: Record<string, string> = {
  '1.2.840.113549.1.1.10': 'rsa-pss',
  '1.2.840.10040.4.1': 'dsa',
  '1.2.840.113549.1.3.1': 'dh',
  '1.2.840.10046.2.1': 'dhx',
  '1.3.101.110': 'x25519',
  '1.3.101.111': 'x448',
  '1.3.101.113': 'ed448',
};

/**
 * Refuses a PKCS#8 key of an algorithm Sigil does not use before OpenSSL loads it. Loading a DH
 * or DSA key computes its public key, a modular exponentiation of up to 10,000 bits: about half
 * a second of the event loop for one key of 3.5 KB, which anyone who may write a Secret Sigil
 * reads could store. An EC key must name its curve.
 */
function checkPkcs8Algorithm(der: Buffer, what: string): void {
  let oid: string;
  let namedCurve: boolean;
  try {
    const [, algorithm] = children(der, readElement(der, 0));
    const [id, params] = algorithm ? children(der, algorithm) : [];
    if (id?.tag !== 0x06) throw new Error('no algorithm identifier');
    oid = readOid(der, id);
    namedCurve = params?.tag === 0x06;
  } catch (err) {
    // Refused rather than left to OpenSSL, whose decoder also takes BER forms this reader does not.
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: the PRIVATE KEY block is not DER-encoded PKCS#8 (${(err as Error).message}); store the key as openssl pkey writes it`,
    );
  }
  const name = PKCS8_ALGORITHMS[oid];
  if (!name)
    throw new PkiError(
      PkiErrorCode.UnsupportedKey,
      `${what}: ${OTHER_PKCS8_ALGORITHMS[oid] ?? `algorithm ${oid}`} keys are not supported; use ECDSA, RSA or Ed25519`,
    );
  if (name === 'ec' && !namedCurve)
    throw new PkiError(
      PkiErrorCode.UnsupportedKey,
      `${what} is an EC key with explicit curve parameters; use a named curve (P-256 or P-384)`,
    );
}

/** Reads one private key from PEM (PKCS#8, PKCS#1 RSA or SEC1 EC). EC PARAMETERS blocks are skipped. */
export function parsePrivateKeyPem(pem: string | Buffer, what = 'private key'): ParsedPrivateKey {
  const blocks = decodePem(pem, what, MAX_KEY_PEM_BYTES).filter((b) => b.label !== 'EC PARAMETERS');
  const keyBlocks = blocks.filter((b) => b.label.endsWith('PRIVATE KEY'));
  if (keyBlocks.length === 0) {
    throw new PkiError(
      PkiErrorCode.NoPrivateKey,
      `${what} holds no private key (found ${blocks.map((b) => b.label).join(', ') || 'nothing'}); store the PEM private key`,
    );
  }
  if (keyBlocks.length > 1) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what} holds ${keyBlocks.length} private keys; store exactly one`,
    );
  }
  const block = keyBlocks[0]!;
  const type = KEY_LABELS[block.label];
  if (!type) {
    throw new PkiError(
      PkiErrorCode.UnsupportedKey,
      `${what} is a ${block.label}; encrypted or unknown key formats are not supported, store an unencrypted PKCS#8 or PKCS#1 key`,
    );
  }
  if (type === 'pkcs8') checkPkcs8Algorithm(block.der, what);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: block.der, format: 'der', type });
  } catch (err) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: the ${block.label} block does not decode (${(err as Error).message})`,
    );
  }
  return {
    keyObject,
    description: describeKeyObject(keyObject),
    encoding: type === 'pkcs8' ? KeyEncoding.PKCS8 : KeyEncoding.PKCS1,
  };
}

/** The DER SubjectPublicKeyInfo of a private key, to compare with a certificate's. */
export function publicKeySpki(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}
