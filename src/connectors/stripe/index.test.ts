import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureServer, inboundRequest, startCaptureServer } from '../../../sim/capture-server.ts';
import {
  type SimStripeEvent,
  sendStripeWebhook,
  stripeCharge,
  stripeCustomer,
  stripeEvent,
  stripeInvoice,
  stripePaymentIntent,
  stripeRefund,
  stripeRefundEvents,
  stripeWebhookRequest,
} from '../../../sim/stripe.ts';
import { parseEventData } from '../../events/types.ts';
import { ConnectorError, type EventDraft, type InboundRequest, parseJson } from '../sdk.ts';
import stripe from './index.ts';

const SECRET = 'whsec_4eC39HqLyjWDarjtT1zdp7dcTEST';
const INSTALLATION = 'ins_stripe_test';
const inbound = stripe.inbound;
if (!inbound) throw new Error('the stripe connector must receive webhooks');

interface Setup {
  /** The installation's webhook secret; null: not set. */
  secret?: string | null;
  accountId?: string;
}

function context({ secret = SECRET, accountId }: Setup = {}) {
  return {
    installationId: INSTALLATION,
    config: accountId ? { accountId } : {},
    secrets: secret === null ? {} : { webhookSecret: secret },
    now: new Date(),
  };
}

/** The hub's inbound path for one request: verify, parse, keys, normalize. */
async function receive(req: InboundRequest, setup: Setup = {}) {
  const ctx = context(setup);
  await inbound?.verify(req, ctx);
  const payload = inbound?.parse ? inbound.parse(req) : parseJson(req);
  return {
    dedupeKey: inbound?.dedupeKey(req, payload, ctx),
    partitionKey: inbound?.partitionKey(req, payload, ctx),
    drafts: inbound?.normalize(req, payload, ctx) ?? [],
  };
}

async function errorCode(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (err) {
    if (err instanceof ConnectorError) return err.code;
    throw err;
  }
  return 'no error';
}

function signed(
  event: SimStripeEvent | string,
  options: { secret?: string; timestamp?: number; receivedAt?: Date } = {},
) {
  const { body, headers } = stripeWebhookRequest(event, {
    secret: options.secret ?? SECRET,
    timestamp: options.timestamp,
  });
  return inboundRequest({
    url: `https://hub.example.com/hooks/${INSTALLATION}`,
    headers,
    body,
    receivedAt: options.receivedAt,
  });
}

async function only(event: SimStripeEvent, setup: Setup = {}): Promise<EventDraft> {
  const { drafts } = await receive(signed(event), setup);
  expect(drafts).toHaveLength(1);
  const [draft] = drafts;
  if (!draft) throw new Error('no draft');
  expect(parseEventData(draft.type, draft.data).success).toBe(true);
  return draft;
}

describe('stripe connector over HTTP', () => {
  let server: CaptureServer;
  const outcomes: string[] = [];

  beforeAll(async () => {
    server = await startCaptureServer(async (req) => {
      try {
        const { drafts } = await receive(req);
        outcomes.push(drafts.map((d) => d.type).join(','));
        return 200;
      } catch (err) {
        if (!(err instanceof ConnectorError)) throw err;
        outcomes.push(err.code);
        return err.code === 'signature_invalid' || err.code === 'timestamp_stale' ? 401 : 400;
      }
    });
  });
  afterAll(() => server.close());

  it('accepts an event signed by the SDK and sent by the simulator', async () => {
    const event = stripeEvent('payment_intent.succeeded', stripePaymentIntent());
    const res = await sendStripeWebhook(`${server.url}/hooks/${INSTALLATION}`, event, { secret: SECRET });
    expect(res.status).toBe(200);
    expect(outcomes.at(-1)).toBe('payment.succeeded');
    const received = server.requests.at(-1);
    expect(received?.rawBody.toString('utf8')).toBe(JSON.stringify(event, null, 2));
  });

  it('answers 401 to an event signed with another secret', async () => {
    const event = stripeEvent('customer.created', stripeCustomer());
    const res = await sendStripeWebhook(server.url, event, { secret: 'whsec_not_the_installation_secret' });
    expect(res.status).toBe(401);
    expect(outcomes.at(-1)).toBe('signature_invalid');
  });
});

