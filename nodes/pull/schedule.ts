/**
 * conflux-schedule: sends a message on a cron expression (seconds and time zones) or a fixed
 * interval, for the jobs that pull from third parties (nodes/core/schedule/).
 *
 * Each firing is claimed in a ledger before it runs: with a conflux-postgres database, the
 * schedule_runs table shared by every instance on it, so exactly one instance runs each firing;
 * without one, this process. A run lasts until the flow has finished with the message
 * (nodes/shared/completion.ts) or the run timeout passed; a firing meanwhile is skipped. A firing
 * missed while the schedule was down runs once at start, or is skipped, as configured.
 */
import * as os from 'node:os';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { FlowFailure } from '../core/flow/completion-ledger';
import { databaseLedger, processLedger } from '../core/schedule/ledger';
import { MISSED_POLICIES, RunTimeout, Scheduler, type Firing, type MissedPolicy } from '../core/schedule/scheduler';
import { createTiming, describeSpec, formatFireTime, type ScheduleSpec, type Timing } from '../core/schedule/timing';
import { trackCompletion } from '../shared/completion';
import { closeAfter, databaseOf } from '../shared/config-user';
import { intField, textField } from '../shared/fields';
import { translator } from '../shared/i18n';
import { throttledStatus } from '../shared/status-fanout';

interface ScheduleDef extends NodeDef {
  database?: string;
  mode?: string;
  cron?: string;
  timezone?: string;
  interval?: string;
  unit?: string;
  missed?: string;
  timeout?: string;
  key?: string;
}

const UNITS: Record<string, number> = { s: 1, min: 60, h: 3600 };

function specOf(def: ScheduleDef): ScheduleSpec {
  if (def.mode === 'interval') return { kind: 'interval', seconds: intField(def.interval, 60, 1, 1_000_000) * (UNITS[def.unit ?? 's'] ?? 1) };
  return { kind: 'cron', expression: textField(def.cron), timezone: textField(def.timezone) || undefined };
}

export = function register(RED: NodeAPI): void {
  const t = translator(RED, __filename);
  function ScheduleNode(this: Node, def: ScheduleDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const spec = specOf(def);
    let timing: Timing;
    try {
      timing = createTiming(spec);
    } catch (err) {
      node.status({ fill: 'red', shape: 'ring', text: t('conflux.status.invalidConfig', { reason: (err as Error).message }).slice(0, 120) });
      node.error(`conflux-schedule: ${(err as Error).message}`);
      return;
    }
    const db = textField(def.database) ? databaseOf(RED, t, node, def.database) : undefined;
    if (textField(def.database) && !db) return;
    const key = textField(def.key) || node.id;
    const policy: MissedPolicy = (MISSED_POLICIES as readonly string[]).includes(def.missed ?? '') ? (def.missed as MissedPolicy) : 'run-once';
    const runTimeoutMs = intField(def.timeout, 300, 1, 86_400) * 1000;
    const zone = spec.kind === 'cron' ? spec.timezone : undefined;

    const completion = trackCompletion(RED, node, runTimeoutMs, () => status.soon());
    const scheduler = new Scheduler({
      key,
      timing,
      policy,
      ledger: db ? databaseLedger(() => db.sql()) : processLedger,
      owner: `${os.hostname()}:${process.pid}:${node.id}`,
      runTimeoutMs,
      run: (firing) => completion.send(messageOf(firing)),
      onChange: () => status.soon(),
      onError: (err, firing) => {
        if (err instanceof FlowFailure) return; // the failing node reported it to the Catch nodes already
        if (err instanceof RunTimeout) node.warn(`conflux-schedule: ${firing?.runId}: ${err.message}; the next firing may run`);
        else node.error(`conflux-schedule: ${err.message}`, firing ? messageOf(firing) : {});
      },
      onMissed: (fireTime, what) =>
        node.log(
          `${describeSpec(spec)} missed the firing of ${new Date(fireTime).toISOString()} while stopped: ${what === 'run-once' ? 'running it now' : 'skipped'}`,
        ),
    });

    function messageOf(firing: Firing): Record<string, unknown> {
      const fireTime = new Date(firing.fireTime).toISOString();
      return {
        topic: key,
        payload: { fireTime, runId: firing.runId },
        schedule: {
          key,
          fireTime,
          runId: firing.runId,
          catchUp: firing.catchUp,
          next: scheduler.next === undefined ? null : new Date(scheduler.next).toISOString(),
          ledger: db ? 'database' : 'in-process',
        },
      };
    }

    const status = throttledStatus(node, () => {
      const now = Date.now();
      const parts = [
        scheduler.next === undefined ? t('schedule.status.noNext') : t('schedule.status.next', { time: formatFireTime(scheduler.next, zone, now) }),
      ];
      if (scheduler.running) parts.push(t('schedule.status.running'));
      if (scheduler.skipped > 0) parts.push(t('schedule.status.skipped', { n: scheduler.skipped }));
      if (scheduler.failed > 0) parts.push(t('conflux.status.failed', { n: scheduler.failed }));
      if (scheduler.lastError) parts.push(scheduler.lastError.slice(0, 60));
      const fill = scheduler.lastError ? 'red' : scheduler.running ? 'blue' : 'green';
      return { fill, shape: scheduler.running ? 'dot' : 'ring', text: parts.join(', ').slice(0, 120) };
    });
    scheduler.start().catch((err: Error) => node.error(`conflux-schedule: ${err.message}`));

    const stop = async () => {
      await scheduler.stop();
      completion.close('the node is stopping');
      status.close();
      node.status({});
    };
    if (db) closeAfter(node, db, stop);
    else
      node.on(
        'close',
        (_removed: boolean, done: () => void) =>
          void stop()
            .catch((err: Error) => node.warn(err.message))
            .finally(done),
      );
  }
  RED.nodes.registerType('conflux-schedule', ScheduleNode);
};
