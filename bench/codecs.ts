/**
 * `npm run bench -- codecs`: records per second through each decoder, against the floor of the
 * same bytes through the bare parser the decoder stands on (JSON.parse, fast-xml-parser, cbor-x,
 * String.split), in the same process. The XML baselines are the very parser instance the decoder
 * uses (nodes/core/codecs/xml.ts: the same options, validation on), without the decoder's work.
 */
import { decode as cborDecode } from 'cbor-x';
import { decodeSenmlJson, encodeSenmlJson } from '../nodes/core/codecs/senml-json';
import { decodeSenmlXml, encodeSenmlXml } from '../nodes/core/codecs/senml-xml';
import { parserFor } from '../nodes/core/codecs/xml';
import { decodeSenmlCbor, encodeSenmlCbor } from '../nodes/core/codecs/senml-cbor';
import { decodeSen1, encodeSen1 } from '../nodes/core/codecs/sen1';
import { ulToRecords } from '../nodes/core/codecs/ultralight';
import { decodeEapi } from '../nodes/core/codecs/eapi';
import { compileMapping, decodeWithMapping } from '../nodes/core/codecs/json-map';
import { median, report, runPair, type Pair } from './harness';

const RECORDS = 100;
const T0 = 1.7e9;

/** A realistic pack: base name, time and unit in the first record, relative times after it. */
function senmlPack(): unknown[] {
  const pack: Record<string, unknown>[] = [{ bn: 'urn:dev:ow:10e2073a01080063/', bt: T0, bu: 'Cel', n: 'temp', v: 20 }];
  for (let i = 1; i < RECORDS; i++) pack.push(i % 3 === 0 ? { n: 'hum', u: '%RH', t: i, v: 40 + i / 10 } : { n: 'temp', t: i, v: 20 + i / 100 });
  return pack;
}

