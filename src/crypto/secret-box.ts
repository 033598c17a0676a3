// Secret box: AES-256-GCM with the key id stored beside each ciphertext, so several keys can be
// live at once and rotation is a re-encryption, not a flag day. The AAD binds a ciphertext to the
// row and column it belongs to, so a value copied into another row does not decrypt.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { AppError } from '../errors.ts';

const VERSION = 'v1';
const IV_BYTES = 12;
const KEY_BYTES = 32;
/** GCM's full tag. A shorter one is easier to forge, yet Node accepts it unless told the length. */
const TAG_BYTES = 16;

export class SecretKeyError extends Error {
  override name = 'SecretKeyError';
}

/**
 * A value is sealed with a key this process does not have (or the key every process seals with
 * now is one it does not have): a 503 for the caller, to retry on a process that has it, and an
 * operator's configuration to fix. Names the key by its id, never the key.
 */
export class KeyUnavailableError extends AppError {
  readonly keyId: string;

  constructor(keyId: string) {
    super('secret_key_unavailable', `no key with id ${keyId} is configured`);
    this.name = 'KeyUnavailableError';
    this.keyId = keyId;
  }
}

export interface SecretBoxOptions {
  /** Called each time a key the box lacks is needed (to log it; the caller gets KeyUnavailableError). */
  onKeyUnavailable?: (keyId: string) => void;
}

/** Parses one master key: 32 bytes as base64, base64url or hex. */
export function parseKey(text: string): Buffer {
  const trimmed = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)
      ? Buffer.from(trimmed.replaceAll('-', '+').replaceAll('_', '/'), 'base64')
      : undefined;
  if (bytes?.length !== KEY_BYTES) {
    throw new SecretKeyError(
      'a secret key must be 32 bytes written as base64 (44 characters) or hex (64 characters)',
    );
  }
  return bytes;
}

export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/** A stable, non-secret name for a key: derived from it, so it never has to be stored with it. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('interchange-secret-key-id\0').update(key).digest('hex').slice(0, 16);
}

/** The AAD of a sealed column value: binds it to its table, column and row. */
export function aadFor(table: string, column: string, rowId: string): string {
  return `${table}.${column}:${rowId}`;
}

export class SecretBox {
  private active: string;
  /** Set when the key to seal with is one this box lacks: sealing then fails. */
  private sealingKeyMissing: string | undefined;
  private readonly keys: Map<string, Buffer>;
  private readonly onKeyUnavailable: ((keyId: string) => void) | undefined;

  /** `keys[0]` encrypts until `sealWith` names another; all of them decrypt. */
  constructor(keys: readonly Buffer[], options: SecretBoxOptions = {}) {
    const [first] = keys;
    if (!first) throw new SecretKeyError('the secret box needs at least one key');
    this.keys = new Map(keys.map((k) => [keyId(k), k]));
    this.active = keyId(first);
    this.onKeyUnavailable = options.onKeyUnavailable;
  }

  /** The id of the key `encrypt` seals with. */
  get activeKeyId(): string {
    return this.active;
  }

  /** The ids of the keys, in the order given (the first is the configured one to move to). */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  has(id: string): boolean {
    return this.keys.has(id);
  }

  /**
   * Seals from now on with the key `id` (the one the database says every process seals with).
   * When the box lacks it, sealing fails with KeyUnavailableError until a key it has is named.
   */
  sealWith(id: string): void {
    if (this.keys.has(id)) {
      this.active = id;
      this.sealingKeyMissing = undefined;
    } else {
      this.sealingKeyMissing = id;
    }
  }

  /** The key this box seals with, or undefined while it lacks the one it was told to use. */
  get sealingKeyId(): string | undefined {
    return this.sealingKeyMissing === undefined ? this.active : undefined;
  }

  private unavailable(id: string): KeyUnavailableError {
    this.onKeyUnavailable?.(id);
    return new KeyUnavailableError(id);
  }

  encrypt(plaintext: string, aad: string): string {
    if (this.sealingKeyMissing !== undefined) throw this.unavailable(this.sealingKeyMissing);
    const key = this.keys.get(this.active) as Buffer;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [
      VERSION,
      this.active,
      iv.toString('base64url'),
      body.toString('base64url'),
      tag.toString('base64url'),
    ].join('.');
  }

  decrypt(sealed: string, aad: string): string {
    const [version, kid, iv, body, tag] = sealed.split('.');
    if (version !== VERSION || !kid || iv === undefined || body === undefined || tag === undefined) {
      throw new SecretKeyError('not a sealed secret');
    }
    const key = this.keys.get(kid);
    if (!key) throw this.unavailable(kid);
    const authTag = Buffer.from(tag, 'base64url');
    if (authTag.length !== TAG_BYTES)
      throw new SecretKeyError(`not a sealed secret: its tag is not ${TAG_BYTES} bytes`);
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(authTag);
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  }

  static keyIdOf(sealed: string): string | undefined {
    return sealed.split('.')[1];
  }
}
