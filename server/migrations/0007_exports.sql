-- Exports of fine-tunes (fused HF or MLX folders, PEFT adapters). As pulls,
-- an export is stored as its view (what `GET /api/exports/{id}` answers),
-- written when it is queued, when it starts and when it ends; live progress
-- stays in memory. One left queued or running by a stopped server is marked
-- failed at the next start (its staging folder is removed then).
CREATE TABLE exports (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    view_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX exports_run ON exports(run_id);
