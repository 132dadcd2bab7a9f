import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.ts';
import {
  DEFAULT_RSA_KEYGEN_CONCURRENCY,
  generatePrivateKey,
  parsePrivateKeyPem,
  rsaKeygenWaiting,
  Slots,
  setRsaKeygenConcurrency,
} from './keys.ts';

describe('RSA key generation bound', () => {
  afterEach(() => setRsaKeygenConcurrency(DEFAULT_RSA_KEYGEN_CONCURRENCY));

  it('should run at most the slot count of tasks at once, first come first served', async () => {
    const slots = new Slots(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        slots.run(async () => {
          running++;
          most = Math.max(most, running);
          order.push(i);
          await new Promise((r) => setTimeout(r, 10));
          running--;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it('should free the slot when a task fails', async () => {
    const slots = new Slots(1);
    await expect(slots.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(slots.run(async () => 'next')).resolves.toBe('next');
  });

  it('should queue RSA keys beyond the bound while ECDSA keys are generated at once', async () => {
    setRsaKeygenConcurrency(1);
    const rsa = [0, 1, 2].map(() => generatePrivateKey({ algorithm: 'RSA', size: 2048 }));
    expect(rsaKeygenWaiting()).toBe(2);
    const ec = await generatePrivateKey({ algorithm: 'ECDSA' });
    expect(ec.description).toEqual({ algorithm: 'ECDSA', size: 256 });
    expect(rsaKeygenWaiting()).toBeGreaterThan(0);
    const keys = await Promise.all(rsa);
    expect(keys.map((k) => k.description.size)).toEqual([2048, 2048, 2048]);
    expect(rsaKeygenWaiting()).toBe(0);
  }, 30_000);
});

describe('parsePrivateKeyPem', () => {
  const refusal = (pem: string) => {
    try {
      parsePrivateKeyPem(pem, 'Secret a/b tls.key');
    } catch (err) {
      if (err instanceof PkiError) return `${err.code}: ${err.message}`;
      throw err;
    }
    throw new Error('expected a refusal');
  };
  const pkcs8 = (der: Buffer) =>
    `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`;
  // A DH key of a standard group: loading one computes its public key (see checkPkcs8Algorithm).
  // (@types/node lists no 'dh' overload; Node generates one from a named group.)
  const generateDh = generateKeyPairSync as unknown as (
    type: 'dh',
    o: { group: string },
  ) => { privateKey: KeyObject };
  const dhDer = generateDh('dh', { group: 'modp14' }).privateKey.export({ type: 'pkcs8', format: 'der' });

  it('should refuse DH and X25519 keys by their algorithm, before OpenSSL loads them', () => {
    // Loaded first, the refusal came from the loaded key's type ("dh keys are not supported").
    expect(refusal(pkcs8(dhDer))).toBe(
      'UnsupportedKey: Secret a/b tls.key: dh keys are not supported; use ECDSA, RSA or Ed25519',
    );
    const x25519 = generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    expect(refusal(x25519.toString())).toContain('x25519 keys are not supported');
  });

  it('should refuse a PKCS#8 block in a BER form OpenSSL would still load', () => {
    // The same DH key with its outer SEQUENCE in indefinite length, ended by two zero bytes.
    const top = dhDer[1]! & 0x80 ? 2 + (dhDer[1]! & 0x7f) : 2;
    const ber = Buffer.concat([Buffer.from([0x30, 0x80]), dhDer.subarray(top), Buffer.from([0, 0])]);
    expect(refusal(pkcs8(ber))).toMatch(
      /^MalformedPem: Secret a\/b tls.key: the PRIVATE KEY block is not DER-encoded PKCS#8/,
    );
  });

  it('should refuse an EC key with explicit curve parameters, and load one that names its curve', () => {
    const explicit = execFileSync('sh', [
      '-c',
      'openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout | openssl pkcs8 -topk8 -nocrypt',
    ]).toString();
    expect(refusal(explicit)).toContain('EC key with explicit curve parameters; use a named curve');
    const named = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    expect(parsePrivateKeyPem(named.toString()).description).toEqual({ algorithm: 'ECDSA', size: 256 });
  });
});
