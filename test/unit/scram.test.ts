/** SCRAM-SHA-256 derivation against RFC 7677's example, and the normalization rules. */
import * as assert from 'node:assert/strict';
import {
  clientProof,
  deriveScramKeys,
  deriveScramKeysAsync,
  saltedPassword,
  saslprep,
  scramClientKey,
  serverSignature,
  verifyClientProof,
  verifyKeyAgainst,
} from '../../nodes/core/auth/scram';

// RFC 7677 section 3: user "user", password "pencil".
const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
const clientFirstBare = 'n=user,r=rOprNGfwEbeRWgbNEkqO';
const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const clientFinalWithoutProof = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const authMessage = `${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`;
const rfcProof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
const rfcServerSignature = '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

describe('SCRAM-SHA-256 (RFC 7677)', () => {
  const keys = deriveScramKeys('pencil', { salt, iterations: 4096 });

  it('derives keys that verify the RFC client proof', () => {
    assert.deepEqual([keys.salt, keys.iterations, keys.storedKey.length, keys.serverKey.length], [salt, 4096, 32, 32]);
    assert.equal(verifyClientProof(keys.storedKey, authMessage, rfcProof), true);
  });

  it('derives the server key that produces the RFC server signature', () => {
    assert.equal(serverSignature(keys.serverKey, authMessage).toString('base64'), rfcServerSignature);
  });

  it('computes the RFC client proof on the client side', () => {
    const clientKey = scramClientKey(saltedPassword('pencil', salt, 4096));
    assert.equal(clientProof(clientKey, authMessage).toString('base64'), rfcProof.toString('base64'));
  });

  it('refuses a wrong proof, a wrong message, a wrong password, a short proof', () => {
    const flipped = Buffer.from(rfcProof);
    flipped[0] ^= 1;
    assert.equal(verifyClientProof(keys.storedKey, authMessage, flipped), false);
    assert.equal(verifyClientProof(keys.storedKey, authMessage + 'x', rfcProof), false);
    const other = deriveScramKeys('pencil2', { salt, iterations: 4096 });
    assert.equal(verifyClientProof(other.storedKey, authMessage, rfcProof), false);
    assert.notEqual(serverSignature(other.serverKey, authMessage).toString('base64'), rfcServerSignature);
    assert.equal(verifyClientProof(keys.storedKey, authMessage, rfcProof.subarray(0, 31)), false);
  });

  it('draws a fresh 16-byte salt and defaults to 4096 iterations', () => {
    const a = deriveScramKeys('k');
    const b = deriveScramKeys('k');
    assert.equal(a.iterations, 4096);
    assert.equal(a.salt.length, 16);
    assert.notDeepEqual(a.salt, b.salt);
    assert.notDeepEqual(a.storedKey, b.storedKey);
    // More iterations derive other keys from the same salt.
    assert.notDeepEqual(deriveScramKeys('pencil', { salt, iterations: 4097 }).storedKey, keys.storedKey);
  });

  it('refuses fewer than 4096 iterations, non-integers, and an empty salt', () => {
    assert.throws(() => deriveScramKeys('k', { iterations: 4095 }), RangeError);
    assert.throws(() => deriveScramKeys('k', { iterations: 4096.5 }), RangeError);
    assert.throws(() => deriveScramKeys('k', { salt: Buffer.alloc(0) }), TypeError);
  });

  it('derives the same keys off the event loop (deriveScramKeysAsync), with the same refusals', async () => {
    assert.deepEqual(await deriveScramKeysAsync('pencil', { salt, iterations: 4096 }), keys);
    const drawn = await deriveScramKeysAsync('k');
    assert.deepEqual(deriveScramKeys('k', { salt: drawn.salt }), drawn);
    await assert.rejects(deriveScramKeysAsync('k', { iterations: 4095 }), RangeError);
    await assert.rejects(deriveScramKeysAsync('k', { salt: Buffer.alloc(0) }), TypeError);
    await assert.rejects(deriveScramKeysAsync('\u0007'), TypeError);
  });

  it('checks a key given in full against the stored keys (verifyKeyAgainst): the right one, no other', async () => {
    assert.equal(await verifyKeyAgainst(keys, 'pencil'), true);
    assert.equal(await verifyKeyAgainst(keys, 'pencil2'), false);
    assert.equal(await verifyKeyAgainst(keys, ''), false); // saslprep refuses it: no match, no throw
    assert.equal(await verifyKeyAgainst(deriveScramKeys('pencil'), 'pencil'), true); // another salt
  });
});

describe('SASLprep for SCRAM keys', () => {
  it('leaves ASCII as it is', () => {
    assert.equal(saslprep('pencil P3ncil!~'), 'pencil P3ncil!~');
  });
  it('maps non-ASCII spaces to a space, drops mapped-to-nothing characters, applies NFKC', () => {
    assert.equal(saslprep('I\u00ADX'), 'IX'); // RFC 4013 example: soft hyphen
    assert.equal(saslprep('a\u00A0b\u3000c'), 'a b c');
    assert.equal(saslprep('\u2168'), 'IX'); // RFC 4013 example: ROMAN NUMERAL NINE
    assert.equal(saslprep('\u00AA'), 'a'); // RFC 4013 example
    // The same key written two ways derives the same keys.
    const s = Buffer.from('salt');
    assert.deepEqual(deriveScramKeys('\u2168', { salt: s }).storedKey, deriveScramKeys('IX', { salt: s }).storedKey);
  });
  it('refuses prohibited characters, right-to-left text and an empty key', () => {
    assert.throws(() => saslprep('a\u0007'), /U\+0007/); // RFC 4013 example
    assert.throws(() => saslprep('a\uE000'), /U\+E000/);
    assert.throws(() => saslprep('\u0627\u0031'), /U\+0627/); // RFC 4013 example (bidi)
    assert.throws(() => saslprep('\u00AD'), /empty/);
    assert.throws(() => deriveScramKeys(''), TypeError);
  });
});
