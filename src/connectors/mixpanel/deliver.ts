// Delivers a batch to Mixpanel: maps every item, sends events to /import (gzip, ≤ 2000 events and
// ≤ 2 MB per request) and profile updates to /engage, then folds record results into item results.
import type { DeliverContext, DeliveryItem, DeliveryResult } from '../sdk.ts';
import { chunk, type Encoded, encode } from './chunks.ts';
import { MAPPED_TYPES, mapItem } from './mapping.ts';
import { type SendOutcome, send, type Target } from './send.ts';

/** The installation's settings, as `index.ts` declares them. */
export interface MixpanelConfig {
  region: 'us' | 'eu' | 'in';
  host?: string | undefined;
  projectId?: string | undefined;
  auth: 'service_account' | 'project_token';
  productEvents: boolean;
}

export interface MixpanelSecrets {
  serviceAccountUsername?: string | undefined;
  serviceAccountSecret?: string | undefined;
  projectToken?: string | undefined;
}

const HOSTS = {
  us: 'https://api.mixpanel.com',
  eu: 'https://api-eu.mixpanel.com',
  in: 'https://api-in.mixpanel.com',
} as const;

/** Mixpanel's documented limits, with margin: 2000 records and 2 MB a request, 1 MB an event. */
export const LIMITS = { records: 2000, requestBytes: 2_000_000, recordBytes: 1_000_000 } as const;

function base(config: MixpanelConfig): string {
  return (config.host ?? HOSTS[config.region]).replace(/\/+$/, '');
}

/** POST /import (Import Events), strict validation; service accounts name the project. */
export function importUrl(config: MixpanelConfig): string {
  const project =
    config.auth === 'service_account' && config.projectId
      ? `&project_id=${encodeURIComponent(config.projectId)}`
      : '';
  return `${base(config)}/import?strict=1${project}`;
}

/** POST /engage (profile-set): verbose answers say whether the update was taken; ip=0: no geolocation. */
export function engageUrl(config: MixpanelConfig): string {
  return `${base(config)}/engage?verbose=1&ip=0`;
}

const ACCEPTED = new Set<string>(MAPPED_TYPES);

/** Whether the destination takes events of this type. */
export function accepts(type: string): boolean {
  return ACCEPTED.has(type);
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

/** The /import Authorization header, or why it cannot be built (a secret or setting is missing). */
export function importAuth(
  config: MixpanelConfig,
  secrets: Partial<MixpanelSecrets>,
): string | { missing: string } {
  if (config.auth === 'project_token') {
    if (!secrets.projectToken) return { missing: 'the installation has no Mixpanel project token' };
    // The project token is the Basic username, with an empty password.
    return basic(secrets.projectToken, '');
  }
  const { serviceAccountUsername: user, serviceAccountSecret: secret } = secrets;
  if (!user || !secret)
    return { missing: 'the installation has no Mixpanel service account username and secret' };
  if (!config.projectId) return { missing: 'service-account auth needs the Mixpanel project id' };
  return basic(user, secret);
}

/** failed beats retry beats delivered; retries keep the longest requested delay. */
function fold(results: DeliveryResult[]): DeliveryResult {
  const failed = results.find((r) => r.status === 'failed');
  if (failed) return failed;
  const retries = results.filter((r) => r.status === 'retry');
  if (retries.length === 0) return results[0] ?? { status: 'delivered' };
  return retries.reduce((a, b) => ((b.retryAfterMs ?? 0) > (a.retryAfterMs ?? 0) ? b : a));
}

async function sendAll(target: Target, records: Encoded[], perItem: DeliveryResult[][]): Promise<void> {
  let halt: DeliveryResult | undefined;
  for (const part of chunk(records, LIMITS.records, LIMITS.requestBytes)) {
    // After a 401/403 or 429 the remaining requests are not sent: they share its fate.
    const outcome: SendOutcome = halt
      ? { results: new Array<DeliveryResult>(part.length).fill(halt) }
      : await send(target, part);
    halt ??= outcome.halt;
    part.forEach((record, i) => {
      const result = outcome.results[i];
      if (result) perItem[record.item]?.push(result);
    });
  }
}

/** One item's records, encoded, or why it fails before any request. */
function prepare(
  item: DeliveryItem,
  i: number,
  ctx: DeliverContext<MixpanelConfig, MixpanelSecrets>,
): { error: string } | { profile: Encoded } | { events: Encoded[] } {
  const mapped = mapItem(item, { productEvents: ctx.config.productEvents });
  if (mapped.kind === 'invalid') return { error: mapped.error };
  if (mapped.kind === 'profile') {
    const token = ctx.secrets.projectToken;
    // /engage takes no service-account auth: every update carries the project token.
    if (!token) return { error: 'customer profile updates need the Mixpanel project token' };
    // $ignore_time: a server-side sync is not user activity, so "Last Seen" stays as it is.
    const record = encode({ $token: token, ...mapped.profile, $ignore_time: true }, i);
    return record.bytes > LIMITS.recordBytes
      ? { error: 'the profile update is over 1 MB' }
      : { profile: record };
  }
  const encoded = mapped.events.map((e) => encode(e, i, e.properties.$insert_id));
  // One oversized event fails its item alone, before anything of the item is sent.
  if (encoded.some((e) => e.bytes > LIMITS.recordBytes)) return { error: 'the Mixpanel event is over 1 MB' };
  return { events: encoded };
}

/** Sends a batch; one result per item, in order. Never throws for a provider answer. */
export async function deliverBatch(
  batch: readonly DeliveryItem[],
  ctx: DeliverContext<MixpanelConfig, MixpanelSecrets>,
): Promise<DeliveryResult[]> {
  const auth = importAuth(ctx.config, ctx.secrets);
  if (typeof auth !== 'string') return batch.map(() => ({ status: 'failed', error: auth.missing }));

  const perItem: DeliveryResult[][] = batch.map(() => []);
  const events: Encoded[] = [];
  const profiles: Encoded[] = [];
  batch.forEach((item, i) => {
    const prepared = prepare(item, i, ctx);
    if ('error' in prepared) perItem[i]?.push({ status: 'failed', error: prepared.error });
    else if ('profile' in prepared) profiles.push(prepared.profile);
    else events.push(...prepared.events);
  });

  const headers = { authorization: auth, accept: 'application/json' };
  const http = ctx.http;
  await sendAll({ http, url: importUrl(ctx.config), headers, gzip: true, kind: 'import' }, events, perItem);
  const engageHeaders = { accept: 'application/json' };
  await sendAll(
    { http, url: engageUrl(ctx.config), headers: engageHeaders, gzip: false, kind: 'engage' },
    profiles,
    perItem,
  );

  return perItem.map((results) =>
    results.length === 0 ? { status: 'failed', error: 'nothing to send to Mixpanel' } : fold(results),
  );
}
