/**
 * The server side of a device's SCRAM-SHA-256 login (RFC 5802, RFC 7677), one instance per
 * connection, fed the text of the device's AUTH frames. Framework-free.
 *
 *   device  n,,n=<serial>,r=<cnonce>                       client-first
 *   server  r=<cnonce><snonce>,s=<salt b64>,i=<iterations>  server-first
 *   device  c=biws,r=<cnonce><snonce>,p=<proof b64>         client-final
 *   server  v=<server signature b64>                        server-final: logged in
 *     or    e=<error>                                       server-final: refused
 *
 * The server keeps only salted derived keys (StoredKey, ServerKey), so a copy of the database
 * lets no one log in; the proof binds a fresh server nonce, so a recorded login cannot be
 * replayed.
 *
 * Unknown devices: a serial that names no device (or a device without a valid key) gets a salt
 * derived from the serial with the gateway's secret, the usual iteration count, and after the
 * proof the same `e=invalid-proof` a wrong key gets: probing serials tells nothing. `e=unknown-user`
 * is therefore never sent.
 *
 * Key rotation: a device may hold two valid keys. Keys sharing a salt and iteration count are all
 * tried against the one proof. When they have different salts, a proof that matches none of the
 * first salt's keys is answered with a second server-first message (same nonce, the other salt)
 * instead of a server-final; the device computes its proof again over that message. So a device
 * must accept a server-first after its client-final (docs/protocol-tcp.md). Some unknown serials
 * get such a second round too (decided by the secret), so a second round does not prove a device
 * exists.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { SCRAM_MIN_ITERATIONS, SCRAM_SALT_BYTES, serverSignature, verifyClientProof, type ScramKeys } from '../auth/scram';
import type { DeviceDirectory, DeviceIdentity } from '../devices/directory';

/** Longest serial and client nonce accepted. */
export const MAX_SERIAL_CHARS = 256;
export const MAX_NONCE_CHARS = 256;
/** Random bytes in the server's part of the nonce. */
export const SERVER_NONCE_BYTES = 18;

export type ScramError =
  | 'invalid-encoding'
  | 'extensions-not-supported'
  | 'invalid-proof'
  | 'channel-binding-not-supported'
  | 'invalid-username-encoding'
  | 'no-resources'
  | 'other-error';

export type ScramStep =
  /** Send `reply` (a server-first message) and wait for the next client message. */
  | { kind: 'continue'; reply: string }
  /** Send `reply` (v=…): the device is who it says. */
  | { kind: 'ok'; reply: string; device: DeviceIdentity }
  /** Send `reply` (e=…) and close; `reason` is for the log, never for the device. */
  | { kind: 'failed'; reply: string; error: ScramError; reason: string };

export interface ScramServerOptions {
  directory: DeviceDirectory;
  /** Keys the fake salts of unknown serials; keep it for the gateway's lifetime. */
  secret: Buffer;
  /** The server part of the nonce; default SERVER_NONCE_BYTES random bytes, base64. For tests. */
  serverNonce?: () => string;
}

interface Round {
  salt: Buffer;
  iterations: number;
  keys: ScramKeys[];
  serverFirst: string;
}

const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/; // RFC 5802 "printable": no comma
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function fail(error: ScramError, reason: string): ScramStep {
  return { kind: 'failed', reply: `e=${error}`, error, reason };
}

/** saslname (RFC 5802): "=2C" is ",", "=3D" is "=", any other "=" is an error. */
function decodeSaslName(text: string): string | undefined {
  if (/=(?!2C|3D)/.test(text)) return undefined;
  return text.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

/** `a=b` attributes, split at commas (values never hold a comma). */
function attributes(text: string): Array<[string, string]> | undefined {
  const out: Array<[string, string]> = [];
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0])) return undefined;
    out.push([part[0], part.slice(2)]);
  }
  return out;
}

export class ScramServerSession {
  private state: 'first' | 'final' | 'done' = 'first';
  private clientFirstBare = '';
  private gs2Header = '';
  private nonce = '';
  private device: DeviceIdentity | undefined;
  private rounds: Round[] = [];
  private round = 0;

  constructor(private readonly options: ScramServerOptions) {}

  /** Whether the handshake has ended (logged in or refused). */
  get finished(): boolean {
    return this.state === 'done';
  }

  /** The serial the client named, once its first message was read. */
  serial: string | undefined;

  /**
   * The next step for a client message. Never throws: a malformed message, or a directory that
   * cannot answer, is a failed step. Call it again only after the previous call resolved.
   */
  async step(message: string): Promise<ScramStep> {
    try {
      if (this.state === 'first') {
        const out = await this.clientFirst(message);
        this.state = out.kind === 'continue' ? 'final' : 'done';
        return out;
      }
      if (this.state === 'final') {
        const out = this.clientFinal(message);
        this.state = out.kind === 'continue' ? 'final' : 'done';
        return out;
      }
      return fail('other-error', 'the handshake is already over');
    } catch (err) {
      this.state = 'done';
      return fail('other-error', `authentication failed: ${(err as Error).message}`);
    }
  }

