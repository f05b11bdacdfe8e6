/**
 * Naming rules for delivered files and the guard that keeps them inside the target's folder.
 *
 *   {vin}            a field of the message (dots for nested fields: {vehicle.vin})
 *   {nn:02}          a number padded with zeros to 2 digits (nn and n are the file's place, from 1)
 *   {date} {time}    the delivery's date (YYYY-MM-DD) and time (HHmmss), UTC
 *   {date:YYYYMMDD}  a date with tokens YYYY YY MM DD HH mm ss SSS
 *   {{ }}            literal braces
 *
 * A field's value may not contain a slash, a backslash, NUL or another control character (a VIN
 * of "../x" is refused, not cleaned), and the name as a whole must stay inside the remote folder:
 * no absolute path, no "." or ".." segment, no empty segment, no drive letter. Framework-free.
 */
import { posix } from 'node:path';

export class NamingError extends Error {
  override name = 'NamingError';
}

export type NamingContext = (field: string) => unknown;

const TOKEN = /\{\{|\}\}|\{([A-Za-z_][\w.-]*)(?::([^{}]*))?\}|[{}]/g;
const DATE_TOKENS = /YYYY|YY|MM|DD|HH|mm|ss|SSS/g;
const BAD_VALUE = /[/\\\u0000-\u001f\u007f]/;

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** A date in UTC as the format's tokens say. */
export function formatDate(date: Date, format: string): string {
  const parts: Record<string, string> = {
    YYYY: pad(date.getUTCFullYear(), 4),
    YY: pad(date.getUTCFullYear() % 100, 2),
    MM: pad(date.getUTCMonth() + 1, 2),
    DD: pad(date.getUTCDate(), 2),
    HH: pad(date.getUTCHours(), 2),
    mm: pad(date.getUTCMinutes(), 2),
    ss: pad(date.getUTCSeconds(), 2),
    SSS: pad(date.getUTCMilliseconds(), 3),
  };
  return format.replace(DATE_TOKENS, (t) => parts[t]);
}

function scalar(rule: string, field: string, value: unknown): string {
  if (value === undefined || value === null || value === '') throw new NamingError(`naming rule ${rule}: the message has no ${field}`);
  if (typeof value === 'object' && !(value instanceof Date)) throw new NamingError(`naming rule ${rule}: ${field} is not a text or a number`);
  const text = value instanceof Date ? value.toISOString() : String(value);
  if (BAD_VALUE.test(text)) throw new NamingError(`naming rule ${rule}: ${field} ${JSON.stringify(text)} contains a slash, a backslash or a control character`);
  return text;
}

function formatted(rule: string, field: string, value: unknown, spec: string | undefined): string {
  if (spec === undefined || spec === '') return scalar(rule, field, value);
  if (/^0?\d{1,2}$/.test(spec)) {
    const n = Number(scalar(rule, field, value));
    if (!Number.isInteger(n) || n < 0) throw new NamingError(`naming rule ${rule}: ${field} must be a whole number >= 0 for {${field}:${spec}}`);
    return pad(n, Number(spec));
  }
  if (spec === 'upper') return scalar(rule, field, value).toUpperCase();
  if (spec === 'lower') return scalar(rule, field, value).toLowerCase();
  if (value instanceof Date) return formatDate(value, spec);
  throw new NamingError(`naming rule ${rule}: unknown format ${JSON.stringify(spec)} for ${field}`);
}

/** Checks a rule's syntax (the editor and the API refuse a bad one early). */
export function checkRule(rule: string): void {
  if (typeof rule !== 'string' || rule.trim() === '') throw new NamingError('a naming rule must not be empty');
  for (const m of rule.matchAll(TOKEN)) if (m[0] === '{' || m[0] === '}') throw new NamingError(`naming rule ${rule}: unbalanced brace at ${m.index}`);
}

/** The name a rule gives in a context: each {field[:format]} replaced by its value. */
export function renderName(rule: string, context: NamingContext): string {
  checkRule(rule);
  return rule.replace(TOKEN, (all, field: string | undefined, spec: string | undefined) => {
    if (all === '{{') return '{';
    if (all === '}}') return '}';
    return formatted(rule, field!, context(field!), spec);
  });
}

/**
 * The name relative to the remote folder, or a NamingError saying why it would escape it.
 * Slashes separate folders below the remote folder; nothing may climb out of it.
 */
export function safeRelative(name: string): string {
  if (typeof name !== 'string' || name === '') throw new NamingError('a file name must not be empty');
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new NamingError(`file name ${JSON.stringify(name)} contains NUL or a control character`);
  if (name.includes('\\')) throw new NamingError(`file name ${JSON.stringify(name)} contains a backslash (a path separator on some servers)`);
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name))
    throw new NamingError(`file name ${JSON.stringify(name)} is absolute: names are relative to the target's folder`);
  const segments = name.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..')
      throw new NamingError(`file name ${JSON.stringify(name)} would leave the target's folder (empty, "." or ".." segment)`);
    if (s.trim() !== s) throw new NamingError(`file name ${JSON.stringify(name)} has a segment with leading or trailing spaces`);
  }
  if (name.length > 1_024) throw new NamingError('a file name has at most 1024 characters');
  return name;
}

/** The target's folder as an absolute, normalised path ('/' when empty); refuses "..", NUL and backslashes. */
export function remoteFolder(folder: string | null | undefined): string {
  const text = (folder ?? '').trim();
  if (text === '' || text === '/') return '/';
  if (/[\u0000-\u001f\u007f\\]/.test(text)) throw new NamingError(`remote folder ${JSON.stringify(text)} contains NUL, a control character or a backslash`);
  const segments = text.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new NamingError(`remote folder ${JSON.stringify(text)} contains ".."`);
  return `/${segments.join('/')}`;
}

/** The absolute remote path of a (checked) relative name in a folder. */
export function remotePath(folder: string, name: string): string {
  return posix.join(remoteFolder(folder), safeRelative(name));
}
