// The one table of stable error codes and their HTTP status. Services throw AppError with a code
// from here; src/http/errors.ts maps every error to `{ error: { code, message, details? } }`
// (docs/api.md).

export const ERROR_STATUS = {
  validation_failed: 400,
  invalid_json: 400,
  invalid_cursor: 400,
  bad_request: 400,
  event_type_unknown: 400,
  number_not_exact: 400,
  filter_invalid: 400,
  url_blocked: 400,
  url_unresolvable: 400,
  not_a_destination: 400,
  rotation_unsupported: 400,
  unauthorized: 401,
  invalid_token: 401,
  insufficient_scope: 403,
  organization_required: 403,
  scope_escalation: 403,
  route_not_found: 404,
  organization_not_found: 404,
  api_client_not_found: 404,
  user_not_found: 404,
  installation_not_found: 404,
  connector_not_found: 404,
  event_not_found: 404,
  delivery_not_found: 404,
  inbound_request_not_found: 404,
  installation_uninstalled: 410,
  request_body_gone: 410,
  signature_invalid: 401,
  timestamp_stale: 401,
  secret_missing: 401,
  payload_malformed: 400,
  payload_invalid: 400,
  topic_unknown: 400,
  check_unsupported: 400,
  method_not_allowed: 405,
  external_id_conflict: 409,
  external_id_ambiguous: 409,
  event_id_conflict: 409,
  conflict: 409,
  delivery_in_progress: 409,
  destination_limit_reached: 409,
  payload_too_large: 413,
  headers_too_large: 431,
  request_timeout: 408,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  database_unavailable: 503,
  overloaded: 503,
  secret_key_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

/** Errors of the OAuth2 token endpoint keep RFC 6749 §5.2's own shape, which OAuth client libraries parse. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  /**
   * RFC 6749's code for "retry later" (registered for the authorization endpoint; the token
   * endpoint has none of its own), answered with 429 and Retry-After when failed attempts are throttled.
   */
  | 'temporarily_unavailable';

const OAUTH_ERROR_STATUS: Partial<Record<OAuthErrorCode, number>> = {
  invalid_client: 401,
  temporarily_unavailable: 429,
};

export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(code: OAuthErrorCode, description: string, options: { headers?: Record<string, string> } = {}) {
    super(description);
    this.name = 'OAuthError';
    this.code = code;
    this.status = OAUTH_ERROR_STATUS[code] ?? 400;
    this.headers = options.headers ?? {};
  }
}
