/**
 * The first flow: on a data dir without a flow file, the shipped flows/default.json is copied in.
 * An existing flow file, whatever the user made of it (even an empty one), is never replaced.
 * Framework-free.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type FirstFlowResult = 'installed' | 'kept';

export function installFirstFlow(dataDir: string, flowFile: string, source: string): FirstFlowResult {
  const target = path.join(dataDir, flowFile);
  if (fs.existsSync(target)) return 'kept';
  fs.mkdirSync(dataDir, { recursive: true });
  try {
    // COPYFILE_EXCL: if something wrote the flow file meanwhile, keep it.
    fs.copyFileSync(source, target, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(target, 0o600); // a copy takes the shipped file's mode; flows are the owner's only
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'kept';
    throw err;
  }
  return 'installed';
}
