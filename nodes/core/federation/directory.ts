/**
 * What the federation jobs read from the business store (migrations 001 and 010): the enabled
 * consumers with everything their routing and extraction need, and the local-system account of
 * an incoming message's user. One statement each, tenant-scoped.
 *
 * Credentials: a UserApp's `login` with its `password`, or with the secret its `secret_ref`
 * names (the caller resolves it: the nodes look the name up in Node-RED's settings and the
 * environment, as they do for `${VAR}` in their fields).
 */
import type { SqlClient } from '../db/sql';
import { invertMapping, parseMapping, parseSelector, type Mapping, type RouteConsumer } from './routing';
import type { FederationSettings } from './settings';

export interface Credentials {
  login: string;
  password?: string;
  secretRef?: string;
}

export interface PushConsumer extends RouteConsumer {
  /** The consumer's credentials for the local system; undefined when it has none (skipped). */
  credentials?: Credentials;
  /** Why it cannot run (no federation id, no credentials). */
  problem?: string;
}

interface ConsumerRow {
  id: string | number;
  source: unknown;
  mapping: unknown;
  federation_id: string | null;
  login: string | null;
  password: string | null;
  secret_ref: string | null;
  dst: string;
  jid: string;
}

function credentialsOf(r: { login: string | null; password: string | null; secret_ref: string | null }): Credentials | undefined {
  if (r.login === null || (r.password === null && r.secret_ref === null)) return undefined;
  return { login: r.login, ...(r.password !== null ? { password: r.password } : {}), ...(r.secret_ref !== null ? { secretRef: r.secret_ref } : {}) };
}

/**
 * The tenant's enabled consumers of enabled users, in id order. A consumer's credentials are its
 * own UserApp, or else its user's UserApp on the local App.
 */
export async function pushConsumers(db: SqlClient, tenant: string, settings: FederationSettings): Promise<PushConsumer[]> {
  const { rows } = await db.query<ConsumerRow>(
    `SELECT c.id, c.source, c.mapping, u.federation_id, ua.login, ua.password, ua.secret_ref, a.name AS dst, a.jid
     FROM consumers c
     JOIN users u ON u.tenant_id = c.tenant_id AND u.id = c.user_id
     JOIN applications a ON a.tenant_id = c.tenant_id AND a.id = c.target_application_id
     LEFT JOIN applications l ON l.tenant_id = c.tenant_id AND l.name = $2
     LEFT JOIN user_applications ua ON ua.tenant_id = c.tenant_id
       AND ua.id = coalesce(c.user_application_id,
         (SELECT x.id FROM user_applications x WHERE x.tenant_id = c.tenant_id AND x.user_id = c.user_id AND x.application_id = l.id))
     WHERE c.tenant_id = $1 AND c.enabled AND u.disabled_at IS NULL
     ORDER BY c.id`,
    [tenant, settings.application],
  );
  return rows.map((r) => {
    const credentials = credentialsOf(r);
    const problem =
      r.federation_id === null
        ? 'its user has no federation_id'
        : credentials === undefined
          ? `its user has no login with a password or secret_ref on the local application ${JSON.stringify(settings.application)}`
          : undefined;
    return {
      id: Number(r.id),
      source: parseSelector(r.source),
      mapping: parseMapping(r.mapping),
      username: r.federation_id ?? '',
      applicationSrc: settings.application,
      applicationDst: r.dst,
      jid: r.jid,
      ...(credentials ? { credentials } : {}),
      ...(problem ? { problem } : {}),
    };
  });
}

export interface DeliveryAccount {
  userId: number;
  credentials?: Credentials;
  /** Target id → local id, from the user's consumer towards the sending App (ids mapped back). */
  mapBack: Mapping | null;
}

/** The bare JID (no resource), lower-cased as XMPP compares them. */
export const bareJid = (jid: string): string => jid.split('/')[0].toLowerCase();

/**
 * The local account of the user an incoming message names (Sen1Message/username = federation
 * id); undefined when the tenant has no such user. `from` is the sender's JID: the user's consumer
 * whose target is that App says how ids map, and is used the other way round.
 */
export async function deliveryAccount(
  db: SqlClient,
  tenant: string,
  settings: FederationSettings,
  federationId: string,
  from: string | undefined,
): Promise<DeliveryAccount | undefined> {
  const { rows } = await db.query<{ id: string | number; login: string | null; password: string | null; secret_ref: string | null; mapping: unknown }>(
    `SELECT u.id, ua.login, ua.password, ua.secret_ref,
       (SELECT c.mapping FROM consumers c JOIN applications a ON a.tenant_id = c.tenant_id AND a.id = c.target_application_id
        WHERE c.tenant_id = u.tenant_id AND c.user_id = u.id AND lower(a.jid) = $4 AND c.mapping IS NOT NULL ORDER BY c.id LIMIT 1) AS mapping
     FROM users u
     LEFT JOIN applications l ON l.tenant_id = u.tenant_id AND l.name = $3
     LEFT JOIN user_applications ua ON ua.tenant_id = u.tenant_id AND ua.user_id = u.id AND ua.application_id = l.id
     WHERE u.tenant_id = $1 AND u.federation_id = $2 AND u.disabled_at IS NULL`,
    [tenant, federationId, settings.application, from === undefined ? null : bareJid(from)],
  );
  if (rows.length === 0) return undefined;
  const r = rows[0];
  const credentials = credentialsOf(r);
  return { userId: Number(r.id), ...(credentials ? { credentials } : {}), mapBack: invertMapping(parseMapping(r.mapping)) };
}
