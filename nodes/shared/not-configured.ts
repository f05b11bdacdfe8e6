/**
 * A server a node needs but nobody configured (CONFLUX_AMQP_URL unset, an empty host field): not
 * an error of the flow, so the node says what to set, on its status and once in the log, and
 * never fails at deploy. The variable comes from the field's `${VAR}`; a field written as a
 * literal is named instead.
 */
import type { Node, NodeStatus } from 'node-red';
import { unsetVariable } from './fields';
import type { Translate } from './i18n';

export interface NotConfigured {
  /** English, for the log and done(err): "not configured: set CONFLUX_AMQP_URL". */
  reason: string;
  /** The status in the runtime's language. */
  status: NodeStatus;
}

/**
 * What to tell about the empty field `value` (`property` names it in the English reason,
 * `labelKey` is its label in the node's catalog for the status).
 */
export function notConfigured(t: Translate, value: unknown, property: string, labelKey: string): NotConfigured {
  const variable = unsetVariable(value);
  const reason = variable ? `not configured: set ${variable}` : `not configured: the ${property} field is empty`;
  const text = variable ? t('conflux.status.notConfigured', { variable }) : t('conflux.status.notConfiguredField', { field: t(labelKey) });
  return { reason, status: { fill: 'yellow', shape: 'ring', text: text.slice(0, 120) } };
}

/** Logs the reason once (a warning: the flow is fine, a server is missing) and returns it. */
export function reportNotConfigured(node: Node, missing: NotConfigured): NotConfigured {
  node.warn(missing.reason);
  return missing;
}

/** The status a user of a config node that has no connection shows: what to set, else the configuration's problem. */
export function unusableStatus(config: { notConfigured?: NotConfigured; problem?: string }, fallback: string): NodeStatus {
  return config.notConfigured?.status ?? { fill: 'red', shape: 'ring', text: (config.problem ?? fallback).slice(0, 100) };
}
