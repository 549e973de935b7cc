-- Version 21 on PostgreSQL: secrets per environment, as the SQLite store's 0021. `scope` is ''
-- for a value of the whole project, else the name of the environment it belongs to.
ALTER TABLE {S}.secrets ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE {S}.secrets DROP CONSTRAINT secrets_pkey;
ALTER TABLE {S}.secrets ADD PRIMARY KEY (project_id, plugin, setting, scope);
