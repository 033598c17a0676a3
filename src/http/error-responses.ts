// The error responses of an operation, for its OpenAPI entry: the codes it may answer (from
// src/errors.ts), grouped by their status, each status described with its codes. A client
// generator gets one typed response per status; a reader sees which codes each can carry.
import { ERROR_STATUS, type ErrorCode } from '../errors.ts';
import { errorSchema } from './schemas.ts';

export type ErrorStatus = (typeof ERROR_STATUS)[ErrorCode];

interface ErrorResponse {
  description: string;
  content: { 'application/json': { schema: typeof errorSchema } };
}

const TITLES: Record<ErrorStatus, string> = {
  400: 'Bad request',
  401: 'Not authenticated',
  403: 'Not allowed',
  404: 'Not found',
  405: 'Method not allowed',
  408: 'Request timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Body too large',
  415: 'Unsupported media type',
  429: 'Too many requests (retry after the seconds of Retry-After)',
  431: 'Request headers too large',
  500: 'Internal error',
  503: 'Unavailable (retry after the seconds of Retry-After)',
};

type Codes = readonly ErrorCode[];

/**
 * Every authenticated /v1 operation: the bearer token and its scope, the rate limit of the
 * client (or, without a valid token, of the address's failed attempts), text in the URL that the
 * database cannot store, and the database or a secret key it needs (a key of the token's
 * signature this process lacks).
 */
export const AUTHENTICATED = [
  'validation_failed',
  'unauthorized',
  'invalid_token',
  'insufficient_scope',
  'rate_limited',
  'database_unavailable',
  'secret_key_unavailable',
] as const satisfies Codes;

/** An operation within one organization: an admin client's token is refused. */
export const IN_ORGANIZATION = ['organization_required'] as const satisfies Codes;

/** Path parameters: one longer than the router takes, or not valid percent-encoding. */
export const PATH = ['validation_failed', 'bad_request'] as const satisfies Codes;

/** A page of a list: a query out of range, or a cursor this API did not return. */
export const PAGE = ['validation_failed', 'invalid_cursor'] as const satisfies Codes;

/**
 * A request body is read: every POST, PATCH and DELETE reads one when it is sent, even an
 * operation that takes none (a body there must still be JSON, and within the body limit).
 */
export const READS_BODY = [
  'validation_failed',
  'invalid_json',
  'bad_request',
  'payload_too_large',
  'unsupported_media_type',
] as const satisfies Codes;

/** The status of each code given, described by its title and its codes. */
export function errors(...given: Array<ErrorCode | Codes>): Partial<Record<ErrorStatus, ErrorResponse>> {
  const byStatus = new Map<ErrorStatus, Set<ErrorCode>>();
  for (const code of given.flat()) {
    const status = ERROR_STATUS[code];
    const codes = byStatus.get(status) ?? new Set<ErrorCode>();
    byStatus.set(status, codes.add(code));
  }
  const statuses = [...byStatus.keys()].sort((a, b) => a - b);
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: `${TITLES[status]}: ${[...(byStatus.get(status) ?? [])].map((c) => `\`${c}\``).join(', ')}`,
        content: { 'application/json': { schema: errorSchema } },
      },
    ]),
  );
}
