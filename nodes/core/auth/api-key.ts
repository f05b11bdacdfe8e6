/**
 * API keys (DESIGN.md, Security): random, shown once, stored hashed, compared in constant time.
 *
 *   cfx_<8 chars>_<43 chars>
 *   └── prefix ──┘ └ secret ┘
 *
 * The prefix is "cfx_" and 6 random bytes in base64url: a visible, non-secret label stored in
 * clear (api_keys.prefix, unique) to find the key's row. The secret is 32 random bytes in
 * base64url. The stored hash is SHA-256 of the whole key, as UTF-8. A secret scanner can match
 * /cfx_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}/.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const API_KEY_TAG = 'cfx_';
/** "cfx_" + 8 characters. */
export const API_KEY_PREFIX_LENGTH = API_KEY_TAG.length + 8;
const API_KEY_FORMAT = /^cfx_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}$/;

export interface GeneratedApiKey {
  /** The key itself: give it to its owner once, never store it. */
  key: string;
  /** Its first 12 characters, stored to look the key up. */
  prefix: string;
  /** SHA-256 of the key: what is stored. */
  hash: Buffer;
}

export function generateApiKey(): GeneratedApiKey {
  const prefix = API_KEY_TAG + randomBytes(6).toString('base64url');
  const key = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { key, prefix, hash: hashApiKey(key) };
}

/** Whether key has the shape generateApiKey produces (says nothing about its validity). */
export function isApiKeyFormat(key: unknown): key is string {
  return typeof key === 'string' && API_KEY_FORMAT.test(key);
}

/** SHA-256 of the key as UTF-8. */
export function hashApiKey(key: string): Buffer {
  if (typeof key !== 'string') throw new TypeError('API key must be a string');
  return createHash('sha256').update(key, 'utf8').digest();
}

/** The lookup prefix of a well-formed key; undefined for anything else. */
export function apiKeyPrefix(key: unknown): string | undefined {
  return isApiKeyFormat(key) ? key.slice(0, API_KEY_PREFIX_LENGTH) : undefined;
}

/**
 * Constant-time equality of two secrets (strings as UTF-8). Both sides are hashed first, so the
 * time depends on neither their contents nor their lengths; equal digests mean equal bytes.
 */
export function safeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const digest = (x: string | Uint8Array) => createHash('sha256').update(x).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** Whether key hashes to storedHash, compared in constant time. */
export function verifyApiKey(key: string, storedHash: Uint8Array): boolean {
  return typeof key === 'string' && safeEqual(hashApiKey(key), storedHash);
}
