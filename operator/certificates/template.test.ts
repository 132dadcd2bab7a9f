import type { Certificate } from '../../lib/api/types.ts';
import { managedMetadata, SecretTemplateRefused, secretTemplateProblems } from './secret.ts';

type Template = Certificate['spec']['secretTemplate'];

function certificate(template: Template): Certificate {
  return {
    apiVersion: 'sigil.dev/v1alpha1',
    kind: 'Certificate',
    metadata: { name: 'web', namespace: 'shop', uid: 'u1' },
    spec: { secretName: 'web-tls', secretTemplate: template },
  } as Certificate;
}

const many = (n: number, value = 'v') =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, value]));

describe('secretTemplateProblems', () => {
  it.each<[string, Template]>([
    ['no template', undefined],
    [
      'Kubernetes-shaped labels and annotations',
      { labels: { app: 'web', 'example.com/tier': 'front' }, annotations: { 'example.com/owner': 'team a' } },
    ],
    ['64 labels and an empty label value', { labels: { ...many(63), empty: '' } }],
    ['annotations of exactly 64 KiB in all', { annotations: { a: 'x'.repeat(64 * 1024 - 1) } }],
    ["Sigil's own keys, which Sigil overwrites", { labels: { 'sigil.dev/managed': 'false' } }],
  ])('should accept %s', (_name, template) => {
    expect(secretTemplateProblems(template)).toEqual([]);
  });

  it.each<[string, Template, string]>([
    ['65 labels', { labels: many(65) }, 'secretTemplate.labels has 65 entries'],
    ['65 annotations', { annotations: many(65) }, 'secretTemplate.annotations has 65 entries'],
    [
      'a label value of 64 characters',
      { labels: { a: 'x'.repeat(64) } },
      'value of "a" is not a label value',
    ],
    ['a label value with a space', { labels: { a: 'x y' } }, 'value of "a" is not a label value'],
    [
      'a key with an upper-case prefix',
      { labels: { 'Example.com/a': 'b' } },
      'key "Example.com/a" is not a qualified name',
    ],
    [
      'a key whose name is 64 characters',
      { annotations: { [`a/${'n'.repeat(64)}`]: 'b' } },
      'is not a qualified name',
    ],
    [
      'a key whose prefix is 254 characters',
      { labels: { [`${'p'.repeat(254)}/n`]: 'b' } },
      'is not a qualified name',
    ],
    ['annotations of 1.4 MiB', { annotations: many(20, 'x'.repeat(70_000)) }, 'add up to 1400'],
  ])('should refuse %s', (_name, template, problem) => {
    expect(secretTemplateProblems(template).join('; ')).toContain(problem);
  });
});

describe('managedMetadata', () => {
  it("should lay Sigil's labels and annotations over the template's", () => {
    const meta = managedMetadata(
      certificate({ labels: { 'sigil.dev/managed': 'false', app: 'web' } }),
      'Issuer',
      'ca',
    );
    expect(meta.labels).toEqual({ app: 'web', 'sigil.dev/managed': 'true' });
    expect(meta.annotations['sigil.dev/certificate-name']).toBe('web');
  });

  it('should refuse to build the Secret of a template beyond the bounds, saying what to fix', () => {
    const build = () =>
      managedMetadata(certificate({ annotations: many(20, 'x'.repeat(70_000)) }), 'Issuer', 'ca');
    expect(build).toThrow(SecretTemplateRefused);
    expect(build).toThrow(/Fix spec.secretTemplate/);
  });
});
