// The connection check (POST /v1/installations/{id}/test): asks Mixpanel itself whether it takes
// the installation's credentials. Import Events (POST /import) authenticates every request before
// reading its events, so an empty batch checks the credentials and imports nothing.
import { z } from 'zod';
import type { CheckContext, CheckResult, HttpResponse, InstallationWarning, WarningContext } from '../sdk.ts';
import { importAuth, importUrl, type MixpanelConfig, type MixpanelSecrets } from './deliver.ts';

const TEXT_LIMIT = 200;
const PROFILE_TYPES = ['customer.created', 'customer.updated'] as const;

/** Mixpanel's error body: only its `error` text is kept (an allowlist, clipped). */
const errorBody = z.object({ error: z.string().nullable().optional() });

function said(res: HttpResponse): string {
  try {
    const parsed = errorBody.safeParse(JSON.parse(res.body));
    const text = parsed.success ? parsed.data.error : undefined;
    return text ? `: ${text.length > TEXT_LIMIT ? `${text.slice(0, TEXT_LIMIT)}…` : text}` : '';
  } catch {
    return '';
  }
}

/** The message with every secret of the installation blanked, should Mixpanel ever echo one. */
function withoutSecrets(message: string, secrets: Partial<MixpanelSecrets>): string {
  let out = message;
  for (const value of Object.values(secrets)) if (value) out = out.replaceAll(value, '[secret]');
  return out;
}

type Verdict = { accepted: true } | { accepted: false; why: string };

/** POST /import (Import Events) with no events: what Mixpanel says of these credentials. */
async function tryImport(
  ctx: CheckContext<MixpanelConfig, MixpanelSecrets>,
  url: string,
  authorization: string,
): Promise<Verdict> {
  let res: HttpResponse;
  try {
    res = await ctx.http(url, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/json', accept: 'application/json' },
      body: '[]',
      timeoutMs: 10_000,
    });
  } catch (err) {
    return { accepted: false, why: `Mixpanel could not be reached: ${(err as Error).message}` };
  }
  if (res.status === 401 || res.status === 403)
    return { accepted: false, why: `Mixpanel refused them (${res.status}${said(res)})` };
  // Credentials are checked before the events: a 400 about the (empty) batch means they passed.
  if ((res.status >= 200 && res.status < 300) || res.status === 400) return { accepted: true };
  return { accepted: false, why: `Mixpanel answered ${res.status}${said(res)}; try again later` };
}

/** Checks the credentials /import uses and, when set, the project token profile updates use. */
export async function checkMixpanel(
  ctx: CheckContext<MixpanelConfig, MixpanelSecrets>,
): Promise<CheckResult> {
  const auth = importAuth(ctx.config, ctx.secrets);
  if (typeof auth !== 'string') return { ok: false, message: auth.missing };
  const credentials =
    ctx.config.auth === 'service_account'
      ? `the service account for project ${ctx.config.projectId}`
      : 'the project token';
  const imports = await tryImport(ctx, importUrl(ctx.config), auth);
  if (!imports.accepted)
    return { ok: false, message: withoutSecrets(`${credentials}: ${imports.why}`, ctx.secrets) };
  const token = ctx.secrets.projectToken;
  if (ctx.config.auth === 'project_token')
    return { ok: true, message: 'Mixpanel accepted the project token' };
  if (!token) {
    return {
      ok: true,
      message: `Mixpanel accepted ${credentials}; customer profile updates need the project token too`,
    };
  }
  // The project token alone authenticates /import too: the way to ask Mixpanel about it.
  const basic = `Basic ${Buffer.from(`${token}:`, 'utf8').toString('base64')}`;
  const tokenUrl = importUrl({ ...ctx.config, auth: 'project_token' });
  const profiles = await tryImport(ctx, tokenUrl, basic);
  if (!profiles.accepted) {
    const message = `Mixpanel accepted ${credentials}, but not the project token (profile updates): ${profiles.why}`;
    return { ok: false, message: withoutSecrets(message, ctx.secrets) };
  }
  return { ok: true, message: `Mixpanel accepted ${credentials} and the project token` };
}

/** Subscribed events these settings can never deliver. */
export function mixpanelWarnings(
  ctx: WarningContext<MixpanelConfig, MixpanelSecrets>,
): InstallationWarning[] {
  const warnings: InstallationWarning[] = [];
  const auth = importAuth(ctx.config, ctx.secrets);
  if (typeof auth !== 'string') {
    const path = ctx.config.auth === 'project_token' ? 'body.secrets.projectToken' : 'body.secrets';
    warnings.push({
      code: 'credentials_missing',
      message: `${auth.missing}: every delivery fails until they are set`,
      path,
    });
  }
  const profiles = PROFILE_TYPES.filter((type) => ctx.subscribes(type));
  if (!ctx.secrets.projectToken && profiles.length > 0) {
    warnings.push({
      code: 'profile_updates_need_project_token',
      message: `${profiles.join(' and ')} events become Mixpanel profile updates, which only the project token can send: without it they fail. Set secrets.projectToken, or leave customer events out of the subscription.`,
      path: 'body.secrets.projectToken',
    });
  }
  return warnings;
}
