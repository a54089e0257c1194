-- How many validation problems a dataset had when it was uploaded: the list
-- shows them, and runs refuse a dataset that has any.
ALTER TABLE datasets ADD COLUMN problems INTEGER NOT NULL DEFAULT 0;