describe('stripe verify', () => {
  const event = stripeEvent('customer.created', stripeCustomer());

  it('passes a valid signature', async () => {
    expect(await errorCode(() => inbound.verify(signed(event), context()))).toBe('no error');
  });

  it('rejects a wrong secret, a changed body and a missing header as signature_invalid', async () => {
    expect(await errorCode(() => inbound.verify(signed(event, { secret: 'whsec_other' }), context()))).toBe(
      'signature_invalid',
    );
    const tampered = signed(event);
    tampered.rawBody = Buffer.from(tampered.rawBody.toString('utf8').replace('Jenny', 'Jimmy'));
    expect(await errorCode(() => inbound.verify(tampered, context()))).toBe('signature_invalid');
    const unsigned = signed(event);
    const { 'stripe-signature': _dropped, ...headers } = unsigned.headers;
    expect(await errorCode(() => inbound.verify({ ...unsigned, headers }, context()))).toBe(
      'signature_invalid',
    );
  });

  it('refuses to verify without the installation secret (secret_missing, never a pass)', async () => {
    expect(await errorCode(() => inbound.verify(signed(event), context({ secret: null })))).toBe(
      'secret_missing',
    );
    expect(await errorCode(() => inbound.verify(signed(event), context({ secret: '' })))).toBe(
      'secret_missing',
    );
  });

  it('rejects a valid signature older than 300 s as timestamp_stale, and accepts one at 300 s', async () => {
    const receivedAt = new Date('2026-03-01T12:00:00Z');
    const t = receivedAt.getTime() / 1000;
    const stale = signed(event, { timestamp: t - 301, receivedAt });
    expect(await errorCode(() => inbound.verify(stale, context()))).toBe('timestamp_stale');
    const edge = signed(event, { timestamp: t - 300, receivedAt });
    expect(await errorCode(() => inbound.verify(edge, context()))).toBe('no error');
    // An old request with a wrong signature is a forgery first.
    const forged = signed(event, { timestamp: t - 3600, receivedAt, secret: 'whsec_other' });
    expect(await errorCode(() => inbound.verify(forged, context()))).toBe('signature_invalid');
  });

  it('accepts any matching v1 signature (Stripe sends one per active secret while rolling)', async () => {
    const req = signed(event);
    const header = req.headers['stripe-signature'] ?? '';
    const [t, v1] = header.split(',');
    req.headers = { ...req.headers, 'stripe-signature': `${t},v1=${'0'.repeat(64)},${v1},v0=abc` };
    expect(await errorCode(() => inbound.verify(req, context()))).toBe('no error');
  });

  it('reports a signed body that is not JSON as payload_malformed', async () => {
    expect(await errorCode(() => receive(signed('{"id": "evt_1", ')))).toBe('payload_malformed');
  });
});

