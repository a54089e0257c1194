-- Loss and perplexity of a base model with an adapter (or none) on one
-- split of a dataset, computed by the inference worker as training's
-- validation computes it. The source is a run's checkpoint (run_id + step),
-- an imported adapter (adapter_id), or neither: the bare base.
CREATE TABLE evaluations (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER REFERENCES runs (id) ON DELETE CASCADE,
    step           INTEGER,
    adapter_id     INTEGER REFERENCES adapters (id) ON DELETE CASCADE,
    -- The source as a person reads it ("base (no adapter)", "run 3, step 30").
    label          TEXT NOT NULL,
    model_id       INTEGER REFERENCES models (id) ON DELETE SET NULL,
    model_name     TEXT NOT NULL,
    dataset_id     INTEGER REFERENCES datasets (id) ON DELETE SET NULL,
    dataset_name   TEXT NOT NULL,
    split          TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),
    -- How the split was read and batched (max_seq_length, batch_size,
    -- mask_prompt, split_fraction, seed, limit): an evaluation is reused
    -- only under the same settings.
    settings_json  TEXT NOT NULL,
    loss           REAL NOT NULL,
    perplexity     REAL NOT NULL,
    tokens         INTEGER NOT NULL,
    batches        INTEGER NOT NULL,
    seconds        REAL NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    CHECK (run_id IS NULL OR adapter_id IS NULL),
    CHECK ((run_id IS NULL) = (step IS NULL))
);

CREATE INDEX evaluations_by_run ON evaluations (run_id);
CREATE INDEX evaluations_by_dataset ON evaluations (dataset_id, split);
