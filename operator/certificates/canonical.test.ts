import { canonicalJson } from './controller.ts';

describe('canonicalJson', () => {
  it('is the same for objects built with keys in another order, at every level', () => {
    const fromServer = {
      conditions: [{ message: 'm', status: 'True', type: 'Ready' }],
      notAfter: 'b',
      notBefore: 'a',
    };
    const built = {
      notBefore: 'a',
      notAfter: 'b',
      conditions: [{ type: 'Ready', status: 'True', message: 'm' }],
    };
    expect(canonicalJson(built)).toBe(canonicalJson(fromServer));
    expect(JSON.stringify(built)).not.toBe(JSON.stringify(fromServer));
  });

  it('still tells different values and array orders apart', () => {
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
    expect(canonicalJson({ a: { b: 1 } })).not.toBe(canonicalJson({ a: { b: 2 } }));
  });
});
