// Bearer authentication for /v1: resolves the principal once from the token (the client as it is
// now: a deleted client's tokens stop working, reduced scopes apply at once), then checks the
// route's scope. Routes declare what they need in `config.scope`. Failed attempts are throttled
// per address (auth-throttle.ts).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { isAdmin, type Principal } from '../tenancy/api-clients.ts';
import { ADMIN_SCOPE, effectiveScopes, hasScope, type Scope } from '../tenancy/scopes.ts';
import { TokenExpiredError } from '../tenancy/tokens.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a route requires. */
    scope?: Scope;
    /** Admin clients may call this route too (they act across organizations). */
    allowAdmin?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * Failures that count against the address's budget (see auth-throttle.ts): no token, or one this
 * hub never issued. An expired token, or one whose client was deleted, was genuine: not counted.
 */
function isGuess(err: unknown): boolean {
  if (!(err instanceof AppError) || err instanceof TokenExpiredError) return false;
  return err.code === 'unauthorized' || (err.code === 'invalid_token' && !(err instanceof ClientGoneError));
}

class ClientGoneError extends AppError {
  constructor() {
    super('invalid_token', 'the client of this token no longer exists');
  }
}

async function principalOfToken(app: FastifyInstance, req: FastifyRequest): Promise<Principal> {
  const header = req.headers.authorization;
  const match = header?.match(/^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i);
  if (!match?.[1])
    throw new AppError('unauthorized', 'an access token is required: Authorization: Bearer <token>');
  const claims = await app.services.tokens.verify(match[1]);
  const client = await app.services.apiClients.current(claims.clientId);
  if (!client || client.organizationId !== claims.organizationId) throw new ClientGoneError();
  return {
    clientId: client.id,
    organizationId: client.organizationId,
    scopes: effectiveScopes(claims.scopes, client.scopes),
    tier: client.tier,
  };
}

export function installAuth(app: FastifyInstance): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    try {
      req.principal = await principalOfToken(app, req);
    } catch (err) {
      // A valid token is never refused for its address's failures: only failures are throttled.
      const wait = isGuess(err) ? await app.authThrottle.recordFailure(req) : 0;
      if (wait > 0) {
        throw new AppError(
          'rate_limited',
          `too many requests without a valid access token from this address; retry in ${wait} s`,
          { headers: { 'retry-after': String(wait) } },
        );
      }
      throw err;
    }
    const { scope, allowAdmin } = req.routeOptions.config;
    if (!scope) return;
    if (isAdmin(req.principal)) {
      if (scope === ADMIN_SCOPE || allowAdmin) return;
      throw new AppError(
        'organization_required',
        "this route acts within one organization: use a token of one of the organization's API clients",
      );
    }
    if (!hasScope(req.principal.scopes, scope)) {
      throw new AppError('insufficient_scope', `this route requires the ${scope} scope`, {
        headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}"` },
      });
    }
  });
}

/** The principal of an authenticated route (set by the onRequest hook above). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AppError('unauthorized', 'an access token is required');
  return req.principal;
}

/** The organization an organization-scoped route acts in. */
export function organizationOf(req: FastifyRequest): string {
  const p = principalOf(req);
  if (p.organizationId === null)
    throw new AppError('organization_required', 'this route acts within one organization');
  return p.organizationId;
}
