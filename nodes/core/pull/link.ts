/**
 * RFC 8288 `Link` headers, as far as pagination needs them: the target of a relation type
 * (`rel="next"`), resolved against the request's URL. Several headers arrive joined by ", ";
 * a comma inside <...> or a quoted string does not split a link.
 */

export interface Link {
  target: string;
  params: Record<string, string>;
}

/** Every link of one or more Link header values; malformed parts are skipped. */
export function parseLinks(header: string | readonly string[] | null | undefined): Link[] {
  const text: string = typeof header === 'string' ? header : header ? header.join(', ') : '';
  const links: Link[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const open = text.indexOf('<', i);
    if (open < 0) break;
    const close = text.indexOf('>', open + 1);
    if (close < 0) break;
    const link: Link = { target: text.slice(open + 1, close).trim(), params: {} };
    i = close + 1;
    // Parameters: ; name [= token | "quoted"] ... up to the next top-level comma.
    while (i < n) {
      while (i < n && /\s/.test(text[i])) i++;
      if (text[i] !== ';') break;
      i++;
      const name = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+\*?)\s*/.exec(text.slice(i));
      if (!name) break;
      i += name[0].length;
      let value = '';
      if (text[i] === '=') {
        i++;
        while (i < n && /\s/.test(text[i])) i++;
        if (text[i] === '"') {
          i++;
          while (i < n && text[i] !== '"') {
            if (text[i] === '\\' && i + 1 < n) i++;
            value += text[i++];
          }
          i++;
        } else {
          const token = /^[^;,\s]*/.exec(text.slice(i))![0];
          value = token;
          i += token.length;
        }
      }
      const key = name[1].toLowerCase();
      if (!(key in link.params)) link.params[key] = value; // the first occurrence counts (RFC 8288 3.3)
    }
    const comma = text.indexOf(',', i);
    links.push(link);
    if (comma < 0) break;
    i = comma + 1;
  }
  return links;
}

/** The absolute URL of the first link whose rel (a space-separated list, case-insensitive) has `rel`. */
export function linkTarget(header: string | readonly string[] | null | undefined, rel: string, base: string): string | undefined {
  const wanted = rel.toLowerCase();
  for (const link of parseLinks(header)) {
    const rels = (link.params.rel ?? '').toLowerCase().split(/\s+/);
    if (!rels.includes(wanted)) continue;
    try {
      return new URL(link.target, base).toString();
    } catch {
      return undefined;
    }
  }
  return undefined;
}
