/**
 * SCRAM-SHA-256 key derivation (RFC 5802, RFC 7677) with node:crypto. The server stores only
 * what deriveScramKeys returns (salt, iterations, StoredKey, ServerKey), never the key itself;
 * a device proves it holds the key over a server nonce (DESIGN.md, Security):
 *
 *   SaltedPassword  = PBKDF2-HMAC-SHA-256(Normalize(key), salt, iterations, 32)
 *   ClientKey       = HMAC(SaltedPassword, "Client Key")
 *   StoredKey       = SHA-256(ClientKey)
 *   ServerKey       = HMAC(SaltedPassword, "Server Key")
 *   ClientSignature = HMAC(StoredKey, AuthMessage)
 *   ClientProof     = ClientKey XOR ClientSignature
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * Normalize is SASLprep (RFC 4013). Its two mapping steps and NFKC are applied exactly as the
 * RFC says (the bytes a device must hash: an ASCII key is hashed as it is). Its prohibition and
 * bidirectional checks only ever refuse a key; this module refuses a little more than the RFC:
 * control, private-use, non-character, surrogate, tagging and unassigned code points, and any
 * right-to-left character. A key it accepts derives the same bytes as any conforming SASLprep.
 *
 * Framework-free; the handshake (nonces, message parsing) builds on these functions.
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/** RFC 7677 section 4: at least 4096 iterations. */
export const SCRAM_MIN_ITERATIONS = 4096;
/** An upper bound, so a stored row cannot make a login cost seconds of CPU. */
export const SCRAM_MAX_ITERATIONS = 10_000_000;
/** Salt length deriveScramKeys draws when none is given. */
export const SCRAM_SALT_BYTES = 16;

export interface ScramKeys {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export interface ScramOptions {
  /** Default: 16 random bytes. */
  salt?: Buffer;
  /** Default and minimum 4096. */
  iterations?: number;
}

// RFC 3454 table C.1.2 (non-ASCII space characters): mapped to U+0020.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
// RFC 3454 table B.1 (commonly mapped to nothing): removed.
// eslint-disable-next-line no-misleading-character-class
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
// Refused after mapping: controls (C.2.1, C.2.2), private use (C.3), non-characters (C.4),
// surrogates (C.5), C.6 to C.9, format characters, and unassigned code points (A.1, as of the
// running Unicode version).
const PROHIBITED = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Cn}\u0340\u0341\u2028\u2029\u2FF0-\u2FFB\uFFF9-\uFFFD\u{E0001}\u{E0020}-\u{E007F}]/u;
// Right-to-left scripts' blocks (RFC 3454 D.1 lies within them): refused rather than bidi-checked.
const RIGHT_TO_LEFT = /[\u0590-\u08FF\u200F\uFB1D-\uFDFF\uFE70-\uFEFE\u{10800}-\u{10FFF}\u{1E800}-\u{1EFFF}]/u;

/**
 * SASLprep (RFC 4013) as described in the module comment. Throws a TypeError naming the first
 * refused code point, or when nothing is left.
 */
export function saslprep(key: string): string {
  if (typeof key !== 'string') throw new TypeError('SCRAM key must be a string');
  const mapped = key.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  const bad = PROHIBITED.exec(mapped) ?? RIGHT_TO_LEFT.exec(mapped);
  if (bad) {
    const cp = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new TypeError(`SCRAM key contains a prohibited character U+${cp}`);
  }
  if (mapped.length === 0) throw new TypeError('SCRAM key is empty');
  return mapped;
}

function checkIterations(iterations: number): void {
  if (!Number.isSafeInteger(iterations) || iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS) {
    throw new RangeError(`SCRAM iterations must be an integer from ${SCRAM_MIN_ITERATIONS} to ${SCRAM_MAX_ITERATIONS}, got ${iterations}`);
  }
}

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** Normalize(key) as bytes, once salt and iterations are checked: PBKDF2's input. */
function hiInput(key: string, salt: Buffer, iterations: number): Buffer {
  checkIterations(iterations);
  if (!Buffer.isBuffer(salt) || salt.length === 0) throw new TypeError('SCRAM salt must be a non-empty Buffer');
  return Buffer.from(saslprep(key), 'utf8');
}

