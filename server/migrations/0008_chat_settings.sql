-- Each chat keeps its own generation settings, changeable between replies.
-- The defaults are what every chat used before they could be set.
ALTER TABLE chats ADD COLUMN temperature REAL NOT NULL DEFAULT 0.7;
ALTER TABLE chats ADD COLUMN max_tokens INTEGER NOT NULL DEFAULT 256;
