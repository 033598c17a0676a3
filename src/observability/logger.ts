// pino options shared by the HTTP server and the CLI. Redaction is a second line of defence: no
// code path should hand a secret to the logger in the first place.
import { type DestinationStream, type LoggerOptions, stdSerializers } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'client_secret',
  '*.client_secret',
  'secret',
  '*.secret',
  'access_token',
  '*.access_token',
  'password',
  '*.password',
];

/** Database errors quote the query's parameters, which may hold personal data: keep the SQL, drop the values. */
function serializeError(err: Error) {
  const out = stdSerializers.err(err);
  const strip = (text: string | undefined) => text?.replace(/\nparams: [^\n]*/g, '\nparams: [redacted]');
  return { ...out, message: strip(out.message) ?? '', stack: strip(out.stack) ?? '' };
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    serializers: { err: serializeError },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'interchange' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
  };
}

export type LogDestination = DestinationStream;