describe('stripe normalize', () => {
  it('maps customer events, with the customer id as customerExternalId', async () => {
    const customer = stripeCustomer({ name: 'Mary Ann Smith', email: 'mary@example.com' });
    for (const type of ['customer.created', 'customer.updated'] as const) {
      const draft = await only(stripeEvent(type, customer));
      expect(draft.type).toBe(type);
      expect(draft.customerExternalId).toBe(customer.id);
      expect(draft.data).toMatchObject({
        customer_id: customer.id,
        email: 'mary@example.com',
        first_name: 'Mary',
        last_name: 'Ann Smith',
        address: { city: 'Berlin', country_code: 'DE', postal_code: '10119' },
        external_ids: { [INSTALLATION]: customer.id },
      });
    }
    const deleted = await only(stripeEvent('customer.deleted', customer));
    expect(deleted).toMatchObject({ type: 'customer.deleted', subject: `customers/${customer.id}` });
    expect(deleted.data).toEqual({ customer_id: customer.id, external_ids: { [INSTALLATION]: customer.id } });
  });

  it('maps invoice events, amounts exact in the major unit and the currency upper-cased', async () => {
    const cases = [
      ['invoice.created', 'invoice.created', 'draft'],
      ['invoice.finalized', 'invoice.updated', 'open'],
      ['invoice.paid', 'invoice.paid', 'paid'],
      ['invoice.payment_failed', 'invoice.payment_failed', 'open'],
    ] as const;
    for (const [stripeType, canonical, status] of cases) {
      const invoice = stripeInvoice({
        status,
        total: 1999,
        amount_due: 1999,
        amount_paid: status === 'paid' ? 1999 : 0,
      });
      const draft = await only(stripeEvent(stripeType, invoice));
      expect(draft.type).toBe(canonical);
      expect(draft.customerExternalId).toBe(invoice.customer);
      expect(draft.data).toMatchObject({
        invoice_id: invoice.id,
        customer_id: invoice.customer,
        status,
        total: '19.99',
        amount_due: '19.99',
        amount_paid: status === 'paid' ? '19.99' : '0.00',
        currency: 'USD',
        lines: [{ amount: '19.99', quantity: 1 }],
      });
    }
  });

  it('converts minor units with the currency exponent: 1999 usd, 500 jpy, 1234 kwd', async () => {
    const usd = await only(
      stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 1999, currency: 'usd' })),
    );
    expect(usd.data).toMatchObject({ total: '19.99', currency: 'USD' });
    const jpy = await only(
      stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 500, currency: 'jpy' })),
    );
    expect(jpy.data).toMatchObject({ total: '500', currency: 'JPY' });
    const kwd = await only(
      stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 1234, currency: 'kwd' })),
    );
    expect(kwd.data).toMatchObject({ total: '1.234', currency: 'KWD' });
  });

  it("reads amounts with Stripe's minor units where they are not ISO's: ISK in hundredths, MGA whole", async () => {
    const isk = await only(
      stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 50000, currency: 'isk' })),
    );
    expect(isk.data).toMatchObject({ total: '500', currency: 'ISK' });
    const mga = await only(
      stripeEvent('payment_intent.succeeded', stripePaymentIntent({ amount: 5000, currency: 'mga' })),
    );
    expect(mga.data).toMatchObject({ total: '5000.00', currency: 'MGA' });
  });

  it('maps payment intents to payment.succeeded and payment.failed with the decline', async () => {
    const ok = stripePaymentIntent();
    const succeeded = await only(stripeEvent('payment_intent.succeeded', ok));
    expect(succeeded).toMatchObject({ type: 'payment.succeeded', customerExternalId: ok.customer });
    expect(succeeded.data).toMatchObject({
      payment_id: ok.id,
      status: 'succeeded',
      total: '19.99',
      failure_code: null,
    });
    const declined = stripePaymentIntent({
      status: 'requires_payment_method',
      amount_received: 0,
      last_payment_error: {
        type: 'card_error',
        code: 'card_declined',
        decline_code: 'insufficient_funds',
        message: 'Your card has insufficient funds.',
      },
    });
    const failed = await only(stripeEvent('payment_intent.payment_failed', declined));
    expect(failed.type).toBe('payment.failed');
    expect(failed.data).toMatchObject({
      payment_id: declined.id,
      status: 'failed',
      failure_code: 'insufficient_funds',
      failure_message: 'Your card has insufficient funds.',
    });
  });

  describe('refunds', () => {
    /** A $50 charge refunded $10, then $15: the events Stripe sends for each refund. */
    function twoPartialRefunds(options: { requestId?: null } = {}) {
      const charge = stripeCharge({ amount: 5000, amount_refunded: 0, refunded: false });
      const refunds = [stripeRefund({ amount: 1000 }), stripeRefund({ amount: 1500 })] as const;
      return {
        charge,
        refunds,
        first: stripeRefundEvents({ ...charge, amount_refunded: 1000 }, refunds[0], options),
        second: stripeRefundEvents({ ...charge, amount_refunded: 2500 }, refunds[1], options),
      };
    }

    it('counts each partial refund of charge.refunded once: $10 then $15 are 10 and 15, not 10 and 25', async () => {
      const { charge, first, second } = twoPartialRefunds();
      const a = await only(first.chargeRefunded);
      const b = await only(second.chargeRefunded);
      expect(a.type).toBe('refund.created');
      expect(a.customerExternalId).toBe(charge.customer);
      expect([a.data, b.data]).toMatchObject([
        { total: '10.00', currency: 'USD' },
        { total: '15.00', currency: 'USD' },
      ]);
      // Without the refunds list the charge names no refund: each is named by the charge and the
      // amount refunded so far, the same on every retry.
      expect([a.data, b.data]).toMatchObject([
        { refund_id: `${charge.id}:1000` },
        { refund_id: `${charge.id}:2500` },
      ]);
      expect(a.dedupeKey).not.toBe(b.dedupeKey);
    });

    it('maps refund.created with the refund’s own id and amount, keyed like the charge.refunded of the same refund', async () => {
      const { charge, refunds, first, second } = twoPartialRefunds();
      const created = await only(second.refundCreated);
      expect(created).toMatchObject({ type: 'refund.created', subject: `refunds/${refunds[1].id}` });
      expect(created.data).toMatchObject({
        refund_id: refunds[1].id,
        payment_id: charge.payment_intent,
        total: '15.00',
        currency: 'USD',
        reason: 'requested_by_customer',
      });
      const charged = await only(second.chargeRefunded);
      expect(created.dedupeKey).toBe(charged.dedupeKey);
      expect(created.dedupeKey).not.toBe((await only(first.refundCreated)).dedupeKey);
    });

    it('keys an automatic refund (no API request) by its refund id', async () => {
      const { refunds, first } = twoPartialRefunds({ requestId: null });
      expect((await only(first.refundCreated)).dedupeKey).toBe(`refund:${refunds[0].id}`);
    });

    it('takes the newest listed refund when the charge carries its refunds list', async () => {
      const charge = stripeCharge({ amount: 5000, amount_refunded: 1500 });
      const older = stripeRefund({ amount: 1000, created: 1_700_000_000, charge: charge.id });
      const newer = stripeRefund({
        amount: 500,
        created: 1_700_000_900,
        reason: 'duplicate',
        charge: charge.id,
      });
      const { chargeRefunded } = stripeRefundEvents(charge, newer, { listed: [newer, older] });
      const draft = await only(chargeRefunded);
      expect(draft.subject).toBe(`refunds/${newer.id}`);
      expect(draft.data).toMatchObject({ refund_id: newer.id, total: '5.00', reason: 'duplicate' });
    });

    it('refuses charge.refunded with neither the refunds list nor the amount refunded before', async () => {
      const bare = stripeEvent('charge.refunded', stripeCharge({ amount: 5000, amount_refunded: 1500 }));
      expect(await errorCode(() => receive(signed(bare)))).toBe('payload_invalid');
    });

    it('makes no event from a charge.refunded whose amount refunded did not grow', async () => {
      const charge = stripeCharge({ amount: 5000, amount_refunded: 1500 });
      const event = stripeEvent('charge.refunded', charge);
      event.data.previous_attributes = { amount_refunded: 1500 };
      expect((await receive(signed(event))).drafts).toEqual([]);
    });
  });

  it('rejects an event type it does not handle as topic_unknown', async () => {
    const event = stripeEvent('product.created', { id: 'prod_1', object: 'product' });
    expect(await errorCode(() => receive(signed(event)))).toBe('topic_unknown');
  });

  it('rejects payloads missing what the canonical event needs as payload_invalid', async () => {
    const { total: _total, ...noTotal } = stripeInvoice();
    expect(await errorCode(() => receive(signed(stripeEvent('invoice.paid', noTotal))))).toBe(
      'payload_invalid',
    );
    const { currency: _currency, ...noCurrency } = stripePaymentIntent();
    expect(await errorCode(() => receive(signed(stripeEvent('payment_intent.succeeded', noCurrency))))).toBe(
      'payload_invalid',
    );
    const { id: _id, ...noId } = stripeEvent('customer.created', stripeCustomer());
    expect(await errorCode(() => receive(signed(JSON.stringify(noId))))).toBe('payload_invalid');
  });
});

