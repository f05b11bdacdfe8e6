/**
 * Conflux killed with SIGKILL while consuming: the messages it had not acknowledged are delivered
 * again. A child process runs a Node-RED runtime (test/support/red-runtime.ts) with conflux-amqp-in
 * → a function node that takes its time and prints `got <id>` on arrival and `done <id>` when it
 * finishes (completion, hence the ack, follows `done`). After some are done the child is killed;
 * then every message not done by the child must still be in the queue, and those it held in the
 * flow come back marked redelivered. The kill comes once 100 are done and at least 10 are in the flow.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as amqp from 'amqplib';
import { declareCustomer, declareExchanges, DEFAULT_TOPOLOGY, queueName } from '../../nodes/core/amqp/topology';
import { amqpUrl } from '../support/servers';

const TOTAL = 300;
const KILL_AFTER_DONE = 100;

describe('AMQP: SIGKILL while consuming', function () {
  this.timeout(120_000);

  it('delivers again every message the killed consumer had not acknowledged', async () => {
    const customer = `crash-${process.pid}-${Date.now()}`;
    const queue = queueName(DEFAULT_TOPOLOGY, customer);
    const conn = await amqp.connect(amqpUrl());
    const ch = await conn.createConfirmChannel();
    await declareExchanges(ch, DEFAULT_TOPOLOGY);
    await declareCustomer(ch, DEFAULT_TOPOLOGY, customer);
    const ids = Array.from({ length: TOTAL }, (_, i) => `m${String(i).padStart(4, '0')}`);
    for (const [i, id] of ids.entries()) {
      const body = {
        type: 'eapi_measurement_new',
        data: { deviceId: 'd1', sensorId: 1, value: i, unit: '°C', unitType: 'temperature', timeStamp: '2026-01-01T00:00:00+00:00' },
      };
      ch.publish(DEFAULT_TOPOLOGY.exchange, `${customer}.eapi_measurement_new`, Buffer.from(JSON.stringify(body)), { messageId: id, persistent: true });
    }
    await ch.waitForConfirms();

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-amqp-crash-'));
    const flowFile = path.join(dir, 'flow.json');
    fs.writeFileSync(
      flowFile,
      JSON.stringify([
        { id: 'tab', type: 'tab' },
        { id: 'mq', type: 'conflux-amqp', urls: amqpUrl() },
        { id: 'in', type: 'conflux-amqp-in', z: 'tab', amqp: 'mq', queue, codec: 'eapi', prefetch: '20', wires: [['slow']] },
        {
          id: 'slow',
          type: 'function',
          z: 'tab',
          outputs: 1,
          // Finishes each message 20 ms after it arrived; node.done() marks the completion.
          func: 'console.log("got " + msg.messageId); setTimeout(() => { console.log("done " + msg.messageId); node.done(); }, 20); return null;',
          wires: [[]],
        },
      ]),
    );
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'support', 'red-runtime.js'), flowFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let errors = '';
    child.stderr!.on('data', (d: Buffer) => (errors += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const got = new Set<string>();
    const done = new Set<string>();
    try {
      await new Promise<void>((resolve, reject) => {
        readline.createInterface({ input: child.stdout! }).on('line', (line) => {
          const m = /^(got|done) (\S+)$/.exec(line);
          if (!m) return;
          (m[1] === 'got' ? got : done).add(m[2]);
          // Killed once enough are done and some are in the flow.
          if (done.size >= KILL_AFTER_DONE && got.size - done.size >= 10 && child.signalCode === null) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.once('exit', (code) => reject(new Error(`the Node-RED child exited (${code}) before it was killed: ${errors}`)));
      });
      await exited;

      // What the killed child had not finished is in the queue again (or never left it).
      const held = [...got].filter((id) => !done.has(id));
      const back = new Map<string, boolean>(); // id → redelivered
      const reader = await conn.createChannel();
      for (;;) {
        const m = await reader.get(queue, { noAck: true });
        if (m === false) break;
        back.set(m.properties.messageId as string, m.fields.redelivered);
      }
      const lost = ids.filter((id) => !done.has(id) && !back.has(id));
      assert.deepEqual(lost, [], `${lost.length} messages neither finished by the killed consumer nor in the queue again`);
      assert.ok(held.length > 0, 'the child held messages in its flow when it was killed');
      assert.ok(
        held.every((id) => back.get(id) === true),
        'the ones it held come back marked redelivered',
      );
      console.log(
        `      killed after ${done.size} done: ${held.length} were in the flow, ${back.size} back in the queue (${TOTAL - done.size} expected at least; ${back.size - (TOTAL - done.size)} done but not yet acknowledged)`,
      );
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await conn.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
