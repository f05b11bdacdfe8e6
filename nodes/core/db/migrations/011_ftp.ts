/**
 * 011 — FTP delivery (issue 12, seed 002). 010 is the federation's.
 *
 * ftp_targets (from 001) gains
 *   client        the client (customer) it serves, as the source system names it: every user of
 *                 that client delivers here unless the user has a target of his own
 *   user_ref      the user it serves, as the source system names him (his own FTP server)
 *   password      the FTP password, stored as is (it must be sent), never returned (has_password);
 *                 secret_ref stays the alternative: the name of an environment variable
 *                 (env:CONFLUX_FTP_...) that holds it
 *   ca            PEM certificate(s) the server's TLS certificate must chain to (else the system's)
 *   archive       name rule of the zip that carries a delivery's files, e.g. {vin}.zip; null: the
 *                 files are sent one by one
 *   metadata      name rule of the metadata JSON (in the zip, or beside the files); null: none
 *   max_connections  connections open to this server at most (the pool's per-target bound)
 *   updated_at
 * protocol keeps its meaning: ftp (no TLS), ftpes (explicit TLS, AUTH TLS on the port, 21),
 * ftps (implicit TLS, 990). The naming default becomes the seed's {vin}_{nn:02}.{ext}.
 * One client target and one target per user at most (per tenant), so a delivery has one place.
 */
export const sql = /* sql */ `
ALTER TABLE ftp_targets
  ADD COLUMN client text CHECK (client <> ''),
  ADD COLUMN user_ref text CHECK (user_ref <> ''),
  ADD COLUMN password text,
  ADD COLUMN ca text,
  ADD COLUMN archive text CHECK (archive <> ''),
  ADD COLUMN metadata text CHECK (metadata <> ''),
  ADD COLUMN max_connections integer NOT NULL DEFAULT 2 CHECK (max_connections BETWEEN 1 AND 16),
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
  ALTER COLUMN naming SET DEFAULT '{vin}_{nn:02}.{ext}';
CREATE UNIQUE INDEX ftp_targets_client ON ftp_targets (tenant_id, client) WHERE user_ref IS NULL AND client IS NOT NULL;
CREATE UNIQUE INDEX ftp_targets_user ON ftp_targets (tenant_id, user_ref) WHERE user_ref IS NOT NULL;
`;
