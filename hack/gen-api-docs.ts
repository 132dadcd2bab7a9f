// Writes docs/api.md from the CRD schemas, so the reference never drifts from
// what the API server validates. `make docs` runs it; a test checks it is current.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadCrds } from '../lib/kube/crds.ts';

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
  maxLength?: number;
  additionalProperties?: Schema | boolean;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
}

function typeOf(s: Schema): string {
  if (s.type === 'array') return `[]${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object')
    return `map[string]${typeOf(s.additionalProperties)}`;
  return s.type ?? 'any';
}

function constraints(s: Schema): string {
  const out: string[] = [];
  if (s.enum) out.push(`one of ${s.enum.map((e) => `\`${e}\``).join(', ')}`);
  const itemEnum = s.items?.enum;
  if (itemEnum) out.push(`items: ${itemEnum.map((e) => `\`${e}\``).join(', ')}`);
  if (s.default !== undefined) out.push(`default \`${JSON.stringify(s.default)}\``);
  if (s.minimum !== undefined || s.maximum !== undefined) out.push(`${s.minimum ?? ''}–${s.maximum ?? ''}`);
  if (s.maxItems !== undefined) out.push(`at most ${s.maxItems} items`);
  for (const v of [
    ...(s['x-kubernetes-validations'] ?? []),
    ...(s.items?.['x-kubernetes-validations'] ?? []),
  ])
    out.push(`rule: ${v.message}`);
  return out.join('; ');
}

function rows(schema: Schema, prefix: string, out: string[]) {
  for (const [name, s] of Object.entries(schema.properties ?? {})) {
    const path = `${prefix}${name}`;
    const required = schema.required?.includes(name) ? ' (required)' : '';
    const text = (s.description ?? '').replace(/\s+/g, ' ').replaceAll('|', '\\|');
    out.push(
      `| \`${path}\`${required} | ${typeOf(s)} | ${text} | ${constraints(s).replaceAll('|', '\\|')} |`,
    );
    const inner = s.type === 'array' ? s.items : s;
    if (inner?.properties) rows(inner, `${path}${s.type === 'array' ? '[]' : ''}.`, out);
  }
}

export function renderApiDocs(): string {
  const out = [
    '# API reference: sigil.dev/v1alpha1',
    '',
    'Generated from `crds/` by `make docs`; do not edit by hand.',
    '',
  ];
  for (const crd of loadCrds()) {
    const version = crd.spec.versions[0]!;
    const schema = version.schema!.openAPIV3Schema as Schema;
    out.push(`## ${crd.spec.names.kind}`, '');
    out.push(`${(schema.description ?? '').replace(/\s+/g, ' ')}`, '');
    out.push(
      `Scope: ${crd.spec.scope}. Short names: ${(crd.spec.names.shortNames ?? []).join(', ')}. Category: ${(crd.spec.names.categories ?? []).join(', ')}.`,
      '',
    );
    const rules = (schema.properties?.spec?.['x-kubernetes-validations'] ?? []).map((v) => `- ${v.message}`);
    if (rules.length > 0) out.push('Rules the API server enforces on the spec:', '', ...rules, '');
    out.push('| field | type | description | constraints |', '|---|---|---|---|');
    rows(
      {
        properties: { spec: schema.properties!.spec!, status: schema.properties!.status! },
        required: ['spec'],
      },
      '',
      out,
    );
    out.push('');
  }
  return `${out.join('\n')}`;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const target = join(import.meta.dirname, '..', 'docs', 'api.md');
  writeFileSync(target, renderApiDocs());
  console.log(`wrote ${target}`);
}
