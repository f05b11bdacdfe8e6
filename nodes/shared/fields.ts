/**
 * Reading node configuration defensively. Node-RED replaces a property that is exactly
 * `${VAR}` with the variable's value, but leaves the text as it is when the variable is unset:
 * such a field counts as empty, so a shipped flow with `${CONFLUX_POSTGRES_URL}` falls back to
 * the embedded default when the variable is not set.
 */
const UNRESOLVED = /^\$\{[^}]+\}$/;

/** The field's text, trimmed; '' for undefined or an unresolved ${VAR}. */
export function textField(value: unknown): string {
  if (value === undefined || value === null) return '';
  const text = String(value).trim();
  return UNRESOLVED.test(text) ? '' : text;
}

/** An integer within [min, max], or the fallback when the field is empty or not a number. */
export function intField(value: unknown, fallback: number, min: number, max: number): number {
  const text = textField(value);
  const n = text === '' ? NaN : Number(text);
  if (!Number.isFinite(n)) return fallback;
  return Math.min(max, Math.max(min, Math.round(n)));
}

export function boolField(value: unknown, fallback = false): boolean {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return fallback;
}

/** A comma- or newline-separated list, without empty entries. */
export function listField(value: unknown): string[] {
  return textField(value)
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** The variable a field names when it was written `${VAR}` and VAR is unset (Node-RED leaves the text); else undefined. */
export function unsetVariable(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  return /^\$\{([^}]+)\}$/.exec(String(value).trim())?.[1];
}
