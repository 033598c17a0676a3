// The secret box: AES-256-GCM sealing bound to a row by AAD, several live keys, and key parsing.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  generateKey,
  KeyUnavailableError,
  keyId,
  parseKey,
  SecretBox,
  SecretKeyError,
} from './secret-box.ts';

const AAD = 'signing_keys.secret:sk_1';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Replaces the character at `index` of one dot-separated part by another of the base64url alphabet. */
function changePart(sealed: string, part: number, index = 0): string {
  const parts = sealed.split('.');
  const value = parts[part] as string;
  const c = value[index] as string;
  const replacement = B64URL[(B64URL.indexOf(c) + 1) % B64URL.length] as string;
  parts[part] = value.slice(0, index) + replacement + value.slice(index + 1);
  return parts.join('.');
}

describe('SecretBox', () => {
  it('decrypts what it encrypted', () => {
    const box = new SecretBox([randomBytes(32)]);
    for (const value of ['hunter2', '', 'ключ 🔑 with unicode', 'x'.repeat(10_000)]) {
      const sealed = box.encrypt(value, AAD);
      if (value) expect(sealed).not.toContain(value);
      expect(box.decrypt(sealed, AAD)).toBe(value);
    }
  });

  it('stores the key id beside the ciphertext', () => {
    const key = randomBytes(32);
    const box = new SecretBox([key]);
    const sealed = box.encrypt('value', AAD);
    expect(box.activeKeyId).toBe(keyId(key));
    expect(box.activeKeyId).toMatch(/^[0-9a-f]{16}$/);
    expect(sealed.split('.')).toHaveLength(5);
    expect(sealed.split('.')[1]).toBe(keyId(key));
    expect(SecretBox.keyIdOf(sealed)).toBe(keyId(key));
    // The id names the key without revealing it.
    expect(sealed).not.toContain(key.toString('hex').slice(0, 16));
  });

  it('gives a different ciphertext each time for the same value', () => {
    const box = new SecretBox([randomBytes(32)]);
    const a = box.encrypt('same value', AAD);
    const b = box.encrypt('same value', AAD);
    expect(a).not.toBe(b);
    expect(a.split('.')[2]).not.toBe(b.split('.')[2]);
    expect(box.decrypt(a, AAD)).toBe('same value');
    expect(box.decrypt(b, AAD)).toBe('same value');
  });

  it('refuses a value under another AAD (copied to another row or column)', () => {
    const box = new SecretBox([randomBytes(32)]);
    const sealed = box.encrypt('secret', 'signing_keys.secret:sk_1');
    expect(() => box.decrypt(sealed, 'signing_keys.secret:sk_2')).toThrow();
    expect(() => box.decrypt(sealed, 'other_table.secret:sk_1')).toThrow();
    expect(() => box.decrypt(sealed, '')).toThrow();
    expect(box.decrypt(sealed, 'signing_keys.secret:sk_1')).toBe('secret');
  });

  it('refuses a tampered ciphertext, IV or tag', () => {
    const box = new SecretBox([randomBytes(32)]);
    const sealed = box.encrypt('a secret worth tampering with', AAD);
    expect(box.decrypt(sealed, AAD)).toBe('a secret worth tampering with');
    for (const part of [2, 3, 4]) {
      expect(() => box.decrypt(changePart(sealed, part), AAD), `part ${part}`).toThrow();
    }
    const parts = sealed.split('.');
    // A truncated body or a swapped-in body of another value fails too.
    expect(() => box.decrypt([...parts.slice(0, 3), parts[3]?.slice(4), parts[4]].join('.'), AAD)).toThrow();
    const other = box.encrypt('a different secret of the same length!', AAD).split('.');
    expect(() => box.decrypt([...parts.slice(0, 3), other[3], parts[4]].join('.'), AAD)).toThrow();
    // Not a sealed value at all.
    for (const garbage of ['', 'plaintext', 'v1.abc', 'v2.a.b.c.d']) {
      expect(() => box.decrypt(garbage, AAD)).toThrow(SecretKeyError);
    }
  });

  it('refuses a tag cut short (GCM would otherwise accept a 4-byte tag) or made longer', () => {
    const box = new SecretBox([randomBytes(32)]);
    const sealed = box.encrypt('a secret behind a full tag', AAD);
    const parts = sealed.split('.');
    const tag = Buffer.from(parts[4] as string, 'base64url');
    expect(tag).toHaveLength(16);
    for (const length of [4, 8, 12, 15]) {
      const cut = [...parts.slice(0, 4), tag.subarray(0, length).toString('base64url')].join('.');
      expect(() => box.decrypt(cut, AAD), `${length}-byte tag`).toThrow(SecretKeyError);
    }
    const longer = [...parts.slice(0, 4), Buffer.concat([tag, Buffer.alloc(1)]).toString('base64url')].join(
      '.',
    );
    expect(() => box.decrypt(longer, AAD)).toThrow(SecretKeyError);
    expect(() => box.decrypt([...parts.slice(0, 4), ''].join('.'), AAD)).toThrow(SecretKeyError);
    expect(box.decrypt(sealed, AAD)).toBe('a secret behind a full tag');
  });

  it('decrypts old values and encrypts with the new key after rotation ([new, old])', () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const before = new SecretBox([oldKey]);
    const sealedOld = before.encrypt('kept across rotation', AAD);

    const rotated = new SecretBox([newKey, oldKey]);
    expect(rotated.activeKeyId).toBe(keyId(newKey));
    expect(rotated.keyIds).toEqual([keyId(newKey), keyId(oldKey)]);
    expect(rotated.decrypt(sealedOld, AAD)).toBe('kept across rotation');

    const sealedNew = rotated.encrypt('kept across rotation', AAD);
    expect(SecretBox.keyIdOf(sealedNew)).toBe(keyId(newKey));
    expect(rotated.decrypt(sealedNew, AAD)).toBe('kept across rotation');
    // Only the new key can open it: a box with the old key alone cannot.
    expect(() => before.decrypt(sealedNew, AAD)).toThrow(KeyUnavailableError);
    expect(new SecretBox([newKey]).decrypt(sealedNew, AAD)).toBe('kept across rotation');
  });

  it('fails with a clear error for a value sealed under a key it does not have', () => {
    const sealed = new SecretBox([randomBytes(32)]).encrypt('value', AAD);
    const other = new SecretBox([randomBytes(32)]);
    const kid = SecretBox.keyIdOf(sealed) as string;
    expect(() => other.decrypt(sealed, AAD)).toThrow(KeyUnavailableError);
    expect(() => other.decrypt(sealed, AAD)).toThrow(`no key with id ${kid} is configured`);
    // The key id part changed to an id no key has.
    expect(() => other.decrypt(changePart(sealed, 1), AAD)).toThrow(/no key with id/);
  });

  it('answers 503 secret_key_unavailable naming the missing key by id, and reports it', () => {
    const key = randomBytes(32);
    const sealed = new SecretBox([randomBytes(32)]).encrypt('value', AAD);
    const reported: string[] = [];
    const box = new SecretBox([key], { onKeyUnavailable: (id) => reported.push(id) });
    let error: unknown;
    try {
      box.decrypt(sealed, AAD);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(KeyUnavailableError);
    expect(error).toMatchObject({ code: 'secret_key_unavailable', status: 503 });
    expect(reported).toEqual([SecretBox.keyIdOf(sealed)]);
    expect((error as Error).message).not.toContain(key.toString('base64'));
  });

  it('seals with the key it is told to (sealWith), and refuses to seal when it lacks that key', () => {
    const [first, second] = [randomBytes(32), randomBytes(32)];
    const reported: string[] = [];
    const box = new SecretBox([first, second], { onKeyUnavailable: (id) => reported.push(id) });
    expect(box.activeKeyId).toBe(keyId(first));
    box.sealWith(keyId(second));
    expect(box.activeKeyId).toBe(keyId(second));
    expect(box.sealingKeyId).toBe(keyId(second));
    expect(SecretBox.keyIdOf(box.encrypt('v', AAD))).toBe(keyId(second));

    const elsewhere = keyId(randomBytes(32));
    box.sealWith(elsewhere);
    expect(box.sealingKeyId).toBeUndefined();
    expect(() => box.encrypt('v', AAD)).toThrow(KeyUnavailableError);
    expect(reported).toEqual([elsewhere]);
    // Reading goes on with the keys it has.
    const sealed = new SecretBox([first]).encrypt('still readable', AAD);
    expect(box.decrypt(sealed, AAD)).toBe('still readable');
    box.sealWith(keyId(first));
    expect(SecretBox.keyIdOf(box.encrypt('v', AAD))).toBe(keyId(first));
  });

  it('needs at least one key', () => {
    expect(() => new SecretBox([])).toThrow(SecretKeyError);
  });
});

