-- Adapters trained elsewhere (mlx-lm layout), copied into <data dir>/adapters/<id>/.
-- Runs' own adapters stay in their run folders and are not listed here.
CREATE TABLE adapters (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    directory   TEXT NOT NULL,
    model_id    INTEGER REFERENCES models (id) ON DELETE SET NULL,
    rank        INTEGER NOT NULL,
    num_layers  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- A side-by-side comparison: one base model, columns (adapters or the bare
-- base), prompts, the same generation settings for every output.
CREATE TABLE comparisons (
    id             INTEGER PRIMARY KEY,
    model_id       INTEGER REFERENCES models (id) ON DELETE SET NULL,
    model_name     TEXT NOT NULL,
    model_location TEXT NOT NULL,
    dataset_name   TEXT,
    split          TEXT,
    settings_json  TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    failure        TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    finished_at    TEXT
);

-- `adapter_path` is what the worker loads (NULL: the bare base); run and
-- adapter ids say where it came from, for losses and links.
CREATE TABLE comparison_columns (
    comparison_id  INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    label          TEXT NOT NULL,
    adapter_ref    TEXT NOT NULL,
    adapter_path   TEXT,
    run_id         INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    adapter_id     INTEGER REFERENCES adapters (id) ON DELETE SET NULL,
    val_loss       REAL,
    test_loss      REAL,
    PRIMARY KEY (comparison_id, position)
);

CREATE TABLE comparison_prompts (
    comparison_id  INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    -- The engine's InferencePrompt as JSON.
    prompt_json    TEXT NOT NULL,
    -- The prompt as a person reads it (the last user message, or the text).
    display        TEXT NOT NULL,
    reference      TEXT,
    -- e.g. `valid.jsonl:3`, or NULL for a typed prompt.
    origin         TEXT,
    PRIMARY KEY (comparison_id, position)
);

CREATE TABLE comparison_outputs (
    id                         INTEGER PRIMARY KEY,
    comparison_id              INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    prompt_index               INTEGER NOT NULL,
    column_index               INTEGER NOT NULL,
    status                     TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    text                       TEXT NOT NULL DEFAULT '',
    error                      TEXT,
    prompt_tokens              INTEGER,
    generated_tokens           INTEGER,
    finish_reason              TEXT,
    generation_tokens_per_sec  REAL,
    UNIQUE (comparison_id, prompt_index, column_index)
);

-- A blind vote: which output of one prompt the voter liked best.
CREATE TABLE comparison_votes (
    id             INTEGER PRIMARY KEY,
    comparison_id  INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    prompt_index   INTEGER NOT NULL,
    output_id      INTEGER NOT NULL REFERENCES comparison_outputs (id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- A conversation with one model and adapter.
CREATE TABLE chats (
    id             INTEGER PRIMARY KEY,
    model_name     TEXT NOT NULL,
    model_location TEXT NOT NULL,
    adapter_ref    TEXT NOT NULL,
    adapter_label  TEXT NOT NULL,
    adapter_path   TEXT,
    system_prompt  TEXT,
    messages_json  TEXT NOT NULL DEFAULT '[]',
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
