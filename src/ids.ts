// Resource ids: a type prefix and a UUIDv7 (time-ordered, so ids sort by creation and serve as
// pagination cursors), e.g. usr_01934f5c7d8e7a3b9c1d2e3f4a5b6c7d.
import { v7 as uuidv7 } from 'uuid';

export const ID_PREFIX = {
  organization: 'org',
  apiClient: 'cli',
  user: 'usr',
  signingKey: 'sk',
  installation: 'ins',
  inboundRequest: 'req',
  delivery: 'dlv',
  deliveryAttempt: 'att',
} as const;

export type IdKind = keyof typeof ID_PREFIX;

export function newId(kind: IdKind): string {
  return `${ID_PREFIX[kind]}_${uuidv7().replaceAll('-', '')}`;
}

/** True when `id` has the shape of an id of this kind; anything else can be answered 404 without a query. */
export function isId(kind: IdKind, id: string): boolean {
  return new RegExp(`^${ID_PREFIX[kind]}_[0-9a-f]{32}$`).test(id);
}
