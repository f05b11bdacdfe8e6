/**
 * 008 — the firings of conflux-schedule (issue 11, item 2). Numbered 008: 007 is the REST API's
 * quotas, 009 the pull sources' watermarks.
 *
 * schedule_runs
 *   (schedule_key, fire_time)   one row per firing that some instance claimed: the first to insert
 *                               it runs it, every other instance sees the row and does not. The
 *                               newest fire_time of a key is when it last fired, which decides a
 *                               run missed while every instance was down (run once, or skip).
 *   claimed_by                  host:pid:node of the instance that claimed it
 *   lease_until                 a run not finished by then counts as over (the run timeout: an
 *                               instance that died mid-run blocks the schedule no longer than that)
 *   finished_at, outcome        running until finished: done, failed, timeout, stopped (the node
 *                               closed), or skipped (fired while a run was going; never ran)
 * Rows older than a day are pruned by the instances as they claim.
 */
export const sql = /* sql */ `
CREATE TABLE schedule_runs (
  schedule_key text NOT NULL,
  fire_time    timestamptz NOT NULL,
  claimed_by   text NOT NULL,
  claimed_at   timestamptz NOT NULL DEFAULT now(),
  lease_until  timestamptz NOT NULL,
  finished_at  timestamptz,
  outcome      text NOT NULL DEFAULT 'running'
               CHECK (outcome IN ('running', 'done', 'failed', 'timeout', 'stopped', 'skipped')),
  PRIMARY KEY (schedule_key, fire_time)
);
CREATE INDEX schedule_runs_unfinished ON schedule_runs (schedule_key) WHERE finished_at IS NULL;
`;
