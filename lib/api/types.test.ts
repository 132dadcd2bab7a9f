import { byCodeUnit, setCondition } from './types.ts';

describe('byCodeUnit', () => {
  it('should order by code unit, not as a locale would', () => {
    // localeCompare puts a before B and ignores the dash at first; a canonical form must not move with the locale.
    expect(['b', 'a-c', 'B', 'ab', 'a'].sort(byCodeUnit)).toEqual(['B', 'a', 'a-c', 'ab', 'b']);
  });

  it('should keep conditions in the order statuses already hold them', () => {
    const at = '2026-01-01T00:00:00Z';
    const conditions = setCondition(
      [{ type: 'Ready', status: 'True', reason: 'Ready', message: '', lastTransitionTime: at }],
      { type: 'Issuing', status: 'False', reason: 'Done', message: '', lastTransitionTime: at },
    );
    expect(conditions.map((c) => c.type)).toEqual(['Issuing', 'Ready']);
  });
});
