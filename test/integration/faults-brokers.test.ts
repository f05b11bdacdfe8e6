/**
 * Fault tests (issue 14, item 2): the message brokers restarted mid-stream.
 *
 *  - MQTT: the platform as `npm start` runs it, a client of an external mosquitto
 *    (CONFLUX_MQTT_URL: conflux-mqtt-in in client mode, QoS 1, a persistent session), devices
 *    publishing QoS 1 to mosquitto (tools/device-load); mosquitto is stopped cleanly and started
 *    again (its persistence keeps Conflux's session and what is queued for it); the devices send
 *    again what mosquitto had not acknowledged. Accepted means acknowledged by the broker: every
 *    such reading must be stored once, and reach the webhook subscriber.
 *  - AMQP: a Node-RED child (test/support/red-runtime.ts) with conflux-amqp-in → time series →
 *    conflux-amqp-out (outbox on PostgreSQL); a publisher with confirms sends eapi measurements and
 *    sends again what was not confirmed; RabbitMQ stops and starts (servers.ts). Every confirmed
 *    message is stored once, and every one goes out again through the outbox to the customer's
 *    queue, no message id carrying two different bodies.
 *
 * Counts are printed and asserted. The brokers are started again in after hooks, whatever happened.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as amqp from 'amqplib';
import { declareCustomer, declareExchanges, DEFAULT_TOPOLOGY, queueName } from '../../nodes/core/amqp/topology';
import { openSql, type SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { MqttDevice } from '../../tools/device-client/mqtt';
import { DeviceLoad } from '../../tools/device-load/load';
import {
  assertReadingsKept,
  assertRunning,
  countsLine,
  editorFeed,
  faultDevices,
  nodeOf,
  outboxCounts,
  platformPorts,
  provision,
  readingCounts,
  writeFlow,
} from '../support/faults';
import { Mosquitto } from '../support/mosquitto';
import { start, stop, tempDataDir, type Platform } from '../support/platform';
import { amqpUrl, freshDatabase, startRabbitMQ, stopRabbitMQ } from '../support/servers';
import { until } from '../support/wait';
import { Receiver } from '../support/webhook-receiver';

const ACKS_BEFORE = 1_500;
const ACKS_AFTER = 1_000;
const SETTLE_MS = 120_000;
/** The server stays away until every device has failed this many times (sends or connections): a real outage, not a blip. */
const OUTAGE_FAILURES = 3;

