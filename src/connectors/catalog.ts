// Every connector Interchange ships. Adding one: a folder in src/connectors/, one line here.
import hubspot from './hubspot/index.ts';
import mixpanel from './mixpanel/index.ts';
import { type AnyConnector, validateCatalog } from './sdk.ts';
import shopify from './shopify/index.ts';
import stripe from './stripe/index.ts';
import webhook from './webhook/index.ts';
import woocommerce from './woocommerce/index.ts';

export const CONNECTORS: readonly AnyConnector[] = [
  shopify,
  stripe,
  woocommerce,
  hubspot,
  webhook,
  mixpanel,
] as AnyConnector[];

validateCatalog(CONNECTORS);

export function connectorById(id: string): AnyConnector | undefined {
  return CONNECTORS.find((c) => c.id === id);
}
