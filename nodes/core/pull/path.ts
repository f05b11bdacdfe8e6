/**
 * The paths a pull configures (where the items are in a body, an item's id, its watermark
 * value, the next cursor): dot-separated property names, array indexes as numbers
 * (`data.items`, `meta.next_cursor`, `links.0.href`). An empty path is the value itself.
 */

export function valueAt(value: unknown, path: string): unknown {
  if (path.trim() === '') return value;
  let current = value;
  for (const part of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    if (!Object.hasOwn(current, part)) return undefined; // never walks into the prototype
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/** A scalar as a string key (ids, cursors); undefined for anything else or an empty string. */
export function keyOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'bigint') return String(value);
  return undefined;
}

/**
 * `${NAME}` anywhere in text replaced by lookup(NAME) (Node-RED replaces only a field that is
 * exactly `${NAME}`); throws naming the first variable that is not set.
 */
export function expandVariables(text: string, lookup: (name: string) => string | undefined): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const value = lookup(name);
    if (value === undefined || value === '') throw new Error(`\${${name}} is not set`);
    return value;
  });
}

/** The first `${NAME}` in text whose variable is unset or empty (a URL that cannot be expanded yet), else undefined. */
export function unsetVariableIn(text: string, lookup: (name: string) => string | undefined): string | undefined {
  for (const [, name] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
    const value = lookup(name);
    if (value === undefined || value === '') return name;
  }
  return undefined;
}
