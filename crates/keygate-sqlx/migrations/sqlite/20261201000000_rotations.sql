-- keygate: rotations (SQLite). A key is replaced once: its row here is the proof, so a
-- second, concurrent rotation of the same key writes nothing.
CREATE TABLE IF NOT EXISTS keygate_rotations (
    old_key_id TEXT NOT NULL PRIMARY KEY,
    new_key_id TEXT NOT NULL,
    rotated_at TEXT NOT NULL
);
