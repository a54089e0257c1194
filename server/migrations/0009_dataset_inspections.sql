-- A dataset tokenized with a model's tokenizer: its figures (token counts,
-- lengths, problems, previews) kept so later pages and run checks read them
-- instead of tokenizing every example again. `settings` holds what the
-- figures depend on (tokenizer file, length limit, masking, split, batch
-- size); `files` the dataset files' sizes and times: a row whose files
-- differ from the folder's is stale and is computed again.
CREATE TABLE dataset_inspections (
    directory       TEXT NOT NULL,
    settings        TEXT NOT NULL,
    files           TEXT NOT NULL,
    inspection_json TEXT NOT NULL,
    PRIMARY KEY (directory, settings)
);
