// Test fixtures: delivery items carrying canonical events as the Shopify connector produces them
// (records.ts shapes, exact decimal amounts, Shopify's 64-bit ids as strings). Fictional people.
import type { Customer, Order, Refund } from '../../events/records.ts';
import type { DeliveryItem } from '../sdk.ts';

const INSTALLATION = 'ins_01J9SHOPIFY0000000000000';
let counter = 0;

/** A time-ordered-looking event id, unique per call. */
export function eventId(): string {
  counter += 1;
  return `01920d6e-7c2a-7000-8000-${counter.toString(16).padStart(12, '0')}`;
}

/** A canonical order: 1 × iPod Nano at 199.00 and 2 × coat at 19.99, a 10.00 coupon, shipping and tax. */
export function canonicalOrder(overrides: Partial<Order> = {}): Order {
  return {
    order_id: '820982911946154508',
    order_number: '1001',
    total: '245.92',
    subtotal: '228.98',
    revenue: '228.98',
    tax: '11.94',
    shipping: '5.00',
    discount: '10.00',
    currency: 'USD',
    coupon: 'SPRING10',
    financial_status: 'paid',
    fulfillment_status: null,
    products: [
      {
        product_id: '632910392',
        variant_id: '808950810',
        sku: 'IPOD2008PINK',
        name: 'IPod Nano - 8GB - Pink',
        price: '199.00',
        quantity: 1,
      },
      {
        product_id: '921728736',
        variant_id: '457924702',
        sku: 'COAT-RED-M',
        name: 'Red Leather Coat - M',
        price: '19.99',
        quantity: 2,
      },
    ],
    customer: {
      customer_id: '207119551',
      email: 'bob.norman@example.com',
      first_name: 'Bob',
      last_name: 'Norman',
      external_ids: { [INSTALLATION]: '207119551' },
    },
    billing_address: null,
    shipping_address: null,
    created_at: '2024-05-01T10:00:00-04:00',
    updated_at: '2024-05-01T10:00:05-04:00',
    cancelled_at: null,
    external_ids: { [INSTALLATION]: '820982911946154508' },
    ...overrides,
  };
}

/** A Shopify refund: it names the order but no customer. */
export function canonicalRefund(overrides: Partial<Refund> = {}): Refund {
  return {
    refund_id: '509562969',
    order_id: '820982911946154508',
    payment_id: null,
    total: '19.99',
    currency: 'USD',
    reason: 'Item arrived damaged',
    products: [
      {
        product_id: '921728736',
        variant_id: '457924702',
        sku: 'COAT-RED-M',
        name: 'Red Leather Coat - M',
        price: '19.99',
        quantity: 1,
      },
    ],
    created_at: '2024-05-03T09:12:00-04:00',
    external_ids: { [INSTALLATION]: '509562969' },
    ...overrides,
  };
}

export function canonicalCustomer(overrides: Partial<Customer> = {}): Customer {
  return {
    customer_id: '207119551',
    email: 'bob.norman@example.com',
    first_name: 'Bob',
    last_name: 'Norman',
    phone: null,
    accepts_marketing: true,
    address: {
      name: 'Bob Norman',
      address1: 'Chestnut Street 92',
      address2: null,
      city: 'Louisville',
      region: 'Kentucky',
      postal_code: '40202',
      country: 'United States',
      country_code: 'US',
    },
    created_at: '2024-04-30T18:22:10-04:00',
    updated_at: '2024-05-01T10:00:05-04:00',
    external_ids: { [INSTALLATION]: '207119551' },
    ...overrides,
  };
}

/** A delivery item from the Shopify installation; `userid` null unless given. */
export function item(
  type: string,
  data: unknown,
  options: { userid?: string | null; time?: string; id?: string; sourceConnector?: string | null } = {},
): DeliveryItem {
  const id = options.id ?? eventId();
  return {
    deliveryId: `dlv_${id}`,
    attempt: 1,
    sourceConnector: options.sourceConnector === undefined ? 'shopify' : options.sourceConnector,
    event: {
      specversion: '1.0',
      id,
      source: `/installations/${INSTALLATION}`,
      type,
      subject: null,
      time: options.time ?? '2024-05-01T14:00:05.000Z',
      datacontenttype: 'application/json',
      organization: 'org_01J9ACME000000000000000',
      partitionkey: 'interchange-demo.myshopify.com',
      userid: options.userid ?? null,
      data,
    },
  };
}