  private async clientFirst(message: string): Promise<ScramStep> {
    // gs2-header: cbind-flag "," [authzid] ","
    const first = message.indexOf(',');
    const second = first < 0 ? -1 : message.indexOf(',', first + 1);
    if (second < 0) return fail('invalid-encoding', 'client-first message: expected "n,,n=<serial>,r=<nonce>"');
    const flag = message.slice(0, first);
    const authzid = message.slice(first + 1, second);
    if (flag.startsWith('p=')) return fail('channel-binding-not-supported', 'client-first message: channel binding is not supported');
    if (flag !== 'n' && flag !== 'y') return fail('invalid-encoding', `client-first message: unknown channel-binding flag "${flag.slice(0, 20)}"`);
    if (authzid !== '') return fail('other-error', 'client-first message: an authorization identity (a=) is not supported');
    this.gs2Header = message.slice(0, second + 1);
    const bare = message.slice(second + 1);
    const attrs = attributes(bare);
    if (!attrs) return fail('invalid-encoding', 'client-first message: malformed attributes');
    if (attrs[0]?.[0] === 'm') return fail('extensions-not-supported', 'client-first message: mandatory extension (m=) not supported');
    if (attrs.length < 2 || attrs[0][0] !== 'n' || attrs[1][0] !== 'r') return fail('invalid-encoding', 'client-first message: expected n=<serial>,r=<nonce>');
    const serial = decodeSaslName(attrs[0][1]);
    if (serial === undefined || serial === '') return fail('invalid-username-encoding', 'client-first message: the serial (n=) is empty or badly escaped');
    if (serial.length > MAX_SERIAL_CHARS) return fail('invalid-username-encoding', `client-first message: serial longer than ${MAX_SERIAL_CHARS} characters`);
    const cnonce = attrs[1][1];
    if (cnonce.length > MAX_NONCE_CHARS || !PRINTABLE.test(cnonce)) {
      return fail('invalid-encoding', `client-first message: the nonce (r=) must be 1 to ${MAX_NONCE_CHARS} printable characters without a comma`);
    }
    this.serial = serial;
    this.clientFirstBare = bare;
    this.nonce = cnonce + (this.options.serverNonce ? this.options.serverNonce() : randomBytes(SERVER_NONCE_BYTES).toString('base64'));

    const found = await this.options.directory.credentials(serial);
    const groups = new Map<string, Round>();
    for (const key of found?.keys ?? []) {
      const k = `${key.salt.toString('base64')}:${key.iterations}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { salt: key.salt, iterations: key.iterations, keys: [], serverFirst: '' }));
      g.keys.push(key);
    }
    if (groups.size > 0) {
      this.device = found!.device;
      this.rounds = [...groups.values()];
    } else {
      this.rounds = this.fakeRounds(serial);
    }
    for (const r of this.rounds) r.serverFirst = `r=${this.nonce},s=${r.salt.toString('base64')},i=${r.iterations}`;
    return { kind: 'continue', reply: this.rounds[0].serverFirst };
  }

  /** What an unknown serial is answered with: stable per serial and secret, like a real device's salt. */
  private fakeRounds(serial: string): Round[] {
    const mac = createHmac('sha256', this.options.secret).update(`conflux scram salt\u0000${serial}`).digest();
    const storedKey = createHmac('sha256', this.options.secret).update(`conflux scram stored key\u0000${serial}`).digest();
    const fake = (salt: Buffer): Round => ({
      salt,
      iterations: SCRAM_MIN_ITERATIONS,
      keys: [{ salt, iterations: SCRAM_MIN_ITERATIONS, storedKey, serverKey: storedKey }],
      serverFirst: '',
    });
    const rounds = [fake(mac.subarray(0, SCRAM_SALT_BYTES))];
    if ((mac[SCRAM_SALT_BYTES] & 7) === 0) rounds.push(fake(mac.subarray(SCRAM_SALT_BYTES, 2 * SCRAM_SALT_BYTES)));
    return rounds;
  }

  private clientFinal(message: string): ScramStep {
    const attrs = attributes(message);
    if (!attrs || attrs.length < 3) return fail('invalid-encoding', 'client-final message: expected c=<binding>,r=<nonce>,p=<proof>');
    const [c, r] = attrs;
    const p = attrs[attrs.length - 1];
    if (c[0] !== 'c' || r[0] !== 'r' || p[0] !== 'p') return fail('invalid-encoding', 'client-final message: expected c=<binding>,r=<nonce>,…,p=<proof>');
    if (c[1] !== Buffer.from(this.gs2Header, 'utf8').toString('base64')) {
      return fail('invalid-encoding', 'client-final message: the channel binding (c=) does not repeat the client-first header');
    }
    if (!BASE64.test(p[1])) return fail('invalid-encoding', 'client-final message: the proof (p=) is not base64');
    const proof = Buffer.from(p[1], 'base64');
    const withoutProof = message.slice(0, message.lastIndexOf(',p='));
    const round = this.rounds[this.round];
    const authMessage = `${this.clientFirstBare},${round.serverFirst},${withoutProof}`;
    let matched: ScramKeys | undefined;
    for (const key of round.keys) {
      if (verifyClientProof(key.storedKey, authMessage, proof) && !matched) matched = key; // every key is tried: no early exit to time
    }
    const nonceOk = r[1] === this.nonce;
    if (matched && nonceOk && this.device) {
      return { kind: 'ok', reply: `v=${serverSignature(matched.serverKey, authMessage).toString('base64')}`, device: this.device };
    }
    if (nonceOk && this.round + 1 < this.rounds.length) {
      this.round++;
      return { kind: 'continue', reply: this.rounds[this.round].serverFirst };
    }
    const why = !nonceOk ? 'the nonce is not this connection’s (a replayed login?)' : this.device ? 'wrong key' : 'no such device, or it has no valid key';
    return fail('invalid-proof', `device "${this.serial}": ${why}`);
  }
}
