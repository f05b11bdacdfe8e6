/** API keys: shape, prefix, hash, constant-time comparison. */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { apiKeyPrefix, generateApiKey, hashApiKey, isApiKeyFormat, safeEqual, verifyApiKey } from '../../nodes/core/auth/api-key';

describe('API keys', () => {
  it('generates cfx_<8>_<43> keys whose prefix is the first 12 characters', () => {
    const { key, prefix, hash } = generateApiKey();
    assert.match(key, /^cfx_[A-Za-z0-9_-]{8}_[A-Za-z0-9_-]{43}$/);
    assert.equal(prefix, key.slice(0, 12));
    assert.equal(apiKeyPrefix(key), prefix);
    assert.deepEqual(hash, createHash('sha256').update(key).digest());
    assert.deepEqual(hashApiKey(key), hash);
    // 32 random bytes behind the prefix.
    assert.equal(Buffer.from(key.slice(13), 'base64url').length, 32);
  });

  it('draws a different key and prefix every time', () => {
    const keys = Array.from({ length: 50 }, () => generateApiKey());
    assert.equal(new Set(keys.map((k) => k.key)).size, 50);
    assert.equal(new Set(keys.map((k) => k.prefix)).size, 50);
  });

  it('gives no prefix for anything not shaped like a key', () => {
    const { key } = generateApiKey();
    for (const bad of ['', 'cfx_', key.slice(0, -1), key + 'x', 'xyz' + key.slice(3), key.replace('_', '-'), 42, null, undefined]) {
      assert.equal(apiKeyPrefix(bad), undefined, String(bad));
      assert.equal(isApiKeyFormat(bad), false);
    }
  });

  it('compares secrets by content, strings and bytes alike', () => {
    assert.equal(safeEqual('abc', 'abc'), true);
    assert.equal(safeEqual('abc', 'abd'), false);
    assert.equal(safeEqual('abc', 'abcd'), false);
    assert.equal(safeEqual('', ''), true);
    assert.equal(safeEqual(Buffer.from('é'), 'é'), true);
    assert.equal(safeEqual(Buffer.from([1, 2]), Buffer.from([1, 3])), false);
  });

  it('verifies a key against its stored hash only', () => {
    const a = generateApiKey();
    const b = generateApiKey();
    assert.equal(verifyApiKey(a.key, a.hash), true);
    assert.equal(verifyApiKey(b.key, a.hash), false);
    assert.equal(verifyApiKey(a.key.slice(0, -1) + (a.key.endsWith('A') ? 'B' : 'A'), a.hash), false);
  });
});
