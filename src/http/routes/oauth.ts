// POST /oauth/token: the OAuth2 client-credentials grant (RFC 6749 §4.4). Credentials come by
// HTTP Basic (§2.3.1) or in the body, form-encoded or JSON; errors keep §5.2's shape. Failed
// attempts are throttled per address and per client id (auth-throttle.ts).
import formbody from '@fastify/formbody';
import type { FastifyError } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { OAuthError } from '../../errors.ts';
import { ALL_SCOPES, hasScope, type Scope } from '../../tenancy/scopes.ts';
import { errors } from '../error-responses.ts';
import { withExamples } from '../schemas.ts';

const tokenRequest = withExamples(
  z.object({
    grant_type: z.string().describe('must be client_credentials'),
    client_id: z.string().optional(),
    client_secret: z.string().optional(),
    scope: z
      .string()
      .optional()
      .describe("space-separated subset of the client's scopes; default: all of them"),
  }),
  {
    credentialsInBody: {
      summary: 'Client credentials in the body, asking for two of the scopes',
      value: {
        grant_type: 'client_credentials',
        client_id: 'cli_0192f3a4b5c67d8e9f0a1b2c3d4e5f60',
        client_secret: 'ics_example-secret-shown-once-when-created',
        scope: 'events:read events:write',
      },
    },
    basicAuth: {
      summary:
        'Credentials by HTTP Basic (Authorization: Basic base64(client_id:client_secret)): the grant type only',
      value: { grant_type: 'client_credentials' },
    },
  },
);

const tokenResponse = z
  .object({
    access_token: z.string(),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int(),
    scope: z.string(),
  })
  .meta({ id: 'TokenResponse' });

const oauthError = z.object({ error: z.string(), error_description: z.string() }).meta({ id: 'OAuthError' });

/** An RFC 6749 §5.2 error response, with the `error` values it may carry. */
const oauthErrorResponse = (title: string, codes: string[]) => ({
  description: `${title}: ${codes.map((c) => `\`${c}\``).join(', ')}`,
  content: { 'application/json': { schema: oauthError } },
});

function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  const match = header?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new OAuthError('invalid_client', 'malformed HTTP Basic credentials');
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    const decode = (s: string) => decodeURIComponent(s.replaceAll('+', ' '));
    return { id: decode(decoded.slice(0, colon)), secret: decode(decoded.slice(colon + 1)) };
  } catch {
    throw new OAuthError('invalid_client', 'malformed HTTP Basic credentials');
  }
}

export const oauthRoutes: FastifyPluginAsyncZod = async (app) => {
  await app.register(formbody, { bodyLimit: 16 * 1024 });
  // A body that cannot be read (empty, not JSON, too large, of another type) is still an OAuth
  // error: §5.2's shape, which the route's response schema expects; anything else goes up as is.
  app.setErrorHandler((err: FastifyError) => {
    if (
      !(err instanceof OAuthError) &&
      typeof err.statusCode === 'number' &&
      err.statusCode >= 400 &&
      err.statusCode < 500
    )
      throw new OAuthError('invalid_request', `the request body cannot be read: ${err.message}`);
    throw err;
  });

  app.post(
    '/oauth/token',
    {
      attachValidation: true,
      bodyLimit: 16 * 1024,
      schema: {
        tags: ['OAuth'],
        operationId: 'issueToken',
        summary: 'Exchange client credentials for an access token',
        description:
          'OAuth2 client-credentials grant. Send `client_id` and `client_secret` by HTTP Basic or in the body ' +
          '(`application/x-www-form-urlencoded` or JSON). Errors follow RFC 6749 §5.2. After too many failed ' +
          'attempts from one address or for one client id, `429 temporarily_unavailable` with `Retry-After`.',
        body: tokenRequest,
        response: {
          200: tokenResponse,
          400: oauthErrorResponse('Bad request', [
            'invalid_request',
            'unsupported_grant_type',
            'invalid_scope',
          ]),
          401: oauthErrorResponse('Client authentication failed', ['invalid_client']),
          429: oauthErrorResponse('Too many failed attempts (retry after the seconds of Retry-After)', [
            'temporarily_unavailable',
          ]),
          // Not an OAuth error: the hub cannot answer now. The API's own error shape.
          ...errors('database_unavailable', 'secret_key_unavailable'),
        },
      },
    },
    async (req, reply) => {
      if (req.validationError) throw new OAuthError('invalid_request', 'grant_type is required');
      const body = req.body;
      if (body.grant_type !== 'client_credentials') {
        throw new OAuthError('unsupported_grant_type', 'only the client_credentials grant is supported');
      }
      const basic = basicCredentials(req.headers.authorization);
      if (basic && (body.client_id !== undefined || body.client_secret !== undefined)) {
        throw new OAuthError('invalid_request', 'send client credentials by one method only');
      }
      const id = basic?.id ?? body.client_id;
      const secret = basic?.secret ?? body.client_secret;
      if (!id || !secret) throw new OAuthError('invalid_client', 'client authentication is required');
      // Checked before the secret, so a guess past the budget learns nothing, right or wrong.
      const wait = await app.authThrottle.waitFor(req, id);
      if (wait > 0) {
        throw new OAuthError(
          'temporarily_unavailable',
          `too many failed authentications for this client or from this address; retry in ${wait} s`,
          { headers: { 'retry-after': String(wait) } },
        );
      }
      const client = await app.services.apiClients.authenticate(id, secret);
      if (!client) {
        await app.authThrottle.recordFailure(req, id);
        throw new OAuthError('invalid_client', 'client authentication failed');
      }

      let scopes: Scope[] = client.scopes;
      if (body.scope !== undefined) {
        const requested = body.scope.split(' ').filter(Boolean);
        const unknown = requested.filter(
          (s) => !(ALL_SCOPES as readonly string[]).includes(s) || !hasScope(client.scopes, s as Scope),
        );
        if (unknown.length > 0 || requested.length === 0) {
          throw new OAuthError('invalid_scope', 'the requested scope exceeds what this client holds');
        }
        scopes = requested as Scope[];
      }
      await app.services.apiClients.markUsed(client.id);
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      return app.services.tokens.issue(client, scopes);
    },
  );
};
