import { labelSelectorMatches } from './selector.ts';

describe('labelSelectorMatches', () => {
  const labels = { team: 'shop', tier: 'web', 'sigil.dev/trust': '' };

  it('should match everything with an empty selector, as Kubernetes does', () => {
    expect([labelSelectorMatches({}, labels), labelSelectorMatches({}, undefined)]).toEqual([true, true]);
  });

  it('should need every matchLabels pair', () => {
    expect(labelSelectorMatches({ matchLabels: { team: 'shop' } }, labels)).toBe(true);
    expect(labelSelectorMatches({ matchLabels: { team: 'shop', tier: 'db' } }, labels)).toBe(false);
    expect(labelSelectorMatches({ matchLabels: { team: 'shop' } }, undefined)).toBe(false);
  });

  it('should apply In, NotIn, Exists and DoesNotExist, a label with an empty value existing', () => {
    const m = (operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', key: string, values?: string[]) =>
      labelSelectorMatches({ matchExpressions: [{ key, operator, values }] }, labels);
    expect([
      m('In', 'tier', ['web', 'api']),
      m('In', 'tier', ['db']),
      m('In', 'absent', ['x']),
      m('NotIn', 'tier', ['db']),
      m('NotIn', 'tier', ['web']),
      m('NotIn', 'absent', ['x']),
      m('Exists', 'sigil.dev/trust'),
      m('Exists', 'absent'),
      m('DoesNotExist', 'absent'),
      m('DoesNotExist', 'team'),
    ]).toEqual([true, false, false, true, false, true, true, false, true, false]);
  });

  it('should match nothing for an operator it does not know', () => {
    expect(
      labelSelectorMatches(
        { matchExpressions: [{ key: 'team', operator: 'Gt' as 'In', values: ['1'] }] },
        labels,
      ),
    ).toBe(false);
  });
});
