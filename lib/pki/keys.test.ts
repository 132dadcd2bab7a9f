import {
  DEFAULT_RSA_KEYGEN_CONCURRENCY,
  generatePrivateKey,
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
