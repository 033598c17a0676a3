// Which events a destination receives: event type patterns (`order.created`, `order.*`, `*`) and
// an optional filter on the event's data, plus how it receives them (ordered, rate limit).
import { z } from 'zod';
import { CONNECTORS } from '../connectors/catalog.ts';
import {
  CUSTOM_TYPE,
  isProviderEventType,
  KNOWN_EVENT_TYPES,
  PROVIDER_FAMILIES,
  type ProviderFamily,
  providerEventType,
} from '../events/types.ts';
import type { DestinationSettings } from '../store/schema.ts';
import { compileFilter, type EventReading, FilterError, type FilterEvaluation } from './filter.ts';

/**
 * A destination's rate limit, in requests per second, is at least this and at most RATE_LIMIT_MAX.
 * Slots are booked `1 / rate` seconds apart as timestamps: a rate far below one request a minute
 * would book them past the last date the database can hold.
 */
export const RATE_LIMIT_MIN = 0.01;
export const RATE_LIMIT_MAX = 10_000;

const FAMILIES = new Set(KNOWN_EVENT_TYPES.map((t) => t.split('.')[0] as string));
const CUSTOM_PREFIX = /^custom(\.[a-z0-9_]+){0,4}$/;
const PROVIDER_PREFIX = new RegExp(`^(${PROVIDER_FAMILIES.join('|')})(\\.[a-z0-9_]+){0,5}$`);

/**
 * The raw types of the topics connectors turn into canonical events (`shopify.orders.create`):
 * no event has them, so a subscription to one is refused, naming the canonical types instead.
 */
const CANONICAL_TOPICS = new Map(
  CONNECTORS.flatMap((c) =>
    (c.inbound?.topics ?? []).flatMap((t) => {
      const type = providerEventType(c.id as ProviderFamily, t.topic);
      return type ? [[type, `${c.name}'s ${t.topic} becomes ${t.types.join(', ')}`] as const] : [];
    }),
  ),
);

/** The API's shape of a destination's settings (snake_case, as every API body). */
export const subscriptionInput = z
  .strictObject({
    event_types: z
      .array(z.string().max(100))
      .min(1)
      .max(100)
      .describe(
        'patterns: an exact type (`order.created`), a family (`order.*`, `custom.cart.*`), `*` (every canonical and custom event), or raw provider events (`shopify.*`, `stripe.checkout.session.completed`)',
      ),
    filter: z
      .record(z.string(), z.unknown())
      .nullable()
      .optional()
      .describe(
        'MongoDB-style query on the event data: `{"total": {"$gte": "100"}}`; operators $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $nor $not; decimal amounts compare exactly',
      ),
    ordered: z
      .boolean()
      .optional()
      .describe('deliver in order per partition key, holding later events while an earlier one retries'),
    rate_limit: z
      .number()
      .min(RATE_LIMIT_MIN, { error: `must be at least ${RATE_LIMIT_MIN} requests per second` })
      .max(RATE_LIMIT_MAX, { error: `must be at most ${RATE_LIMIT_MAX} requests per second` })
      .nullable()
      .optional()
      .describe(
        `requests per second, across every worker, from ${RATE_LIMIT_MIN} to ${RATE_LIMIT_MAX}; null for none`,
      ),
  })
  .meta({ id: 'Subscription' });

export type SubscriptionInput = z.infer<typeof subscriptionInput>;

export class SubscriptionError extends Error {
  override name = 'SubscriptionError';
  constructor(
    readonly code: 'event_type_unknown' | 'filter_invalid',
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** True for a pattern that can match some event this hub makes. */
export function isValidPattern(pattern: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) {
    const prefix = pattern.slice(0, -2);
    return FAMILIES.has(prefix) || CUSTOM_PREFIX.test(prefix) || PROVIDER_PREFIX.test(prefix);
  }
  return (
    (KNOWN_EVENT_TYPES as string[]).includes(pattern) ||
    CUSTOM_TYPE.test(pattern) ||
    (isProviderEventType(pattern) && !CANONICAL_TOPICS.has(pattern))
  );
}

/**
 * `*` is every canonical and custom event, not raw provider events: those are the provider's
 * payloads of topics the hub does not model, taken only by a destination that names them
 * (`shopify.*`), so an endpoint subscribed to everything does not start receiving them unasked.
 */
export function matchesPattern(pattern: string, type: string): boolean {
  if (pattern === '*') return !isProviderEventType(type);
  if (pattern.endsWith('.*')) return type.startsWith(pattern.slice(0, -1));
  return pattern === type;
}

/** Validates API input into stored settings; throws SubscriptionError with the field path. */
export function toSettings(input: SubscriptionInput, previous?: DestinationSettings): DestinationSettings {
  input.event_types.forEach((pattern, i) => {
    const canonical = CANONICAL_TOPICS.get(pattern);
    if (canonical) {
      throw new SubscriptionError(
        'event_type_unknown',
        `body.subscription.event_types.${i}`,
        `"${pattern}" is never made: ${canonical}`,
      );
    }
    if (!isValidPattern(pattern)) {
      throw new SubscriptionError(
        'event_type_unknown',
        `body.subscription.event_types.${i}`,
        `"${pattern}" matches no event type (see the event types in the API reference)`,
      );
    }
  });
  const filter = input.filter === undefined ? (previous?.filter ?? null) : input.filter;
  if (filter !== null) {
    try {
      compileFilter(filter);
    } catch (err) {
      if (!(err instanceof FilterError)) throw err;
      throw new SubscriptionError('filter_invalid', `body.subscription.${err.path}`, err.message);
    }
  }
  return {
    eventTypes: [...new Set(input.event_types)],
    filter,
    ordered: input.ordered ?? previous?.ordered ?? false,
    rateLimit: input.rate_limit === undefined ? (previous?.rateLimit ?? null) : input.rate_limit,
  };
}

export function presentSettings(s: DestinationSettings) {
  return { event_types: s.eventTypes, filter: s.filter, ordered: s.ordered, rate_limit: s.rateLimit };
}

/**
 * The rate limit a stored destination is sent at: its own, within the range the API accepts. A
 * value stored before the API checked the range (or written by hand) is brought into it, and one
 * that is not a number is read as the least, so that no stored row can stall its sends.
 */
export function effectiveRateLimit(stored: unknown): number | null {
  if (stored === null || stored === undefined) return null;
  if (typeof stored !== 'number' || Number.isNaN(stored)) return RATE_LIMIT_MIN;
  return Math.min(RATE_LIMIT_MAX, Math.max(RATE_LIMIT_MIN, stored));
}

/**
 * Whether a destination wants an event. `event`: the event's data as every destination's filter
 * reads it (one `EventReading` per event, shared by all its destinations: see filter.ts).
 * `exhausted` hears of a filter that ran out of work budget, its own or the event's (it did not
 * match).
 */
export type SubscriptionMatcher = (
  type: string,
  event: EventReading,
  exhausted?: (evaluation: FilterEvaluation) => void,
) => boolean;

/** A matcher for routing: compiled once per settings object. */
export function subscriptionMatcher(settings: DestinationSettings): SubscriptionMatcher {
  const filter = settings.filter ? compileFilter(settings.filter) : undefined;
  return (type, event, exhausted) => {
    if (!settings.eventTypes.some((p) => matchesPattern(p, type))) return false;
    if (!filter) return true;
    const evaluation = filter.evaluateOn(event);
    if (evaluation.exhausted) exhausted?.(evaluation);
    return evaluation.matched;
  };
}
