-- The item a mapped task instance was expanded with from a `foreach` template (JSON text);
-- NULL for unmapped instances and for literal `foreach` lists (their items are in the DAG version).
ALTER TABLE task_instances ADD COLUMN item TEXT;
