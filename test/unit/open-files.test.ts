/** The open-files check a gateway makes at start (nodes/core/devices/open-files.ts). */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { FILES_BESIDES_SESSIONS, openFilesLimit, ownOpenFilesLimit, sessionFilesWarning } from '../../nodes/core/devices/open-files';

const limits = (soft: string, hard: string) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files
Max locked memory         8388608              8388608              bytes
`;

describe('open files for device sessions', () => {
  it('reads the soft limit of open files from /proc/<pid>/limits', () => {
    assert.equal(openFilesLimit(limits('1024', '4096')), 1024);
    assert.equal(openFilesLimit(limits('unlimited', 'unlimited')), Infinity);
    assert.equal(openFilesLimit('Limit Soft Hard\nMax processes 10 10 processes\n'), undefined);
  });

  it("reads this process's own limit as the shell sees it", () => {
    const shell = Number(execFileSync('bash', ['-c', 'ulimit -Sn'], { encoding: 'utf8' }).trim());
    assert.equal(ownOpenFilesLimit(), shell);
  });

  it('warns when Max sessions and the files besides them do not fit, naming what to raise', () => {
    assert.equal(sessionFilesWarning(10_000, 10_000 + FILES_BESIDES_SESSIONS), undefined);
    assert.equal(sessionFilesWarning(10_000, Infinity), undefined);
    assert.equal(sessionFilesWarning(10_000, undefined), undefined, 'no /proc: no check');
    const warning = sessionFilesWarning(10_000, 4096);
    assert.match(warning ?? '', /Max sessions is 10000, but this process may open only 4096 files: about 3072 devices/);
    assert.match(warning ?? '', /at least 11024/);
  });
});
