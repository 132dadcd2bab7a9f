/** KeyUsage bits (RFC 5280 4.2.1.3): bit i of the BIT STRING is 1 << i here. */
export const KeyUsageFlag = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
} as const;

/** Key usages as the Certificate API spells them (the names cert-manager users know). */
export const KEY_USAGE_FLAGS: Record<string, number> = {
  'digital signature': KeyUsageFlag.digitalSignature,
  signing: KeyUsageFlag.digitalSignature,
  'content commitment': KeyUsageFlag.nonRepudiation,
  'key encipherment': KeyUsageFlag.keyEncipherment,
  'data encipherment': KeyUsageFlag.dataEncipherment,
  'key agreement': KeyUsageFlag.keyAgreement,
  'cert sign': KeyUsageFlag.keyCertSign,
  'crl sign': KeyUsageFlag.cRLSign,
};

export const EXTENDED_KEY_USAGE_OIDS: Record<string, string> = {
  'server auth': '1.3.6.1.5.5.7.3.1',
  'client auth': '1.3.6.1.5.5.7.3.2',
  'code signing': '1.3.6.1.5.5.7.3.3',
  'email protection': '1.3.6.1.5.5.7.3.4',
  timestamping: '1.3.6.1.5.5.7.3.8',
  'ocsp signing': '1.3.6.1.5.5.7.3.9',
};

export const ALL_USAGES = [...Object.keys(KEY_USAGE_FLAGS), ...Object.keys(EXTENDED_KEY_USAGE_OIDS)];

export const DEFAULT_USAGES = ['digital signature', 'key encipherment', 'server auth', 'client auth'];

export interface SplitUsages {
  keyUsageFlags: number;
  extendedKeyUsageOids: string[];
}

/** Splits API usage names into the key usage bit set and the sorted EKU OIDs. */
export function splitUsages(usages: readonly string[], isCA = false): SplitUsages {
  let keyUsageFlags = isCA ? KeyUsageFlag.keyCertSign : 0;
  const eku = new Set<string>();
  for (const usage of usages) {
    const flag = KEY_USAGE_FLAGS[usage];
    if (flag !== undefined) {
      keyUsageFlags |= flag;
      continue;
    }
    const oid = EXTENDED_KEY_USAGE_OIDS[usage];
    if (oid !== undefined) eku.add(oid);
  }
  return { keyUsageFlags, extendedKeyUsageOids: [...eku].sort() };
}

export function unknownUsages(usages: readonly string[]): string[] {
  return usages.filter((u) => !(u in KEY_USAGE_FLAGS) && !(u in EXTENDED_KEY_USAGE_OIDS));
}
