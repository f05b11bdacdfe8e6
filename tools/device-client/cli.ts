/**
 * The reference device client from the command line: sends one reading to Conflux over TCP, UDP,
 * HTTP or MQTT, as a device would (docs/protocol.md).
 *
 *   node dist/tools/device-client/cli.js <tcp|udp|http|mqtt> --serial demo-0001 --key <key> [--value 21.5]
 *
 * Options: --host (127.0.0.1), --tcp-port (7100), --udp-port (41234), --mqtt-port (1883),
 * --http (http://127.0.0.1:1880/devices), --tenant (default). UDP needs a single-use token: the
 * client fetches one over TCP first. The reading is one SenML record, `temperature` in Cel,
 * which the device's listener names `<serial>/temperature`.
 */
import { postReadings } from './http';
import { MqttDevice } from './mqtt';
import { connect } from './tcp';
import { sendReading } from './udp';

export interface SendOptions {
  transport: 'tcp' | 'udp' | 'http' | 'mqtt';
  serial: string;
  key: string;
  value: number;
  host?: string;
  tcpPort?: number;
  udpPort?: number;
  mqttPort?: number;
  http?: string;
  tenant?: string;
}

/** Sends one reading; resolves once the listener accepted it (ACK, 202, PUBACK; UDP: sent). */
export async function sendOne(o: SendOptions): Promise<string> {
  const host = o.host ?? '127.0.0.1';
  const records = [{ n: 'temperature', u: 'Cel', v: o.value }];
  switch (o.transport) {
    case 'tcp': {
      const client = await connect({ host, port: o.tcpPort ?? 7100, serial: o.serial, key: o.key });
      try {
        const frame = await client.sendReadings('senml-json', JSON.stringify(records));
        return `TCP: frame ${frame} acknowledged`;
      } finally {
        await client.close();
      }
    }
    case 'udp': {
      const client = await connect({ host, port: o.tcpPort ?? 7100, serial: o.serial, key: o.key });
      let token: Buffer;
      try {
        [token] = (await client.requestUdpTokens(1)).tokens;
      } finally {
        await client.close();
      }
      await sendReading({ host, port: o.udpPort ?? 41234, serial: o.serial, token, format: 'senml-json', payload: records });
      return 'UDP: datagram sent with a token fetched over TCP';
    }
    case 'http': {
      const result = await postReadings({ base: o.http ?? `http://${host}:1880/devices`, serial: o.serial, key: o.key, format: 'senml+json', body: records });
      if (result.status !== 202) throw new Error(`HTTP ${result.status}: ${result.problem?.detail ?? result.problem?.title ?? ''}`);
      return `HTTP: 202, id ${result.id}`;
    }
    case 'mqtt': {
      const device = await MqttDevice.connect({
        url: `mqtt://${host}:${o.mqttPort ?? 1883}`,
        serial: o.serial,
        key: o.key,
        tenant: o.tenant ?? 'default',
        reconnectPeriod: 0,
      });
      try {
        await device.publish('senml+json', records, { qos: 1 });
        return `MQTT: published with QoS 1 on ${device.topic('attrs', 'senml')}`;
      } finally {
        await device.end();
      }
    }
  }
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(args: string[]): Promise<void> {
  const transport = args[0] as SendOptions['transport'];
  const serial = option(args, 'serial');
  const key = option(args, 'key');
  if (!['tcp', 'udp', 'http', 'mqtt'].includes(transport) || !serial || !key) {
    throw new Error(
      'usage: cli.js <tcp|udp|http|mqtt> --serial <serial> --key <key> [--value 21.5] [--host h] [--tcp-port p] [--udp-port p] [--mqtt-port p] [--http url] [--tenant t]',
    );
  }
  const num = (name: string) => (option(args, name) === undefined ? undefined : Number(option(args, name)));
  console.log(
    await sendOne({
      transport,
      serial,
      key,
      value: num('value') ?? 21.5,
      host: option(args, 'host'),
      tcpPort: num('tcp-port'),
      udpPort: num('udp-port'),
      mqttPort: num('mqtt-port'),
      http: option(args, 'http'),
      tenant: option(args, 'tenant'),
    }),
  );
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: Error) => {
    console.error(`device-client: ${err.message}`);
    process.exit(1);
  });
}