export async function run(): Promise<boolean> {
  const pack = senmlPack();
  const records = decodeSenmlJson(pack, { now: T0 });
  const json = JSON.stringify(pack);
  const xml = encodeSenmlXml(records);
  const cbor = encodeSenmlCbor(records);
  const resolvedJson = encodeSenmlJson(records);

  const sen1Records = records.filter((r) => r.n.endsWith('temp')).map((r) => ({ ...r, n: 'temperature' }));
  const [sen1] = encodeSen1(sen1Records, { username: 'alice', applicationSrc: 'app-a', applicationDst: 'app-b' });
  const sen1Count = sen1Records.length;
  const [sen1Single] = encodeSen1(sen1Records.slice(0, 1), { username: 'alice', applicationSrc: 'app-a', applicationDst: 'app-b' });

  const ulGroups: string[] = [];
  for (let i = 0; i < 20; i++) ulGroups.push(`2024-01-01T10:00:${String(i).padStart(2, '0')}Z|t|${20 + i / 10}|h|${40 + i}|p|1013.${i}|b|${90 - i}|s|ok`);
  const ul = ulGroups.join('#');
  const ulMap = { t: 'temperature', h: 'humidity', p: 'pressure', b: 'battery', s: { name: 'state', type: 'Text' } };

  const eapi = JSON.stringify({
    type: 'eapi_measurement_new',
    data: { timeStamp: '2022-10-11T16:21:27+00:00', value: 24.6, unit: '°C', unitType: 'temperature', deviceId: '951FF00000340', sensorId: '5368' },
  });

  const vendor = JSON.stringify({ device: 'pump-7', at: T0, readings: Array.from({ length: 20 }, (_, i) => ({ k: `s${i}`, val: i * 1.5 })) });
  const mapping = compileMapping('[readings.{"n": $$.device & "/" & k, "t": $$.at, "v": val}]');

  // The decoders' own parsers (same options: attributes kept, values as text, the shared entity
  // decoder, validation on), so the baseline differs from the decoder only by the decoder's work.
  const senmlXmlParser = parserFor({ arrays: ['senml'] });
  const sen1Parser = parserFor({ arrays: ['Sen1Data'] });
  const pairs: Pair[] = [
    {
      name: 'SenML JSON decode (resolve + validate)',
      itemsPerCall: RECORDS,
      subject: () => decodeSenmlJson(json, { now: T0 }),
      baselineName: 'JSON.parse',
      baseline: () => JSON.parse(json),
      floor: 0.5,
    },
    {
      name: 'SenML JSON decode, resolved input',
      itemsPerCall: RECORDS,
      subject: () => decodeSenmlJson(resolvedJson, { now: T0 }),
      baselineName: 'JSON.parse',
      baseline: () => JSON.parse(resolvedJson),
    },
    {
      name: 'SenML XML decode',
      itemsPerCall: RECORDS,
      subject: () => decodeSenmlXml(xml, { now: T0 }),
      baselineName: "fast-xml-parser, the decoder's options",
      baseline: () => senmlXmlParser.parse(xml, true),
    },
    {
      name: 'SenML CBOR decode',
      itemsPerCall: RECORDS,
      subject: () => decodeSenmlCbor(cbor, { now: T0 }),
      baselineName: 'cbor-x decode',
      baseline: () => cborDecode(cbor),
    },
    {
      name: `Sen1 XML decode, ${sen1Count} values`,
      itemsPerCall: sen1Count,
      subject: () => decodeSen1(sen1),
      baselineName: "fast-xml-parser, the decoder's options",
      baseline: () => sen1Parser.parse(sen1, true),
      floor: 0.7,
    },
    {
      name: 'Sen1 XML decode, one value',
      itemsPerCall: 1,
      subject: () => decodeSen1(sen1Single),
      baselineName: "fast-xml-parser, the decoder's options",
      baseline: () => sen1Parser.parse(sen1Single, true),
      floor: 0.7,
    },
    {
      name: 'UltraLight 2.0 decode',
      itemsPerCall: 100,
      subject: () => ulToRecords(ul, { deviceId: 'dev1', map: ulMap, now: T0 }),
      baselineName: "split('#') then split('|')",
      baseline: () => ul.split('#').map((g) => g.split('|')),
    },
    { name: 'eapi decode', itemsPerCall: 1, subject: () => decodeEapi(eapi), baselineName: 'JSON.parse', baseline: () => JSON.parse(eapi) },
  ];
  const results = pairs.map((p) => runPair(p));

  // JSONata evaluates asynchronously: measured apart, 5 alternating rounds of 300 ms, median kept.
  const mappedRuns: number[] = [];
  const parsedRuns: number[] = [];
  for (let r = 0; r < 5; r++) {
    mappedRuns.push(await rateAsync(() => decodeWithMapping(mapping, JSON.parse(vendor), { now: T0 }), 20));
    parsedRuns.push(await rateAsync(async () => JSON.parse(vendor), 20));
  }
  const mapped = median(mappedRuns);
  const parsed = median(parsedRuns);
  results.push({
    name: 'JSONata mapping decode',
    baselineName: 'JSON.parse',
    subjectPerSec: mapped,
    baselinePerSec: parsed,
    ratio: mapped / parsed,
    subjectRuns: mappedRuns,
    baselineRuns: parsedRuns,
  });

  const ok = report('Codecs: decode rate against the bare parser', 'records', results);
  console.log('\n7 alternating rounds of 300 ms per case after a 200 ms warm-up of each side (JSONata: 5 rounds), median kept.');
  return ok;
}

async function rateAsync(fn: () => Promise<unknown>, itemsPerCall: number, ms = 300): Promise<number> {
  for (let i = 0; i < 50; i++) await fn();
  let calls = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ms * 1e6);
  while (process.hrtime.bigint() < end) {
    await fn();
    calls++;
  }
  return (calls * itemsPerCall) / (Number(process.hrtime.bigint() - start) / 1e9);
}
