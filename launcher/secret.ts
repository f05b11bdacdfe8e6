/**
 * The key Node-RED encrypts flow credentials with. CONFLUX_CREDENTIAL_SECRET wins; otherwise one
 * is generated on the first start and kept in the data dir (mode 0600), so credentials stay
 * readable across restarts. Framework-free.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SECRET_FILE = '.conflux-credential-secret';

export type SecretSource = 'env' | 'file' | 'generated';

export interface CredentialSecret {
  secret: string;
  source: SecretSource;
  /** The file holding it, when it comes from (or went to) the data dir. */
  file?: string;
}

export function generateSecret(): string {
  return randomBytes(32).toString('hex');
}

export function resolveCredentialSecret(dataDir: string, fromEnv: string | undefined): CredentialSecret {
  if (fromEnv !== undefined && fromEnv !== '') return { secret: fromEnv, source: 'env' };
  const file = path.join(dataDir, SECRET_FILE);
  const existing = readSecret(file);
  if (existing !== undefined) return { secret: existing, source: 'file', file };

  fs.mkdirSync(dataDir, { recursive: true });
  const secret = generateSecret();
  try {
    // 'wx': never replace a secret another process wrote in the meantime.
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const raced = readSecret(file);
    if (raced === undefined) throw new Error(`${file} exists but holds no secret`, { cause: err });
    return { secret: raced, source: 'file', file };
  }
  return { secret, source: 'generated', file };
}

function readSecret(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const secret = text.trim();
  if (secret === '') throw new Error(`${file} is empty: delete it to generate a new secret (credentials saved with the old one are then lost)`);
  return secret;
}
