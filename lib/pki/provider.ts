// @peculiar/x509 needs reflect-metadata loaded before it and a WebCrypto
// provider. Every PKI module imports x509 from here so the order is fixed.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle as unknown as SubtleCrypto;
