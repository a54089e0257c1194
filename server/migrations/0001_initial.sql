-- Models the user can fine-tune: a GGUF file, a local HF folder, or a Hub repo in the HF cache.
CREATE TABLE models (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    source        TEXT NOT NULL CHECK (source IN ('gguf', 'folder', 'hub')),
    location      TEXT NOT NULL,
    architecture  TEXT,
    parameters    INTEGER,
    quantization  TEXT,
    size_bytes    INTEGER,
    builtin       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- Datasets live under <data dir>/datasets/<id>/ as train/valid/test JSONL files.
CREATE TABLE datasets (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    directory     TEXT NOT NULL,
    format        TEXT,
    train_count   INTEGER NOT NULL DEFAULT 0,
    valid_count   INTEGER NOT NULL DEFAULT 0,
    test_count    INTEGER NOT NULL DEFAULT 0,
    builtin       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- A fine-tune. Its artifacts live under <data dir>/runs/<id>/.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    model_id        INTEGER REFERENCES models (id) ON DELETE SET NULL,
    dataset_id      INTEGER REFERENCES datasets (id) ON DELETE SET NULL,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'stopping', 'stopped', 'done', 'failed', 'interrupted')),
    config_json     TEXT NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER NOT NULL DEFAULT 0,
    failure         TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    started_at      TEXT,
    finished_at     TEXT
);

-- Every event a worker reported, in order. `seq` is the SSE event id.
CREATE TABLE run_events (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    step        INTEGER,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now')),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE checkpoints (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    path        TEXT NOT NULL,
    val_loss    REAL,
    PRIMARY KEY (run_id, step)
);
