/**
 * What a flow message asks of a device: the command (msg.command, msg.payload) and the device
 * (msg.device, or msg.tenant and msg.serial), and sending one at once with no answer awaited
 * (conflux-mqtt-in's input). Framework-free; the routing with answers is commands.ts.
 */
import { CommandError, type CommandSpec } from './commands';
import type { SessionRegistry } from './sessions';

/** The command a message asks for: msg.command {name, params}, or msg.command the name and msg.payload its parameters. */
export function commandFromMessage(msg: { command?: unknown; payload?: unknown }): CommandSpec {
  const c = msg.command;
  if (typeof c === 'string' && c !== '') return { name: c, params: msg.payload };
  if (c !== null && typeof c === 'object' && typeof (c as CommandSpec).name === 'string' && (c as CommandSpec).name !== '') {
    return { name: (c as CommandSpec).name, params: (c as CommandSpec).params };
  }
  throw new CommandError('invalid', 'msg.command must be a command name, or {name, params}');
}

/** The device a message names: msg.device {tenant, id}, or msg.tenant and msg.serial; tenant 'default' when none. */
export function deviceFromMessage(msg: { device?: { tenant?: unknown; id?: unknown }; tenant?: unknown; serial?: unknown }): {
  tenant: string;
  serial: string;
} {
  const serial = msg.device?.id ?? msg.serial;
  if (typeof serial !== 'string' || serial === '') throw new CommandError('invalid', 'msg.device.id (or msg.serial) must name the device by its serial');
  const tenant = msg.device?.tenant ?? msg.tenant ?? 'default';
  if (typeof tenant !== 'string' || tenant === '') throw new CommandError('invalid', 'msg.device.tenant (or msg.tenant) must be a tenant id');
  return { tenant, serial };
}

/**
 * Sends the command a flow message asks for straight to its device, with no queue and no answer
 * awaited: through `publish` when devices are reached over an external broker, else over the
 * device's live session.
 */
export async function sendCommandNow(
  msg: Parameters<typeof commandFromMessage>[0] & Parameters<typeof deviceFromMessage>[0],
  sessions: SessionRegistry,
  publish?: (device: { tenant: string; id: string }, command: CommandSpec) => Promise<void>,
): Promise<void> {
  const command = commandFromMessage(msg);
  const { tenant, serial } = deviceFromMessage(msg);
  if (publish) return publish({ tenant, id: serial }, command);
  const session = sessions.get(tenant, serial);
  if (!session) throw new Error(`device ${tenant}/${serial} is not connected`);
  await session.send('command', command);
}