describe('faults: message brokers restarted under load', function () {
  this.timeout(600_000);

  describe('MQTT broker (mosquitto) restarted, Conflux its client', () => {
    let dataDir = '';
    let platform: Platform | undefined;
    let receiver: Receiver | undefined;
    let load: DeviceLoad | undefined;
    let broker: Mosquitto | undefined;
    let feed: Awaited<ReturnType<typeof editorFeed>> | undefined;

    after(async () => {
      feed?.close();
      await load?.stop();
      await stop(platform);
      await receiver?.stop();
      await broker?.close();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('every reading the broker accepted is stored once and reaches the webhook; the client session resumes by itself', async () => {
      dataDir = tempDataDir();
      broker = await Mosquitto.start();
      const url = await freshDatabase();
      const open = (): Promise<SqlClient> => openSql({ connectionString: url, poolSize: 2 });
      receiver = await new Receiver().start();
      const devices = faultDevices('mqtt-restart', ['mqtt'], 6);
      const db = await open();
      try {
        await provision(db, devices, receiver.url);
        const mqttIn = nodeOf(writeFlow(dataDir), 'conflux-mqtt-in').id;
        const { vars, target } = await platformPorts();
        platform = await start({ ...vars, CONFLUX_DATA_DIR: dataDir, CONFLUX_POSTGRES_URL: url, CONFLUX_MQTT_URL: broker.url });
        feed = await editorFeed(platform.port);
        const handledByConflux = () => Number(/(\d+) readings/.exec((feed!.statuses.get(mqttIn) ?? []).at(-1)?.text ?? '')?.[1] ?? 0);

        // What a device publishes before Conflux subscribed is accepted by the broker and dropped
        // (no subscriber yet): probe until a probe is stored, then start counting.
        const probe = await MqttDevice.connect({ url: broker.url, serial: devices[0].serial, key: devices[0].key, reconnectPeriod: 0 });
        try {
          let n = 0;
          await until(
            'Conflux subscribed on the broker (a probe reading stored)',
            async () => {
              await probe.publish('senml+json', [{ n: 'probe/seq', v: ++n, t: Date.now() / 1000 }], { qos: 1 });
              const { rows } = await db.query(`SELECT 1 FROM readings WHERE name = $1 LIMIT 1`, [`${devices[0].serial}/probe/seq`]);
              return rows.length > 0;
            },
            60_000,
          );
        } finally {
          await probe.client.endAsync(true);
        }

        load = new DeviceLoad(devices, { window: 8 });
        load.start({ ...target, mqttPort: broker.port }, 'before');
        await until(
          () => `${ACKS_BEFORE} acknowledgements before the restart (errors: ${load!.errors.join('; ')})`,
          () => (assertRunning(platform!), load!.acked.total >= ACKS_BEFORE),
          SETTLE_MS,
        );

        const failuresAtStop = load.failures;
        const stoppedAt = Date.now();
        await broker.stop();
        // Down until Conflux's client says so and every device has failed to reach it a few times.
        await until(
          () => `every device to see the broker gone (failures ${load!.failures.join(',')} since ${failuresAtStop.join(',')}) and Conflux disconnected`,
          () =>
            (assertRunning(platform!), load!.failures.every((n, i) => n >= failuresAtStop[i] + OUTAGE_FAILURES)) &&
            (feed!.statuses.get(mqttIn) ?? []).some((st) => st.at >= stoppedAt && /^disconnected|^reconnecting/.test(st.text ?? '')),
          SETTLE_MS,
        );
        await broker.launch();
        const downMs = Date.now() - stoppedAt;

        const restartedAt = Date.now();
        load.start({ ...target, mqttPort: broker.port }, 'after');
        await until(
          () => `${ACKS_AFTER} acknowledgements after the restart (errors: ${load!.errors.join('; ')})`,
          () => (assertRunning(platform!), load!.acked.total >= ACKS_AFTER),
          SETTLE_MS,
        );
        load.stopGenerating();
        await load.settled(SETTLE_MS);
        await load.stop();

        // The broker accepted them; Conflux stores them as it gets them, the queued ones after it reconnected.
        const readings = load.readings;
        await until(
          'every reading the broker accepted stored, delivered to the webhook receiver, and the outbox empty',
          async () => {
            const { counts } = await readingCounts(db, readings);
            const o = await outboxCounts(db, receiver!.received, readings);
            return counts.stored === counts.accepted && o.missing === 0 && o.waiting === 0;
          },
          SETTLE_MS,
        );
        const recoveredMs = Date.now() - restartedAt;
        // What conflux-mqtt-in handed on in all ("n readings" in its status): beyond the readings,
        // the broker's redeliveries of what was handled but not yet acknowledged when it stopped.
        await until('the status to count every stored reading', () => handledByConflux() >= readings.length, SETTLE_MS);
        const handled = handledByConflux();
        assert.equal(await stop(platform), 0, `the platform did not stop cleanly:\n${platform.output().slice(-3000)}`);
        platform = undefined;
        const { counts, reports } = await readingCounts(db, readings);
        const outbox = await outboxCounts(db, receiver.received, readings);
        const resent = readings.filter((r) => r.attempts > 1).length;
        console.log(
          `      ${countsLine('mqtt-broker-restart', counts, outbox, { resent, handled_by_conflux: handled, down_ms: downMs, all_stored_ms: recoveredMs })}`,
        );
        assertReadingsKept('mqtt-broker-restart', reports);
        assert.equal(counts.accepted, counts.sent, 'every reading accepted by the broker in the end');
        assert.equal(counts.stored, counts.accepted);
        assert.equal(counts.duplicates, 0);
        assert.equal(outbox.missing, 0, 'every accepted reading reached the webhook receiver');
        assert.equal(outbox.waiting, 0, 'the outbox empty');
        assert.equal(outbox.dead, 0, 'no dead letters');
        assert.equal(outbox.delivered, outbox.enqueued, 'every outbox message delivered');
        assert.equal(outbox.conflicting, 0, 'no webhook id delivered as two different events');
      } finally {
        await db.close();
      }
    });
  });

  describe('RabbitMQ restarted, amqp in and out', () => {
    let dir = '';
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let publisher: ConfirmingPublisher | undefined;
    let rabbitDown = false;

    after(async () => {
      await publisher?.close();
      if (rabbitDown) await startRabbitMQ(); // whatever failed: the specs after this one need the broker
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('every confirmed message is stored once and goes out through the outbox; consumer and publisher reconnect by themselves', async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-faults-amqp-'));
      const tag = `${process.pid}${Date.now().toString(36)}`;
      const inCustomer = `faults-in-${tag}`;
      const outCustomer = `faults-out-${tag}`;
      const url = await freshDatabase();
      const db = await openSql({ connectionString: url, poolSize: 2 });
      try {
        await migrate(db);
        const setup = await amqp.connect(amqpUrl());
        try {
          const ch = await setup.createChannel();
          await declareExchanges(ch, DEFAULT_TOPOLOGY);
          await declareCustomer(ch, DEFAULT_TOPOLOGY, inCustomer);
          await declareCustomer(ch, DEFAULT_TOPOLOGY, outCustomer);
        } finally {
          await setup.close();
        }

        const flowFile = path.join(dir, 'flow.json');
        fs.writeFileSync(
          flowFile,
          JSON.stringify([
            { id: 'tab', type: 'tab' },
            { id: 'db', type: 'conflux-postgres', url, poolSize: '4' },
            { id: 'mq', type: 'conflux-amqp', urls: amqpUrl(), heartbeat: '5' },
            {
              id: 'in',
              type: 'conflux-amqp-in',
              z: 'tab',
              amqp: 'mq',
              queue: queueName(DEFAULT_TOPOLOGY, inCustomer),
              codec: 'eapi',
              prefetch: '50',
              wires: [['ts']],
            },
            { id: 'ts', type: 'conflux-time-series', z: 'tab', engine: 'sql', database: 'db', wires: [['out'], []] },
            { id: 'out', type: 'conflux-amqp-out', z: 'tab', amqp: 'mq', database: 'db', customer: outCustomer, wires: [['enqueued']] },
            // Every id the out node put in the outbox, as it says so: what must come out of the customer's queue.
            { id: 'enqueued', type: 'function', z: 'tab', outputs: 0, func: 'console.log("enqueued " + msg.messageIds.join(" ")); return null;', wires: [] },
          ]),
        );
        const enqueued = new Set<string>();
        let output = '';
        const c = spawn(process.execPath, [path.join(__dirname, '..', 'support', 'red-runtime.js'), flowFile], { stdio: ['ignore', 'pipe', 'pipe'] });
        child = c;
        exited = new Promise((resolve) => c.once('exit', () => resolve()));
        c.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
        let started = false;
        readline.createInterface({ input: c.stdout! }).on('line', (line) => {
          if (line === 'flows started') started = true;
          else if (line.startsWith('enqueued ')) for (const id of line.slice('enqueued '.length).split(' ')) enqueued.add(id);
          else output = (output + line + '\n').slice(-8000);
        });
        await until(
          () => `the Node-RED child to start its flows: ${output}`,
          () => {
            if (c.exitCode !== null) throw new Error(`the Node-RED child exited (${c.exitCode}): ${output}`);
            return started;
          },
          60_000,
        );

        // Mid-stream on both sides: the publisher still publishing (up to four times ACKS_BEFORE, a
        // few unconfirmed at a time), Conflux consuming a backlog and publishing through its outbox.
        publisher = new ConfirmingPublisher(inCustomer, 5, 4 * ACKS_BEFORE);
        publisher.start();
        await until(
          `${ACKS_BEFORE} confirmed and ${ACKS_BEFORE / 5} through Conflux before the restart (${publisher.confirmed}, ${enqueued.size})`,
          () => publisher!.confirmed >= ACKS_BEFORE && enqueued.size >= ACKS_BEFORE / 5,
          SETTLE_MS,
        );
        const inFlightAtStop = publisher.confirmed - enqueued.size;
        const madeAtStop = publisher.messages.length;
        const failuresAtStop = publisher.failures;
        rabbitDown = true;
        const stoppedAt = Date.now();
        await stopRabbitMQ();
        await until('the publisher to see the broker gone', () => publisher!.failures > failuresAtStop, SETTLE_MS);
        await startRabbitMQ();
        rabbitDown = false;
        const downMs = Date.now() - stoppedAt;
        publisher.limit = publisher.messages.length + ACKS_AFTER;
        await publisher.finish(SETTLE_MS);
        const messages = publisher.messages;

        // Stored: the time series holds each confirmed measurement once (name dev/1/temperature, v = its number).
        const storedCounts = async () => {
          const { rows } = await db.query<{ v: number; n: number }>(
            `SELECT v, count(*)::int AS n FROM readings WHERE tenant_id = 'default' AND name = $1 GROUP BY v`,
            [`${inCustomer}/1/temperature`],
          );
          return new Map(rows.map((r) => [Number(r.v), r.n]));
        };
        const outboxDepth = async () => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM outbox`)).rows[0].n);
        await until(
          'every confirmed message stored and the outbox empty',
          async () => {
            const stored = await storedCounts();
            return messages.every((m) => !m.confirmed || stored.has(m.value)) && (await outboxDepth()) === 0;
          },
          SETTLE_MS,
        );
        const allStoredMs = Date.now() - stoppedAt;
        const stored = await storedCounts();
        const dead = Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM dead_letters`)).rows[0].n);

        // Delivered: every message of the customer's queue, by id; one id, one body.
        const bodies = new Map<string, string>();
        let deliveries = 0;
        let conflicting = 0;
        const reader = await amqp.connect(amqpUrl());
        try {
          const ch = await reader.createChannel();
          for (;;) {
            const m = await ch.get(queueName(DEFAULT_TOPOLOGY, outCustomer), { noAck: true });
            if (m === false) break;
            deliveries++;
            const id = String(m.properties.messageId);
            const body = m.content.toString('utf8');
            if (bodies.has(id) && bodies.get(id) !== body) conflicting++;
            bodies.set(id, body);
          }
        } finally {
          await reader.close();
        }
        const carried = new Set([...bodies.values()].map((b) => Number((JSON.parse(b) as { data: { value: number } }).data.value)));

        const confirmed = messages.filter((m) => m.confirmed);
        const lost = confirmed.filter((m) => !stored.has(m.value)).length;
        const duplicates = [...stored.values()].reduce((n, k) => n + k - 1, 0);
        const undelivered = [...enqueued].filter((id) => !bodies.has(id)).length;
        const missing = confirmed.filter((m) => !carried.has(m.value)).length;
        console.log(
          `      ${countsLine(
            'rabbitmq-restart',
            {
              sent: messages.length,
              accepted: confirmed.length,
              stored: confirmed.length - lost,
              lost,
              duplicates,
              strangers: 0,
              storedUnacked: [...stored.keys()].filter((v) => !messages[v]?.confirmed).length,
              rollupMismatches: 0,
            },
            undefined,
            {
              republished: publisher.republished,
              backlog_at_stop: inFlightAtStop,
              made_at_stop: madeAtStop,
              enqueued: enqueued.size,
              delivered: bodies.size,
              deliveries,
              conflicting,
              undelivered,
              missing,
              dead,
              down_ms: downMs,
              all_stored_ms: allStoredMs,
            },
          )}`,
        );
        assert.equal(confirmed.length, messages.length, 'every message confirmed in the end');
        assert.equal(lost, 0, 'every confirmed message stored');
        assert.equal(duplicates, 0, 'none stored twice');
        assert.equal(undelivered, 0, 'every outbox message delivered to the customer queue');
        assert.equal(missing, 0, 'every confirmed measurement went out again');
        assert.equal(conflicting, 0, 'no message id delivered as two different messages');
        assert.equal(dead, 0, 'no dead letters');
        assert.ok(c.exitCode === null && c.signalCode === null, `the Node-RED child kept running: ${output}`);
      } finally {
        await db.close();
      }
    });
  });
});

