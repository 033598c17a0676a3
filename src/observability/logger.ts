// pino options and destinations shared by the HTTP server and the CLI. Redaction is a second line
// of defence: no code path should hand a secret to the logger in the first place.
import { type DestinationStream, type LoggerOptions, stdSerializers } from 'pino';
import type { SonicBoom as SonicBoomClass } from 'sonic-boom';
import sonicBoomModule from 'sonic-boom';

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

// The package is CommonJS whose module.exports is the class, which its types call the default export.
const SonicBoom = sonicBoomModule as unknown as typeof SonicBoomClass;
type SonicBoom = SonicBoomClass;

/** At exit, how many times a full pipe is waited for (100 ms each) before the last lines are dropped. */
const EXIT_WRITE_RETRIES = 10;

const destinations = new Map<number, SonicBoom>();
/** Descriptors whose writes failed: nothing more is written to them. */
const broken = new Set<number>();
/** Full-pipe retries left once the process exits (until then a slow reader is waited for, asynchronously). */
let exitRetriesLeft: number | undefined;
let flushAtExit = false;

/**
 * Log lines to a file descriptor (1: stdout), written asynchronously by SonicBoom. Logging never
 * stops or holds the process: a write that fails (EPIPE once the process reading a pipe is gone,
 * EBADF, ...) switches the descriptor off for good, and at exit what is still buffered is written
 * synchronously once, bounded, and dropped on any error. Not pino.destination(): its exit-time
 * flush, with the SonicBoom 4 that pino bundles, retries a broken pipe forever, so the process
 * never exits. One SonicBoom per descriptor and process.
 */
export function fdDestination(fd: number): LogDestination {
  let stream = destinations.get(fd);
  if (!stream && !broken.has(fd)) {
    stream = openDestination(fd);
    destinations.set(fd, stream);
    if (!flushAtExit) process.once('exit', flushAllAtExit);
    flushAtExit = true;
  }
  return {
    write: (line: string) => {
      if (!broken.has(fd)) stream?.write(line);
    },
  };
}

function openDestination(fd: number): SonicBoom {
  const stream = new SonicBoom({
    fd,
    sync: false,
    minLength: 0,
    retryEAGAIN: () => exitRetriesLeft === undefined || exitRetriesLeft-- > 0,
  });
  stream.on('error', () => {
    broken.add(fd);
    destinations.delete(fd);
  });
  return stream;
}

function flushAllAtExit(): void {
  for (const stream of destinations.values()) {
    exitRetriesLeft = EXIT_WRITE_RETRIES;
    try {
      stream.flushSync();
    } catch {
      // Nobody reads this output any more: the lines are lost, the exit is not held up.
    }
  }
}
