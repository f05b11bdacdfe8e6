/** Calendar time shared by the codecs: validated UTC fields and ISO 8601 date-times. */

/** Milliseconds since the epoch for valid UTC calendar fields, or NaN. */
export function utcMs(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return NaN;
  // Built from year 2000 then moved, so years below 100 stay themselves; Date rolls 31 February
  // over into March, so a different day of month means an invalid date.
  const date = new Date(Date.UTC(2000, mo - 1, d, h, mi, s, ms));
  date.setUTCFullYear(y);
  return date.getUTCDate() === d ? date.getTime() : NaN;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * Seconds since the epoch of an ISO 8601 date-time (no zone means UTC), or NaN. Formats that
 * always write seconds (the cloud logger's) pass requireSeconds.
 */
export function parseIsoTime(text: string, requireSeconds = false): number {
  const m = ISO_RE.exec(text);
  if (m === null || (requireSeconds && m[6] === undefined)) return NaN;
  const ms = m[7] === undefined ? 0 : Math.round(Number(`0.${m[7]}`) * 1000);
  let t = utcMs(+m[1], +m[2], +m[3], +m[4], +m[5], m[6] === undefined ? 0 : +m[6], ms);
  const zone = m[8];
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const digits = zone.replace(':', '');
    const oh = +digits.slice(1, 3);
    const om = digits.length > 3 ? +digits.slice(3, 5) : 0;
    if (oh > 23 || om > 59) return NaN;
    t -= (zone[0] === '-' ? -1 : 1) * (oh * 60 + om) * 60000;
  }
  return t / 1000;
}