/** SaltedPassword = Hi(Normalize(key), salt, iterations). */
export function saltedPassword(key: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(hiInput(key, salt, iterations), salt, iterations, 32, 'sha256');
}

/** ClientKey = HMAC(SaltedPassword, "Client Key"): what the client side keeps. */
export function scramClientKey(salted: Buffer): Buffer {
  return hmac(salted, 'Client Key');
}

/** The salt, iterations and the two derived keys the server stores. */
export function deriveScramKeys(key: string, options: ScramOptions = {}): ScramKeys {
  const iterations = options.iterations ?? SCRAM_MIN_ITERATIONS;
  const salt = options.salt ?? randomBytes(SCRAM_SALT_BYTES);
  return storedForm(saltedPassword(key, salt, iterations), salt, iterations);
}

/**
 * deriveScramKeys with PBKDF2 on libuv's thread pool: the event loop goes on meanwhile, and
 * many keys derive on all cores (provisioning devices in bulk).
 */
export async function deriveScramKeysAsync(key: string, options: ScramOptions = {}): Promise<ScramKeys> {
  const iterations = options.iterations ?? SCRAM_MIN_ITERATIONS;
  const salt = options.salt ?? randomBytes(SCRAM_SALT_BYTES);
  return storedForm(await saltedPasswordAsync(key, salt, iterations), salt, iterations);
}

/** saltedPassword on libuv's thread pool. */
async function saltedPasswordAsync(key: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const normalized = hiInput(key, salt, iterations);
  return new Promise<Buffer>((resolve, reject) => pbkdf2(normalized, salt, iterations, 32, 'sha256', (err, out) => (err ? reject(err) : resolve(out))));
}

function storedForm(salted: Buffer, salt: Buffer, iterations: number): ScramKeys {
  return { salt: Buffer.from(salt), iterations, storedKey: sha256(scramClientKey(salted)), serverKey: hmac(salted, 'Server Key') };
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage): the client's side of the proof. */
export function clientProof(clientKey: Buffer, authMessage: string): Buffer {
  return xor(clientKey, hmac(sha256(clientKey), authMessage));
}

/**
 * Whether proof shows knowledge of the key behind storedKey for this AuthMessage: recovers
 * ClientKey = proof XOR HMAC(StoredKey, AuthMessage) and compares SHA-256(ClientKey) with
 * StoredKey in constant time.
 */
export function verifyClientProof(storedKey: Buffer, authMessage: string, proof: Buffer): boolean {
  if (!Buffer.isBuffer(proof) || proof.length !== 32 || storedKey.length !== 32) return false;
  const clientKey = xor(proof, hmac(storedKey, authMessage));
  return timingSafeEqual(sha256(clientKey), storedKey);
}

/**
 * Whether a key given in full (an MQTT password, an HTTP device token) is the one behind the
 * stored keys: derives StoredKey from it with the stored salt and iterations and compares in
 * constant time. PBKDF2 makes this cost what a SCRAM login costs the client, so it runs on libuv's
 * thread pool: a key checked on every MQTT CONNECT and HTTP request holds up no other device.
 */
export async function verifyKeyAgainst(stored: Pick<ScramKeys, 'salt' | 'iterations' | 'storedKey'>, key: string): Promise<boolean> {
  let salted: Buffer;
  try {
    salted = await saltedPasswordAsync(key, stored.salt, stored.iterations);
  } catch {
    return false; // a key saslprep refuses cannot be the right one
  }
  const derived = sha256(scramClientKey(salted));
  return derived.length === stored.storedKey.length && timingSafeEqual(derived, stored.storedKey);
}

/** ServerSignature = HMAC(ServerKey, AuthMessage): sent back so the client can check the server. */
export function serverSignature(serverKey: Buffer, authMessage: string): Buffer {
  return hmac(serverKey, authMessage);
}
