/**
 * Delivery to the local system (Fetch Inbox, and incoming messages as they arrive): the records
 * of one incoming message written to the local system's ingestion API with the credentials of the
 * user the message names, the ids mapped back to the local system's. Any failure — unknown user,
 * no credentials, the local system down or refusing — is a DeliveryError, so conflux-xmpp-in keeps
 * the message in its inbox and retries it; nothing is retried here.
 *
 *   POST <baseUrl><ingestPath>   Authorization: Basic login:password
 *   {"messageId": "...", "user": "<federation id>", "items": [{"object", "name", "value", "unit"?, "time"}]}
 *
 * messageId lets the local system drop a repeat (a retry after a lost answer).
 */
import type { ResolvedRecord } from '../model/senml';
import type { SqlClient } from '../db/sql';
import { deliveryAccount, type Credentials } from './directory';
import { mapObject, splitName } from './routing';
import { localUrl, type FederationSettings } from './settings';

export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  constructor(
    message: string,
    /** The local system's HTTP status, when it answered. */
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface IncomingMessage {
  /** Sen1Message/username: the federation id of the user. */
  username: string;
  records: ResolvedRecord[];
  messageId?: string;
  /** The sender's JID (msg.xmpp.from). */
  from?: string;
}

export interface LocalItem {
  object: string;
  name: string;
  value: number | string | boolean;
  unit?: string;
  time: string;
}

export interface DeliverPorts {
  db: SqlClient;
  tenant: string;
  settings: FederationSettings;
  /** The secret a UserApp's secret_ref names; undefined when it is not set. */
  resolveSecret(ref: string): string | undefined;
  timeoutMs: number;
}

export interface Delivered {
  items: number;
  userId: number;
  login: string;
}

function passwordOf(c: Credentials, resolve: (ref: string) => string | undefined): string {
  if (c.password !== undefined) return c.password;
  const secret = c.secretRef === undefined ? undefined : resolve(c.secretRef);
  if (secret === undefined) throw new DeliveryError(`the secret ${JSON.stringify(c.secretRef)} of login ${c.login} is not set`);
  return secret;
}

/** The records as the local system's items, objects mapped back. */
export function toLocalItems(records: readonly ResolvedRecord[], mapBack: Record<string, string> | null): LocalItem[] {
  return records.map((r) => {
    const { object, name } = splitName(r.n);
    const value = r.v ?? r.vs ?? r.vb ?? r.vd ?? r.s;
    if (value === undefined) throw new DeliveryError(`record ${r.n} has no value`);
    return { object: mapObject(mapBack, object), name, value, ...(r.u !== undefined ? { unit: r.u } : {}), time: new Date(r.t * 1000).toISOString() };
  });
}

export const basicAuth = (login: string, password: string): string => `Basic ${Buffer.from(`${login}:${password}`, 'utf8').toString('base64')}`;

export async function deliverToLocal(ports: DeliverPorts, msg: IncomingMessage): Promise<Delivered> {
  if (typeof msg.username !== 'string' || msg.username === '') throw new DeliveryError('the message names no user (msg.sen1.username)');
  if (!Array.isArray(msg.records) || msg.records.length === 0) throw new DeliveryError('the message carries no records');
  const account = await deliveryAccount(ports.db, ports.tenant, ports.settings, msg.username, msg.from);
  if (!account) throw new DeliveryError(`no user with federation id ${JSON.stringify(msg.username)}`);
  if (!account.credentials) throw new DeliveryError(`user ${msg.username} has no login on the local application ${JSON.stringify(ports.settings.application)}`);
  const password = passwordOf(account.credentials, ports.resolveSecret);
  const items = toLocalItems(msg.records, account.mapBack);
  let res: Response;
  try {
    res = await fetch(localUrl(ports.settings, ports.settings.ingestPath), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuth(account.credentials.login, password) },
      body: JSON.stringify({ messageId: msg.messageId, user: msg.username, items }),
      signal: AbortSignal.timeout(ports.timeoutMs),
    });
  } catch (err) {
    throw new DeliveryError(`the local system did not answer: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const body = (await res.text().catch(() => '')).slice(0, 200);
    throw new DeliveryError(`the local system answered ${res.status}${body ? `: ${body}` : ''}`, res.status);
  }
  await res.arrayBuffer().catch(() => undefined);
  return { items: items.length, userId: account.userId, login: account.credentials.login };
}
