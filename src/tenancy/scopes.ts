// Scopes an API client may hold, and rate-limit tiers. `admin` manages organizations and is held
// only by admin clients (which belong to no organization); the rest act within one organization.
import { z } from 'zod';

export const ORGANIZATION_SCOPES = [
  'users:read',
  'users:write',
  'api_clients:read',
  'api_clients:write',
  'events:read',
  'events:write',
  'installations:read',
  'installations:write',
  'deliveries:read',
  'deliveries:write',
] as const;

export const ADMIN_SCOPE = 'admin';
export const ALL_SCOPES = [ADMIN_SCOPE, ...ORGANIZATION_SCOPES] as const;
export type Scope = (typeof ALL_SCOPES)[number];
export const scopeSchema = z.enum(ALL_SCOPES);

/** Whether `granted` satisfies `required`: `x:write` also grants `x:read`. */
export function hasScope(granted: readonly string[], required: Scope): boolean {
  if (granted.includes(required)) return true;
  return required.endsWith(':read') && granted.includes(required.replace(/:read$/, ':write'));
}

/** Requests per hour per API client. */
export const TIER_LIMITS = {
  free: 1_000,
  basic: 10_000,
  professional: 100_000,
  enterprise: 1_000_000,
} as const;

export type Tier = keyof typeof TIER_LIMITS;
export const TIERS = Object.keys(TIER_LIMITS) as Tier[];
export const tierSchema = z.enum(TIERS as [Tier, ...Tier[]]);

export function tierRank(tier: Tier): number {
  return TIERS.indexOf(tier);
}

/**
 * The scopes a token still carries given its client's scopes now: a scope the client lost is
 * dropped, and a `x:write` cut back to `x:read` keeps read access.
 */
export function effectiveScopes(tokenScopes: readonly Scope[], clientScopes: readonly Scope[]): Scope[] {
  const out = new Set<Scope>();
  for (const s of tokenScopes) {
    if (hasScope(clientScopes, s)) out.add(s);
    else if (s.endsWith(':write')) {
      const read = s.replace(/:write$/, ':read') as Scope;
      if (hasScope(clientScopes, read)) out.add(read);
    }
  }
  return [...out];
}
