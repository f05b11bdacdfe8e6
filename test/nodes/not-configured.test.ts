/**
 * A shipped flow imported where its server is not configured (CONFLUX_AMQP_URL, CONFLUX_XMPP_JID,
 * CONFLUX_FTP_HOST, CONFLUX_PULL_URL unset): every node that needs it says which variable to set,
 * in its status, and the deploy logs no error — a warning once per config node.
 */
import { strict as assert } from 'node:assert';
import { catchNode, helper } from '../support/node-red';
import { freshDatabase } from '../support/servers';
import { until } from '../support/wait';
import postgresNode = require('../../nodes/storage/postgres');
import amqpNode = require('../../nodes/amqp/amqp');
import amqpOutNode = require('../../nodes/amqp/amqp-out');
import amqpInNode = require('../../nodes/amqp/amqp-in');
import xmppNode = require('../../nodes/xmpp/xmpp');
import xmppOutNode = require('../../nodes/xmpp/xmpp-out');
import xmppInNode = require('../../nodes/xmpp/xmpp-in');
import ftpNode = require('../../nodes/ftp/ftp');
import ftpOutNode = require('../../nodes/ftp/ftp-out');
import httpPullNode = require('../../nodes/pull/http-pull');

type Status = { fill?: string; shape?: string; text: string };

/** Every status a node showed (the helper spies on the prototype's status). */
function statusesOf(id: string): Status[] {
  const node = helper.getNode(id);
  const spy = (node as unknown as { status: { args: Array<[Status]>; thisValues: unknown[] } }).status;
  return spy.args.filter((_, i) => spy.thisValues[i] === node).map(([s]) => s);
}

const lastStatus = (id: string): Status | undefined => statusesOf(id).at(-1);

function logged(level: number): string[] {
  const spy = helper.log() as unknown as { args: Array<[{ level: number; msg: unknown }]> };
  return spy.args.filter(([e]) => e.level === level).map(([e]) => String(e.msg));
}

describe('nodes whose server is not configured', function () {
  this.timeout(30_000);
  let db: string;
  before(async () => {
    for (const name of ['CONFLUX_UNSET_AMQP_URL', 'CONFLUX_UNSET_XMPP_JID', 'CONFLUX_UNSET_FTP_HOST', 'CONFLUX_UNSET_PULL_URL']) delete process.env[name];
    db = await freshDatabase();
  });
  afterEach(async () => {
    await helper.unload();
  });

  const flow = () => [
    { id: 'tab', type: 'tab' },
    { id: 'db', type: 'conflux-postgres', url: db },
    { id: 'amqp', type: 'conflux-amqp', urls: '${CONFLUX_UNSET_AMQP_URL}' },
    { id: 'amqp-literal', type: 'conflux-amqp', urls: '' },
    { id: 'aout', type: 'conflux-amqp-out', z: 'tab', amqp: 'amqp', database: 'db', wires: [[]] },
    { id: 'ain', type: 'conflux-amqp-in', z: 'tab', amqp: 'amqp', queue: 'q', wires: [[]] },
    { id: 'ain-literal', type: 'conflux-amqp-in', z: 'tab', amqp: 'amqp-literal', queue: 'q', wires: [[]] },
    { id: 'xmpp', type: 'conflux-xmpp', jid: '${CONFLUX_UNSET_XMPP_JID}', host: '', port: '' },
    { id: 'xout', type: 'conflux-xmpp-out', z: 'tab', xmpp: 'xmpp', database: 'db', wires: [[]] },
    { id: 'xin', type: 'conflux-xmpp-in', z: 'tab', xmpp: 'xmpp', database: 'db', wires: [[]] },
    { id: 'ftp', type: 'conflux-ftp', host: '${CONFLUX_UNSET_FTP_HOST}', secure: 'explicit' },
    { id: 'fout', type: 'conflux-ftp-out', z: 'tab', ftp: 'ftp', database: 'db', wires: [[]] },
    { id: 'pull', type: 'conflux-http-pull', z: 'tab', database: 'db', url: '${CONFLUX_UNSET_PULL_URL}', wires: [[]] },
    { id: 'pull-path', type: 'conflux-http-pull', z: 'tab', database: 'db', url: '${CONFLUX_UNSET_PULL_URL}/readings', wires: [[]] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: ['pull'], wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];

  it('shows "not configured: set <variable>" on every node, and logs a warning, no error', async () => {
    await helper.load(
      [postgresNode, amqpNode, amqpOutNode, amqpInNode, xmppNode, xmppOutNode, xmppInNode, ftpNode, ftpOutNode, httpPullNode, catchNode],
      flow(),
    );
    const expected: Record<string, string> = {
      aout: 'CONFLUX_UNSET_AMQP_URL',
      ain: 'CONFLUX_UNSET_AMQP_URL',
      xout: 'CONFLUX_UNSET_XMPP_JID',
      xin: 'CONFLUX_UNSET_XMPP_JID',
      fout: 'CONFLUX_UNSET_FTP_HOST',
      pull: 'CONFLUX_UNSET_PULL_URL',
      'pull-path': 'CONFLUX_UNSET_PULL_URL',
    };
    for (const [id, variable] of Object.entries(expected)) {
      await until(
        () => `${id} to say "not configured: set ${variable}" (it shows ${JSON.stringify(lastStatus(id))})`,
        () => lastStatus(id)?.text === `not configured: set ${variable}`,
      );
      assert.equal(lastStatus(id)?.fill, 'yellow', id);
    }
    assert.equal(lastStatus('ain-literal')?.text, 'not configured: URLs is empty', 'a field written as a literal is named');
    // The status timer of an out node (every second) shows it again after the database's status, never a count.
    const seen = statusesOf('aout').length;
    await until('two status refreshes of amqp-out', () => statusesOf('aout').length > seen + 1, 5_000);
    assert.equal(lastStatus('aout')?.text, 'not configured: set CONFLUX_UNSET_AMQP_URL');
    assert.ok(
      statusesOf('aout').every((s) => !/published/.test(s.text)),
      JSON.stringify(statusesOf('aout')),
    );

    const warnings = logged(30);
    for (const variable of ['CONFLUX_UNSET_AMQP_URL', 'CONFLUX_UNSET_XMPP_JID', 'CONFLUX_UNSET_FTP_HOST', 'CONFLUX_UNSET_PULL_URL'])
      assert.ok(
        warnings.some((w) => w === `not configured: set ${variable}`),
        `a warning names ${variable}: ${JSON.stringify(warnings)}`,
      );
    assert.equal(warnings.filter((w) => w === 'not configured: set CONFLUX_UNSET_AMQP_URL').length, 1, 'once, by the config node');
    assert.deepEqual(logged(20), [], 'no error at deploy');
  });

  it('fails a pull run to the Catch node with the variable to set', async () => {
    await helper.load(
      [postgresNode, httpPullNode, catchNode],
      flow().filter((n) => ['tab', 'db', 'pull', 'catcher', 'caught'].includes(n.id)),
    );
    const caught = new Promise<Record<string, any>>((resolve) => helper.getNode('caught').once('input', resolve));
    helper.getNode('pull').receive({ payload: 'run' });
    const msg = await caught;
    assert.match(msg.error.message, /not configured: set CONFLUX_UNSET_PULL_URL/);
  });
});
