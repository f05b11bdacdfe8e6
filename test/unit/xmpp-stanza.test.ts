/** The XMPP wire format: a flow message to its stanzas (ids, formats), and received stanzas classified and decoded. */
import { strict as assert } from 'node:assert';
import { CodecError } from '../../nodes/core/errors';
import type { ResolvedRecord } from '../../nodes/core/model/senml';
import { loadXml, type XmlBuilder } from '../../nodes/core/xmpp/client';
import { describeFailure } from '../../nodes/core/xmpp/connection';
import { checkPeer, classify, decodeBody, derivedId, messageStanza, outgoing, receiptStanza } from '../../nodes/core/xmpp/stanza';

const T = 1_764_000_000;
const records: ResolvedRecord[] = [
  { n: 'station1/temperature', t: T, u: 'Cel', v: 21.5 },
  { n: 'station1/temperature', t: T + 60, u: 'Cel', v: 21.75 },
  { n: 'station1/door', t: T, vb: true },
];

describe('xmpp: stanzas', () => {
  let xml: XmlBuilder;
  before(async () => {
    xml = await loadXml();
  });

  it('makes one Sen1 stanza per name and kind, ids suffixed :n, and reads them back', () => {
    const out = outgoing(records, { peer: checkPeer('Bob@Example.org/res'), format: 'sen1', messageId: 'm1', username: 'jdoe' });
    assert.deepEqual(
      out.map((s) => [s.peer, s.id, s.format]),
      [
        ['Bob@example.org', 'm1:0', 'sen1'],
        ['Bob@example.org', 'm1:1', 'sen1'],
      ],
    );
    const back = out.flatMap((s) => decodeBody(s.body).records);
    assert.deepEqual(back, records.slice(0, 2).concat(records.slice(2)));
    assert.equal(decodeBody(out[0].body).sen1?.username, 'jdoe');
  });

  it('makes one SenML XML stanza, with the message id as it is', () => {
    const [s, ...rest] = outgoing(records, { peer: 'bob@example.org', format: 'senml-xml', messageId: 'm2' });
    assert.equal(rest.length, 0);
    assert.equal(s.id, 'm2');
    const back = decodeBody(s.body);
    assert.equal(back.format, 'senml-xml');
    const byTime = (r: ResolvedRecord[]) => [...r].sort((x, y) => x.t - y.t || x.n.localeCompare(y.n));
    assert.deepEqual(byTime(back.records), byTime(records));
  });

  it('derives the same id for the same peer and body, another for another peer', () => {
    const a = outgoing(records.slice(0, 1), { peer: 'bob@example.org', format: 'sen1', username: 'u' })[0];
    const b = outgoing(records.slice(0, 1), { peer: 'bob@example.org', format: 'sen1', username: 'u' })[0];
    const c = outgoing(records.slice(0, 1), { peer: 'carol@example.org', format: 'sen1', username: 'u' })[0];
    assert.equal(a.id, b.id);
    assert.notEqual(a.id, c.id);
    assert.equal(a.id, derivedId('bob@example.org', a.body));
  });

  it('sends a Sen1Message object as it is, msg.sen1 overriding its header', () => {
    const [s] = outgoing(
      { username: 'jdoe', name: 'level', type: 'dt_integer', datas: [{ value: '3', timestamp: '2025-11-24 16:00:00' }] },
      { peer: 'bob@example.org', format: 'senml-xml', messageId: 'm3', sen1: { applicationDst: 'appB' } },
    );
    assert.equal(s.format, 'sen1');
    const back = decodeBody(s.body);
    assert.equal(back.sen1?.applicationDst, 'appB');
    assert.deepEqual(back.records, [{ n: 'level', t: 1_764_000_000, v: 3 }]);
  });

  it('refuses what it cannot send: no username for Sen1, not records, no peer JID', () => {
    assert.throws(() => outgoing(records, { peer: 'bob@example.org', format: 'sen1' }), CodecError);
    assert.throws(() => outgoing('text', { peer: 'bob@example.org', format: 'sen1', username: 'u' }), CodecError);
    for (const bad of ['', 'bob', '@example.org', 'bob@', 42]) assert.throws(() => checkPeer(bad), CodecError, String(bad));
    assert.equal(checkPeer('bob@Example.ORG/r1'), 'bob@example.org');
  });

  it('classifies a message with a receipt request, a receipt, and what is neither', () => {
    const [s] = outgoing(records.slice(0, 1), { peer: 'bob@example.org', format: 'sen1', messageId: 'm4', username: 'u' });
    const stanza = messageStanza(xml, s);
    stanza.attrs.from = 'alice@example.org/r1';
    const got = classify(stanza);
    assert.equal(got.kind, 'message');
    assert.ok(got.kind === 'message' && got.receipt && got.id === 'm4' && got.body === s.body);
    const receipt = receiptStanza(xml, 'alice@example.org/r1', 'm4');
    receipt.attrs.from = 'bob@example.org/r2';
    assert.deepEqual(classify(receipt), { kind: 'receipt', id: 'm4', from: 'bob@example.org/r2' });
    assert.equal(classify(xml('presence', { from: 'x@y' })).kind, 'other');
    assert.equal(classify(xml('message', { from: 'x@y', type: 'error', id: 'm4' }, xml('body', {}, s.body))).kind, 'other');
    assert.equal(classify(xml('message', { from: 'x@y' }, xml('body', {}, s.body))).kind, 'other', 'no id, no de-duplication: ignored');
  });

  it('accepts a Sen1Message as a child element instead of the body text', () => {
    const [s] = outgoing(records.slice(0, 1), { peer: 'bob@example.org', format: 'sen1', messageId: 'm5', username: 'u' });
    const child = xml(
      'Sen1Message',
      { xmlns: 'http://xmpp.rocks' },
      xml('username', {}, 'u'),
      xml('name', {}, 'station1/temperature'),
      xml('unite', {}, 'Cel'),
      xml('type', {}, 'dt_numeric'),
      xml('Sen1Datas', {}, xml('Sen1Data', {}, xml('value', {}, '21.5'), xml('timestamp', {}, '2025-11-24 16:00:00'))),
    );
    const got = classify(xml('message', { from: 'alice@example.org/r', id: 'm5' }, child));
    assert.equal(got.kind, 'message');
    assert.deepEqual(got.kind === 'message' && decodeBody(got.body).records, decodeBody(s.body).records);
  });

  it('says why a connection attempt failed in words an operator acts on', () => {
    assert.match(describeFailure(Object.assign(new Error('x'), { name: 'SASLError', condition: 'not-authorized' })), /login refused \(not-authorized\)/);
    assert.match(describeFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), /connection refused/);
  });
});
