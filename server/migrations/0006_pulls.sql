-- Pulls from the Hugging Face Hub, so the models page still lists them after
-- a restart. A pull is stored as its view (the JSON `GET /api/models/pulls/{id}`
-- answers), written when it starts and when it ends; live progress stays in
-- memory. A pull that was running when the server stopped is marked failed
-- at the next start: pulling again resumes from the cache's partial files.
CREATE TABLE pulls (
    id          INTEGER PRIMARY KEY,
    view_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
