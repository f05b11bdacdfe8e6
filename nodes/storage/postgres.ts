/**
 * conflux-postgres: the connection to the business and mailbox database. Empty means the
 * embedded PGlite under the platform's data directory. Opens on first use, runs the migrations,
 * and is shared by every node that names it.
 */
import * as path from 'node:path';
import type { NodeAPI, NodeDef } from 'node-red';
import type { PostgresConfigNode, PostgresCredentials } from '../shared/config-nodes';
import { migrate } from '../core/db/migrate';
import { openCopier, type Copier } from '../core/db/copy';
import { isServerConfig, openSql, type SqlClient, type SqlConfig } from '../core/db/sql';
import { watchMailboxes } from '../core/metrics/metrics';
import { acquire, type Lease } from '../core/stores/shared';
import { boolField, intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { StatusFanout } from '../shared/status-fanout';

interface PostgresDef extends NodeDef {
  url?: string;
  host?: string;
  port?: string;
  database?: string;
  poolSize?: string;
  tls?: boolean | string;
  tlsVerify?: boolean | string;
  ca?: string;
}

const PING_MS = 15_000;

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  /** The embedded database's folder: under Conflux's data dir, else Node-RED's userDir, else in memory. */
  function embeddedDir(): string {
    const settings = RED.settings as unknown as { conflux?: { dataDir?: string }; userDir?: string };
    const base = settings.conflux?.dataDir ?? settings.userDir;
    return base ? path.join(base, 'pglite') : 'memory://';
  }

  function PostgresNode(this: PostgresConfigNode, def: PostgresDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const creds = node.credentials ?? {};
    const tls = boolField(def.tls);
    const config: SqlConfig = {
      connectionString: textField(def.url),
      host: textField(def.host),
      port: intField(def.port, 5432, 1, 65535),
      database: textField(def.database) || undefined,
      user: textField(creds.user) || undefined,
      password: creds.password || undefined,
      poolSize: intField(def.poolSize, 10, 1, 100),
      tls: tls ? { rejectUnauthorized: boolField(def.tlsVerify, true), ca: textField(def.ca) || undefined } : undefined,
      applicationName: 'conflux',
    };
    const embedded = !isServerConfig(config);
    const dir = embeddedDir();
    const label = embedded ? `embedded (PGlite${dir === 'memory://' ? ', in memory' : ''})` : 'PostgreSQL';
    // A key the editor translates into the browser's language (a config node's status shows on other nodes: common catalog).
    const shown = embedded ? (dir === 'memory://' ? 'conflux.status.embeddedMemory' : 'conflux.status.embedded') : 'PostgreSQL';
    (node as { embedded: boolean }).embedded = embedded;
    // PGlite is one set of files: every config node naming the embedded store shares it.
    const key = embedded && dir !== 'memory://' ? `pglite:${dir}` : `postgres:${node.id}`;
    (node as { identity: string }).identity = key;
    (node as { connection: StatusFanout }).connection = new StatusFanout();

    let lease: Lease<Database> | undefined;
    let ping: NodeJS.Timeout | undefined;
    let closed = false;

    /** The database and, on a server, a COPY channel to it for bulk writes. */
    interface Database {
      sql: SqlClient;
      copier?: Copier;
      /** Stops reporting its mailboxes to /metrics. */
      unwatch: () => void;
    }

    function open(): Lease<Database> {
      return acquire(
        key,
        async () => {
          const db = await openSql({ ...config, dataDir: embedded ? dir : undefined });
          try {
            await migrate(db);
          } catch (err) {
            await db.close();
            throw err;
          }
          return { sql: db, copier: embedded ? undefined : openCopier(config), unwatch: watchMailboxes(db) };
        },
        async ({ sql, copier, unwatch }) => {
          unwatch();
          await copier?.close();
          await sql.close();
        },
      );
    }

    node.sql = () => database().then((d) => d.sql);
    node.copier = () => database().then((d) => d.copier);

    function database(): Promise<Database> {
      if (closed) return Promise.reject(new Error('the database connection is closed'));
      if (!lease) {
        const mine = (lease = open());
        mine.value.then(
          () => {
            node.connection.connected(shown);
            if (!embedded && !ping) ping = setInterval(check, PING_MS);
          },
          (err: Error) => {
            if (lease === mine) lease = undefined; // try again on the next use
            void mine.release();
            node.connection.failed(`${t(shown)}: ${err.message}`);
            node.warn(`cannot open ${label}: ${err.message}`);
          },
        );
      }
      return lease.value;
    }

    function check(): void {
      lease?.value
        .then((db) => db.sql.query('SELECT 1'))
        .then(
          () => node.connection.connected(shown),
          (err: Error) => node.connection.failed(`${t(shown)}: ${err.message}`),
        );
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      if (ping) clearInterval(ping);
      const held = lease;
      lease = undefined;
      node.connection
        .drained()
        .then(() => held?.release())
        .catch((err: Error) => node.warn(`closing ${label}: ${err.message}`))
        .finally(done);
    });
  }

  RED.nodes.registerType<PostgresConfigNode, PostgresDef, unknown, PostgresCredentials>('conflux-postgres', PostgresNode, {
    credentials: { user: { type: 'text' }, password: { type: 'password' } },
  });
};
