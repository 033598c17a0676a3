// Access tokens: short-lived JWTs (RFC 9068 profile, HS256) issued by the client-credentials
// grant. Signing keys live in the database sealed by the secret box, so every api process
// sharing the database verifies every other's tokens, and `secrets rotate` re-seals them.
import { randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { desc } from 'drizzle-orm';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { aadFor, type SecretBox } from '../crypto/secret-box.ts';
import { AppError } from '../errors.ts';
import { newId } from '../ids.ts';
import type { Db } from '../store/db.ts';
import { signingKeys } from '../store/schema.ts';
import type { ApiClient } from './api-clients.ts';
import type { Scope } from './scopes.ts';

export const TOKEN_AUDIENCE = 'interchange-api';
const RELOAD_INTERVAL_MS = 5_000;
/**
 * Tokens verified lately, kept by their whole text (signature included) until they expire: a
 * client sends the same token with every request, and verifying it again (jose and WebCrypto's
 * HMAC, 40–70 µs with its hop to the thread pool) was a tenth of a simple API request's time.
 */
const VERIFIED_MAX = 10_000;

/** A token this service issued whose time is up (its signature held): the client should get a new one. */
export class TokenExpiredError extends AppError {
  constructor() {
    super('invalid_token', 'token has expired');
  }
}

export interface AccessTokenClaims {
  clientId: string;
  organizationId: string | null;
  scopes: Scope[];
}

export interface TokenServiceOptions {
  db: Db;
  box: SecretBox;
  issuer: string;
  ttlSeconds: number;
}

const aad = (id: string) => aadFor('signing_keys', 'secret', id);

/** Creates the first signing key if there is none. Call under the bootstrap lock. */
export async function ensureSigningKey(db: Db, box: SecretBox): Promise<void> {
  const [existing] = await db.select({ id: signingKeys.id }).from(signingKeys).limit(1);
  if (existing) return;
  const id = newId('signingKey');
  await db
    .insert(signingKeys)
    .values({ id, secret: box.encrypt(randomBytes(32).toString('base64url'), aad(id)) });
}

export function createTokenService({ db, box, issuer, ttlSeconds }: TokenServiceOptions) {
  // Imported once per key: handing jose raw bytes made it import a CryptoKey at every call.
  let keys = new Map<string, webcrypto.CryptoKey>();
  let newest: string | undefined;
  let loadedAt = 0;
  // Oldest first (a Map keeps insertion order): the first entry goes when the cache is full.
  const verified = new Map<string, { claims: AccessTokenClaims; expiresAt: number; kid: string }>();

  async function load(): Promise<void> {
    const rows = await db.select().from(signingKeys).orderBy(desc(signingKeys.createdAt));
    const imported = await Promise.all(
      rows.map(async (r): Promise<[string, webcrypto.CryptoKey]> => {
        const raw = Buffer.from(box.decrypt(r.secret, aad(r.id)), 'base64url');
        const key = await webcrypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, [
          'sign',
          'verify',
        ]);
        return [r.id, key];
      }),
    );
    keys = new Map(imported);
    newest = rows[0]?.id;
    loadedAt = Date.now();
  }

  async function keyFor(kid: string | undefined): Promise<webcrypto.CryptoKey> {
    if (kid && !keys.has(kid) && Date.now() - loadedAt > RELOAD_INTERVAL_MS) await load();
    const key = kid ? keys.get(kid) : undefined;
    if (!key) throw new AppError('invalid_token', 'token was not issued by this service');
    return key;
  }

  return {
    load,

    async issue(client: Pick<ApiClient, 'id' | 'organizationId'>, scopes: Scope[]) {
      if (!newest) await load();
      const kid = newest as string;
      const key = await keyFor(kid);
      const token = await new SignJWT({
        scope: scopes.join(' '),
        client_id: client.id,
        org: client.organizationId,
      })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid })
        .setIssuer(issuer)
        .setAudience(TOKEN_AUDIENCE)
        .setSubject(client.id)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime(`${ttlSeconds}s`)
        .sign(key);
      return {
        access_token: token,
        token_type: 'Bearer' as const,
        expires_in: ttlSeconds,
        scope: scopes.join(' '),
      };
    },

    async verify(token: string): Promise<AccessTokenClaims> {
      const known = verified.get(token);
      if (known) {
        // As jose decides: valid while now < exp (seconds), and only with a key still loaded.
        if (Date.now() < known.expiresAt && keys.has(known.kid))
          return { ...known.claims, scopes: [...known.claims.scopes] };
        verified.delete(token);
      }
      try {
        const { payload, protectedHeader } = await jwtVerify(token, (header) => keyFor(header.kid), {
          issuer,
          audience: TOKEN_AUDIENCE,
          algorithms: ['HS256'],
          typ: 'at+jwt',
          requiredClaims: ['sub', 'exp', 'iat'],
        });
        const org = payload.org;
        if (
          typeof payload.sub !== 'string' ||
          typeof payload.scope !== 'string' ||
          (org !== null && typeof org !== 'string')
        ) {
          throw new AppError('invalid_token', 'token claims are malformed');
        }
        const claims: AccessTokenClaims = {
          clientId: payload.sub,
          organizationId: org,
          scopes: payload.scope.split(' ').filter(Boolean) as Scope[],
        };
        if (typeof payload.exp === 'number' && protectedHeader.kid) {
          if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value as string);
          verified.set(token, {
            claims: { ...claims, scopes: [...claims.scopes] },
            expiresAt: payload.exp * 1000,
            kid: protectedHeader.kid,
          });
        }
        return claims;
      } catch (err) {
        if (err instanceof AppError) throw err;
        if (err instanceof joseErrors.JWTExpired) throw new TokenExpiredError();
        throw new AppError('invalid_token', 'token is invalid');
      }
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
