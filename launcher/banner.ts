/** What the platform logs once it is up: where the editor is and what runs embedded. Framework-free. */
import { editorUrl, isLoopback, type RuntimeConfig } from './config';
import { describeDefaults, type Env } from './defaults';
import { FIRST_FLOWS, type FirstFlowResult } from './first-start';
import type { CredentialSecret } from './secret';

export interface Banner {
  info: string[];
  warn: string[];
}

export function startupBanner(config: RuntimeConfig, env: Env, secret: CredentialSecret, firstFlow: FirstFlowResult): Banner {
  const info = [
    config.editor
      ? `Conflux editor: ${editorUrl(config.host, config.port)}`
      : `Conflux instance: ${editorUrl(config.host, config.port)} (CONFLUX_EDITOR=off: no editor, no admin API, the flows as the file has them)`,
    `data dir: ${config.dataDir}`,
    firstFlow === 'installed'
      ? `first start: deployed ${FIRST_FLOWS.map((f) => `flows/${f}`).join(' and ')} as ${config.flowFile}`
      : `flows: ${config.flowFile} (${config.sharedFlows ? 'CONFLUX_FLOWS_FILE' : 'kept as saved'})`,
    secret.source === 'env'
      ? 'credential secret: from CONFLUX_CREDENTIAL_SECRET'
      : `credential secret: ${secret.source === 'generated' ? 'generated, kept' : 'kept'} in ${secret.file} — or set CONFLUX_CREDENTIAL_SECRET`,
    config.adminPassword !== undefined
      ? `editor login: user "${config.adminUser}" (CONFLUX_ADMIN_PASSWORD)`
      : 'editor login: none — set CONFLUX_ADMIN_PASSWORD',
    ...describeDefaults(env),
  ];
  const warn: string[] = [];
  if (config.sharedFlows && secret.source !== 'env') {
    warn.push(
      'CONFLUX_FLOWS_FILE without CONFLUX_CREDENTIAL_SECRET: instances sharing the flows must share the secret that encrypts their credentials; set it on each',
    );
  }
  if (config.editor && config.adminPassword === undefined && !isLoopback(config.host)) {
    warn.push(`the editor listens on ${config.host} without a login: anyone who reaches it can change the flows; set CONFLUX_ADMIN_PASSWORD`);
  }
  if (config.editor && config.adminPassword === undefined && (config.host === '0.0.0.0' || config.host === '::') && config.allowedHosts.length === 0) {
    warn.push('without a login the editor answers only to 127.0.0.1, localhost and [::1]: list the names others reach it by in CONFLUX_ALLOWED_HOSTS');
  }
  return { info, warn };
}
