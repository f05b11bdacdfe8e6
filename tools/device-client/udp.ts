/**
 * The reference device client, UDP part (docs/protocol-udp.md): builds a telemetry datagram from
 * a serial, a token the device got over an authenticated session, and a payload, and sends it.
 * Nothing comes back: Conflux never answers a datagram.
 *
 *   await sendReading({ host: '127.0.0.1', port: 41234, serial: 'SN-1', token, format: 'ultralight', payload: 't|21.5' });
 *
 * For many datagrams, open one sender and reuse its socket:
 *
 *   const udp = await openUdpSender({ host, port });
 *   await udp.send({ serial, token, format: 'senml-json', payload: [{ n: 'temp', u: 'Cel', v: 21.5 }] });
 *   await udp.close();
 */
import * as dgram from 'node:dgram';
import { encodeDatagram, PayloadType, type PayloadTypeCode } from '../../nodes/core/protocol/datagram';

/**
 *   senml-cbor        0x01, payload: SenML CBOR bytes
 *   ultralight-ascii  0x02, payload: UltraLight text, ASCII only
 *   ultralight        0x03, payload: UltraLight text, UTF-8
 *   senml-json        0x04, payload: a SenML array (or its JSON text)
 *   attributes        0x04, payload: an object of attribute values (or its JSON text)
 */
export type UdpFormat = 'senml-cbor' | 'ultralight-ascii' | 'ultralight' | 'senml-json' | 'attributes' | 'json';

const TYPES: Record<UdpFormat, PayloadTypeCode> = {
  'senml-cbor': PayloadType.senmlCbor,
  'ultralight-ascii': PayloadType.ultralightAscii,
  ultralight: PayloadType.ultralightUtf8,
  'senml-json': PayloadType.json,
  attributes: PayloadType.json,
  json: PayloadType.json,
};

export interface UdpReading {
  serial: string;
  /** 16 bytes, as issued (a Buffer, or its base64 text). */
  token: Uint8Array | string;
  format: UdpFormat;
  /** Bytes or text as they are; for the JSON formats, an array or object is serialised. */
  payload: Uint8Array | string | unknown[] | Record<string, unknown>;
}

/** The datagram for a reading, byte for byte. */
export function buildDatagram({ serial, token, format, payload }: UdpReading): Buffer {
  const type = TYPES[format];
  if (type === undefined) throw new RangeError(`unknown format "${format}" (expected ${Object.keys(TYPES).join(', ')})`);
  const body = typeof payload === 'string' || payload instanceof Uint8Array ? payload : JSON.stringify(payload);
  if (type === PayloadType.ultralightAscii && typeof body === 'string' && /[^\x00-\x7f]/.test(body)) {
    throw new RangeError('ultralight-ascii takes ASCII text only: use "ultralight" (UTF-8)');
  }
  return encodeDatagram({ serial, token: typeof token === 'string' ? Buffer.from(token, 'base64') : token, type, payload: body });
}

export interface UdpSender {
  /** Sends one reading; resolves once the datagram is handed to the network (delivery is not confirmed). */
  send(reading: UdpReading): Promise<void>;
  /** Sends bytes as they are (tests of malformed datagrams). */
  sendRaw(datagram: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export interface UdpTarget {
  host: string;
  port: number;
}

/** A socket to send many datagrams from. */
export async function openUdpSender({ host, port }: UdpTarget): Promise<UdpSender> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('error', () => {
    // an ICMP "port unreachable" may surface here; UDP promises nothing: ignore
  });
  const sendRaw = (datagram: Uint8Array) => new Promise<void>((resolve, reject) => socket.send(datagram, port, host, (err) => (err ? reject(err) : resolve())));
  return {
    send: (reading) => sendRaw(buildDatagram(reading)),
    sendRaw,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** Sends one reading from a socket of its own. */
export async function sendReading(reading: UdpReading & UdpTarget): Promise<void> {
  const sender = await openUdpSender(reading);
  try {
    await sender.send(reading);
  } finally {
    await sender.close();
  }
}
