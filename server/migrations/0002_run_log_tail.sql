-- The last lines a run's worker wrote on stderr: the log a user reads and
-- the explanation of a crash.
ALTER TABLE runs ADD COLUMN log_tail TEXT NOT NULL DEFAULT '';

-- Metrics queries read one kind of event of one run.
CREATE INDEX run_events_by_kind ON run_events (run_id, kind, seq);
