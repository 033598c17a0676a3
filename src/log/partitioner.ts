// Partition of a key: Kafka's default partitioner (murmur2 of the UTF-8 key, made positive,
// modulo the partition count), so the Postgres log and Kafka put a key in the same partition.

export const DEFAULT_PARTITIONS = 16;

/** Kafka's murmur2 (the Java client's variant, seed 0x9747b28c). */
export function murmur2(data: Buffer): number {
  const m = 0x5bd1e995;
  const r = 24;
  const length = data.length;
  let h = (0x9747b28c ^ length) | 0;
  const fours = length & ~3;
  for (let i = 0; i < fours; i += 4) {
    let k =
      (data[i] as number) |
      ((data[i + 1] as number) << 8) |
      ((data[i + 2] as number) << 16) |
      ((data[i + 3] as number) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = length & 3;
  if (rest === 3) h ^= (data[fours + 2] as number) << 16;
  if (rest >= 2) h ^= (data[fours + 1] as number) << 8;
  if (rest >= 1) {
    h ^= data[fours] as number;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

export function partitionOf(key: string, partitions = DEFAULT_PARTITIONS): number {
  return (murmur2(Buffer.from(key, 'utf8')) & 0x7fffffff) % partitions;
}
