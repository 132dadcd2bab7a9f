// @peculiar/x509, for tests: an independent reader of what lib/pki writes by
// hand (see lib/pki/der.ts). It needs reflect-metadata loaded before it and a
// WebCrypto provider; importing it from here fixes that order. The operator
// and the webhook do not load it (7.6 MiB resident, measured under Node 24).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle as unknown as SubtleCrypto;
