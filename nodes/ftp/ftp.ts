/**
 * conflux-ftp: one FTP or FTPS target — host, port, user and password (credentials), TLS (none,
 * explicit AUTH TLS, implicit), the CA from a tls-config node, the remote folder and how many
 * connections it takes. conflux-ftp-out nodes that name it deliver there; targets by the hundred
 * live in the business store instead (ftp_targets, docs/ftp.md).
 */
import type { NodeAPI, NodeDef } from 'node-red';
import { makeTarget, type TlsMode } from '../core/ftp/targets';
import type { FtpConfigNode, FtpCredentials } from '../shared/config-nodes';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { notConfigured, reportNotConfigured } from '../shared/not-configured';
import { tlsConfigOf } from '../shared/tls-config';

interface FtpDef extends NodeDef {
  host?: string;
  port?: string;
  secure?: string;
  folder?: string;
  maxConnections?: string;
  tls?: string;
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function FtpNode(this: FtpConfigNode, def: FtpDef) {
    RED.nodes.createNode(this, def);
    if (!textField(def.host)) {
      // No server (CONFLUX_FTP_HOST unset): the users say what to set.
      const missing = reportNotConfigured(this, notConfigured(t, def.host, 'host', 'ftp.label.host'));
      Object.assign(this, { problem: missing.reason, notConfigured: missing });
      return;
    }
    const creds = this.credentials ?? {};
    const tls: TlsMode = def.secure === 'explicit' || def.secure === 'implicit' ? def.secure : 'none';
    try {
      const options = tls === 'none' ? undefined : tlsConfigOf(RED, textField(def.tls) || undefined).client();
      const ca = options?.ca;
      const target = makeTarget({
        name: this.name || undefined,
        host: textField(def.host),
        port: intField(def.port, tls === 'implicit' ? 990 : 21, 1, 65_535),
        user: textField(creds.user),
        password: creds.password ?? '',
        tls,
        ca: ca === undefined ? undefined : Array.isArray(ca) ? ca.map(String).join('\n') : String(ca),
        rejectUnauthorized: options?.rejectUnauthorized !== false,
        folder: textField(def.folder),
        maxConnections: intField(def.maxConnections, 2, 1, 16),
      });
      Object.assign(this, { target });
    } catch (err) {
      Object.assign(this, { problem: `invalid FTP configuration: ${(err as Error).message}` });
    }
  }
  RED.nodes.registerType<FtpConfigNode, FtpDef, unknown, FtpCredentials>('conflux-ftp', FtpNode, {
    credentials: { user: { type: 'text' }, password: { type: 'password' } },
  });
};
