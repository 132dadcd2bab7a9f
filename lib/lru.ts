/**
 * A map that holds at most `max` entries, least recently used first out: a read moves an entry to
 * the back. A Map keeps insertion order, so the first key is always the one to drop.
 */
export class BoundedCache<K, V> {
  private readonly entries = new Map<K, V>();
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** The value without marking it used. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }
}

/**
 * One copy of each value: the same text parsed from many objects (an apiVersion, a condition's
 * message, an issuer's name) is otherwise held once per object. Bounded like BoundedCache:
 * values no longer seen fall out, and whoever makes many distinct values pins at most `max`
 * of them here, each at most `maxChars` long.
 */
export class Interner {
  private readonly seen: BoundedCache<string, string>;
  private readonly maxChars: number;

  constructor(max: number, maxChars: number) {
    this.seen = new BoundedCache(max);
    this.maxChars = maxChars;
  }

  /** Whether the value is held here (for tests: what must never be held is not). */
  has(value: string): boolean {
    return this.seen.peek(value) !== undefined;
  }

  intern(value: string): string {
    if (value.length > this.maxChars) return value;
    const known = this.seen.get(value);
    if (known !== undefined) return known;
    this.seen.set(value, value);
    return value;
  }
}
