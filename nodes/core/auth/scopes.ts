/**
 * What an API key may do. A key carries a list of scopes (api_keys.scopes); a key with none may
 * do everything its tenant may, otherwise it needs one of the scopes that grant the action.
 * Each endpoint names its action here, so every connector (HTTP ingest, commands, and the REST
 * API, webhooks and AMQP to come) reads the same table.
 */

export const ACTION_SCOPES = {
  /** Post readings for the tenant's devices (HTTP ingest). */
  telemetry: ['devices', 'devices:write', 'write', '*'],
  /** Send commands to the tenant's devices. */
  commands: ['commands', 'devices:write', 'write', '*'],
  /** Push a third party's events into the tenant's inbox (conflux-webhook-in). */
  webhooks: ['webhooks', 'webhooks:write', 'write', '*'],
  /** Read the tenant's devices, data and event catalogue through the REST API. */
  read: ['read', 'write', '*'],
  /** Manage the key's own webhook subscriptions and FTP targets through the REST API. */
  manage: ['manage', 'write', '*'],
  /** Create, list and revoke the tenant's API keys through the REST API. */
  keys: ['keys', '*'],
} as const satisfies Record<string, readonly string[]>;

export type ApiKeyAction = keyof typeof ACTION_SCOPES;

/** Whether a key with these scopes may perform action. */
export function scopesAllow(scopes: readonly string[], action: ApiKeyAction): boolean {
  const granting: readonly string[] = ACTION_SCOPES[action];
  return scopes.length === 0 || scopes.some((s) => granting.includes(s));
}

/** Why a key with these scopes may not perform action (for a 403's detail); undefined when it may. */
export function scopeRefusal(scopes: readonly string[], action: ApiKeyAction): string | undefined {
  if (scopesAllow(scopes, action)) return undefined;
  return `the API key's scopes (${scopes.join(', ')}) include none of ${ACTION_SCOPES[action].join(', ')}`;
}