describe('stripe keys', () => {
  it('de-duplicates on the event id across retries (re-signed later, as Stripe retries)', async () => {
    const event = stripeEvent('invoice.paid', stripeInvoice({ status: 'paid' }));
    const first = await receive(signed(event, { timestamp: Math.floor(Date.now() / 1000) - 120 }));
    const retry = await receive(signed(event));
    expect(first.dedupeKey).toBe(event.id);
    expect(retry.dedupeKey).toBe(first.dedupeKey);
    const other = await receive(signed(stripeEvent('invoice.paid', stripeInvoice({ status: 'paid' }))));
    expect(other.dedupeKey).not.toBe(first.dedupeKey);
  });

  it("orders by the event's account, else the configured account, else the installation", async () => {
    const connected = stripeEvent('customer.created', stripeCustomer(), { account: 'acct_1Connected' });
    expect((await receive(signed(connected), { accountId: 'acct_1Platform' })).partitionKey).toBe(
      'acct_1Connected',
    );
    const own = stripeEvent('customer.created', stripeCustomer());
    expect((await receive(signed(own), { accountId: 'acct_1Platform' })).partitionKey).toBe('acct_1Platform');
    expect((await receive(signed(own))).partitionKey).toBe(`stripe:${INSTALLATION}`);
  });
});
