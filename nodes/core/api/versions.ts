/**
 * The API's versions, in one place. The major version is in the URL (`/api/v1`, `/api/v2`); the
 * minor version is in every body (`"version": "2.1"`). The rule (docs/api.md):
 *
 * - A major version's shapes never lose or rename a field, nor change a field's type or meaning.
 *   v1 is frozen: its minor stays 0 and nothing is added to it.
 * - v2 may add fields, parameters, operations and error members; each release that does raises
 *   v2's minor here. A client ignores fields it does not know (and the order of properties is
 *   not guaranteed), so a higher minor never breaks it.
 * - A change that would break a client is a new major version in the URL.
 */
import type { ApiVersion } from './operation';

export const API_VERSIONS: readonly ApiVersion[] = [1, 2];

/** The minor version of each major version. */
export const API_MINOR: Readonly<Record<ApiVersion, number>> = { 1: 0, 2: 1 };

/** `"1.0"`, `"2.1"`: the `version` member of every body of that major version. */
export function versionString(version: ApiVersion): string {
  return `${version}.${API_MINOR[version]}`;
}
