/**
 * One FTP connection's work over basic-ftp: log in (plain, explicit TLS with AUTH TLS, or
 * implicit TLS; passive data connections, the only mode basic-ftp has and the one that crosses
 * firewalls and NAT), and put a file so that no reader ever sees part of it: the bytes go to a
 * temporary name in the same folder, then RNFR/RNTO gives them the final name. The temporary
 * name is fixed per delivery and file, so a retry after a crash overwrites the same leftover and
 * renames it away: the folder ends with one whole file. Framework-free.
 */
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { Client, FTPError } from 'basic-ftp';
import { posix } from 'node:path';
import type { FtpTarget } from './targets';

export { Client as FtpClient } from 'basic-ftp';

/** The folder each connection is in (MKD and CWD are skipped when the next file goes to the same one). */
const cwdOf = new WeakMap<Client, string>();

export async function connectFtp(target: FtpTarget, timeoutMs: number): Promise<Client> {
  const client = new Client(timeoutMs);
  try {
    await client.access({
      host: target.host,
      port: target.port,
      user: target.user,
      password: target.password,
      secure: target.tls === 'none' ? false : target.tls === 'implicit' ? 'implicit' : true,
      secureOptions:
        target.tls === 'none'
          ? undefined
          : { ca: target.ca, rejectUnauthorized: target.rejectUnauthorized, ...(isIP(target.host) ? {} : { servername: target.host }) },
    });
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}

/**
 * Ends a connection politely (QUIT) and resolves once its socket has closed, after the server
 * closed its end: until then the server still counts it. After timeoutMs it is cut.
 */
export function closeFtp(client: Client, timeoutMs: number): Promise<void> {
  const socket = client.ftp.socket;
  if (client.closed || socket.destroyed) {
    client.close();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(cut);
      client.close();
      resolve();
    };
    // The server's FIN after its 221 (basic-ftp drops every listener of the socket when it sees
    // it, but not those of the event under way: 'end' reaches this one).
    socket.once('end', finish);
    socket.once('error', finish);
    const cut = setTimeout(finish, timeoutMs);
    client.send('QUIT').catch(finish);
  });
}

/** How a pool of FTP connections opens and ends them (nodes/core/ftp/pool.ts). */
export function ftpConnections(timeoutMs: number): { connect(target: FtpTarget): Promise<Client>; dispose(client: Client): Promise<void> } {
  return { connect: (target) => connectFtp(target, timeoutMs), dispose: (client) => closeFtp(client, Math.min(timeoutMs, 5_000)) };
}

/** `.name.<tag>.part` beside the final name: hidden from most listings, unique per delivery. */
export function temporaryName(base: string, tag: string): string {
  return `.${base}.${tag}.part`;
}

/** Puts data at the absolute remote path through a temporary name; tag makes the temporary name this delivery's. */
export async function putAtomic(client: Client, path: string, data: Buffer, tag: string): Promise<void> {
  const dir = posix.dirname(path);
  const base = posix.basename(path);
  if (cwdOf.get(client) !== dir) {
    cwdOf.delete(client);
    await client.ensureDir(dir);
    cwdOf.set(client, dir);
  }
  const temp = temporaryName(base, tag);
  await client.uploadFrom(Readable.from([data]), temp);
  try {
    await client.rename(temp, base);
  } catch (err) {
    // Some servers refuse to rename onto an existing file: remove the old one (a previous
    // delivery's, or this one's from an attempt whose answer was lost) and rename again.
    if (!(err instanceof FTPError) || err.code < 500) throw err;
    await client.remove(base, true);
    await client.rename(temp, base);
  }
}

/**
 * Whether an error says the server refused this one request (a permanent 5xx reply to a command)
 * rather than that the server, the network or the login failed: only the latter count against
 * the target's backoff.
 */
export function isRequestRefusal(err: unknown): boolean {
  return err instanceof FTPError && err.code >= 500 && err.code !== 530 && err.code !== 421;
}