describe('parseKey', () => {
  const bytes = randomBytes(32);

  it('accepts 32 bytes as base64, base64url or hex', () => {
    const base64 = bytes.toString('base64');
    expect(base64).toHaveLength(44);
    expect(parseKey(base64).equals(bytes)).toBe(true);
    expect(parseKey(base64.replace(/=$/, '')).equals(bytes)).toBe(true);
    expect(parseKey(bytes.toString('base64url')).equals(bytes)).toBe(true);
    expect(parseKey(bytes.toString('hex')).equals(bytes)).toBe(true);
    expect(parseKey(bytes.toString('hex').toUpperCase()).equals(bytes)).toBe(true);
    expect(parseKey(`  ${base64}\n`).equals(bytes)).toBe(true);
    // Base64 and base64url differ exactly where the alphabet does.
    const tricky = Buffer.alloc(32, 0xfb);
    expect(tricky.toString('base64')).toMatch(/[+/]/);
    expect(tricky.toString('base64url')).toMatch(/[-_]/);
    expect(parseKey(tricky.toString('base64')).equals(tricky)).toBe(true);
    expect(parseKey(tricky.toString('base64url')).equals(tricky)).toBe(true);
  });

  it('accepts what generateKey makes, and keys that differ give different ids', () => {
    const a = parseKey(generateKey());
    const b = parseKey(generateKey());
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(false);
    expect(keyId(a)).not.toBe(keyId(b));
    expect(keyId(a)).toBe(keyId(Buffer.from(a)));
  });

  it('rejects anything that is not 32 bytes in one of those encodings', () => {
    const rejected = [
      '',
      'secret',
      'correct horse battery staple correct horse!!',
      randomBytes(16).toString('base64'),
      randomBytes(31).toString('hex'),
      randomBytes(33).toString('hex'),
      randomBytes(48).toString('base64'),
      bytes.toString('hex').slice(0, 63),
      `${bytes.toString('hex').slice(0, 63)}g`,
      `${bytes.toString('base64').slice(0, 42)}!=`,
      `${bytes.toString('base64')}==`,
    ];
    for (const text of rejected) {
      expect(() => parseKey(text), JSON.stringify(text)).toThrow(SecretKeyError);
    }
    // The error explains the format and never echoes the value.
    const value = randomBytes(16).toString('hex');
    let message = '';
    try {
      parseKey(value);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/32 bytes/);
    expect(message).not.toContain(value);
  });
});
