-- Machine sets registered on the Machines page: a name and an mlx.launch
-- hostfile (JSON text, kept as the owner wrote it). `check_json` holds the
-- last check of every host over ssh (reachable, same Loralab, free memory),
-- `checked_at` when it ran; NULL until the first check.
CREATE TABLE machine_sets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    hostfile   TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    checked_at TEXT,
    check_json TEXT
);