interface Published {
  value: number;
  id: string;
  confirmed: boolean;
  attempts: number;
}

/**
 * A customer's system publishing eapi_measurement_new with publisher confirms: at most `window`
 * unconfirmed; a message is accepted once confirmed; what was not confirmed when the connection
 * failed is published again on a new connection (same message id and body), as a careful
 * publisher does. Measurement i: device = the customer, sensor 1, value i, a second apart.
 */
class ConfirmingPublisher {
  readonly messages: Published[] = [];
  confirmed = 0;
  failures = 0;
  republished = 0;
  private generating = true;
  private running: Promise<void> | undefined;
  private closed = false;
  private conn: Awaited<ReturnType<typeof amqp.connect>> | undefined;
  private readonly base = Math.floor(Date.now() / 1000) - 86_400;

  constructor(
    private readonly customer: string,
    private readonly window: number,
    /** Most messages made; raise it to make more. */
    public limit: number,
  ) {}

  start(): void {
    this.running = this.run();
  }

  /** Resolves once `limit` messages were made and every one confirmed; then no new ones. */
  async finish(timeoutMs: number): Promise<void> {
    await until(
      () => `${this.limit} messages made and confirmed (${this.messages.length} made, ${this.messages.filter((m) => !m.confirmed).length} not confirmed)`,
      () => this.messages.length >= this.limit && this.messages.every((m) => m.confirmed),
      timeoutMs,
    );
    this.generating = false;
    this.closed = true;
    await this.conn?.close().catch(() => undefined);
    await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.conn?.close().catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  private body(value: number): Buffer {
    const timeStamp = new Date((this.base + value) * 1000).toISOString().replace(/\.\d{3}Z$/, '+00:00');
    return Buffer.from(
      JSON.stringify({
        type: 'eapi_measurement_new',
        data: { deviceId: this.customer, sensorId: 1, value, unit: '°C', unitType: 'temperature', timeStamp },
      }),
    );
  }

  private async run(): Promise<void> {
    let backoff = 50;
    while (!this.closed) {
      try {
        const conn = (this.conn = await amqp.connect(amqpUrl()));
        conn.on('error', () => undefined);
        const ch = await conn.createConfirmChannel();
        ch.on('error', () => undefined);
        const lost = new Promise<never>((_, reject) => conn.once('close', () => reject(new Error('connection closed'))));
        lost.catch(() => undefined);
        backoff = 50;
        for (;;) {
          // Unconfirmed ones first (they were published on a connection that failed), then new ones.
          const pending = this.messages.filter((m) => !m.confirmed);
          const lanes = Array.from({ length: this.window }, async () => {
            for (;;) {
              if (this.closed) return;
              let m = pending.shift();
              if (m) this.republished++;
              else if (this.generating && this.messages.length < this.limit) {
                const value = this.messages.length;
                m = { value, id: `${this.customer}-${value}`, confirmed: false, attempts: 0 };
                this.messages.push(m);
              } else return;
              m.attempts++;
              const message = m;
              await Promise.race([
                new Promise<void>((resolve, reject) =>
                  ch.publish(
                    DEFAULT_TOPOLOGY.exchange,
                    `${this.customer}.eapi_measurement_new`,
                    this.body(message.value),
                    { messageId: message.id, persistent: true, contentType: 'application/json' },
                    (err) => (err ? reject(err) : resolve()),
                  ),
                ),
                lost,
              ]);
              message.confirmed = true;
              this.confirmed++;
            }
          });
          await Promise.all(lanes);
          // Up to the limit: wait on this connection until it is raised (or the publisher closes).
          await Promise.race([lost, until('more to publish', () => this.closed || (this.generating && this.messages.length < this.limit), 3_600_000)]);
          if (this.closed) return;
        }
      } catch {
        this.failures++;
        await this.conn?.close().catch(() => undefined);
        if (this.closed) return;
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, 1_000);
      }
    }
  }
}
