-- Version 24 on PostgreSQL: a run's bookmark commit as one server-side function, and state
-- events numbered per state id so that keeping only the newest costs one index probe.
--
-- A run commits a bookmark every few thousand records. As five statements sent one by one, each
-- commit paid for parsing and planning every time, and keeping the newest 1,000 events walked
-- 1,000 index entries and their rows on every commit; on a host whose cores the plugins keep busy
-- that server time showed up as the run's wall time. A PL/pgSQL function keeps its statements'
-- plans for the life of the server connection, and the client sends one short call. The plans
-- live on the server connection, not in the client's session, so this also holds through a
-- transaction-pooling pooler.

-- `seq` counts a state id's events from 1, in event order: the newest N are those with
-- `seq > newest seq - N`. A trigger numbers every new event (a commit, a `dsm state` command, a
-- `dsm store copy`), so no writer has to.
ALTER TABLE {S}.state_events ADD COLUMN seq BIGINT;
UPDATE {S}.state_events e SET seq = n.seq
  FROM (SELECT event_id,
               row_number() OVER (PARTITION BY project_id, state_id ORDER BY event_id) AS seq
          FROM {S}.state_events) n
 WHERE e.event_id = n.event_id;
ALTER TABLE {S}.state_events ALTER COLUMN seq SET NOT NULL;
CREATE INDEX state_events_by_seq ON {S}.state_events (project_id, state_id, seq);
-- The index by (project_id, state_id, event_id) goes: it begins as the one by `seq` does, so
-- the planner could take it for a prune by `seq` and read every event of the state id (seen:
-- 2.7 ms a commit at 10,000 events). Listing a state id's events, which it served, sorts the
-- at most 1,000 kept.
DROP INDEX {S}.state_events_by_id;

CREATE FUNCTION {S}.number_state_event() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.seq IS NULL THEN
        NEW.seq := coalesce((SELECT k.seq FROM {S}.state_events k
                              WHERE k.project_id = NEW.project_id AND k.state_id = NEW.state_id
                              ORDER BY k.seq DESC LIMIT 1), 0) + 1;
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER state_events_numbered BEFORE INSERT ON {S}.state_events
    FOR EACH ROW EXECUTE FUNCTION {S}.number_state_event();

-- Keeps the newest `p_kept` events of a state id once event `p_newest` is written. Every writer
-- of an event calls it, so before that event only the newest `p_kept` were left and exactly one,
-- number `p_newest - p_kept`, falls out: deleting it is one index probe. A range
-- (`seq <= p_newest - p_kept`) would walk every dead index entry left since the last vacuum, or
-- be planned as a scan of the whole table, on every commit. Every `p_kept`-th event also sweeps
-- the whole range, so an event that outlived its turn (written by a path that did not prune)
-- is gone within `p_kept` commits.
CREATE FUNCTION {S}.prune_state_events(
    p_project TEXT, p_state_id TEXT, p_newest BIGINT, p_kept BIGINT
) RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_newest % p_kept = 0 THEN
        DELETE FROM {S}.state_events
         WHERE project_id = p_project AND state_id = p_state_id AND seq <= p_newest - p_kept;
    ELSE
        DELETE FROM {S}.state_events
         WHERE project_id = p_project AND state_id = p_state_id AND seq = p_newest - p_kept;
    END IF;
END
$fn$;

-- Whether `p_run` may still commit the state of `p_state_id`: its lease is held, unexpired on
-- the server's clock, by this run or by a holder that named no run. The lease row stays locked
-- until the transaction ends, so it cannot be taken over before the commit lands. NULL when the
-- flow has no lease row (`dsm state` commands, imports): nothing to check.
CREATE FUNCTION {S}.lease_lets_commit(p_project TEXT, p_state_id TEXT, p_run TEXT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$
DECLARE
    v_held BOOLEAN;
BEGIN
    SELECT l.token IS NOT NULL AND l.expires_at > clock_timestamp()
           AND (l.run_id IS NULL OR l.run_id = p_run)
      INTO v_held
      FROM {S}.flow_locks l
     WHERE l.project_id = p_project AND l.state_id = p_state_id
       FOR UPDATE;
    RETURN v_held;
END
$fn$;

-- A commit that replaces the stored state with a complete bookmark, so it needs nothing of the
-- old row, sent as one statement outside any transaction block: one round trip, where BEGIN,
-- the call and COMMIT were three, each waiting for the server to be scheduled on a host whose
-- cores the plugins keep busy.
--
-- When `p_run` is given and the flow has a lease row, the commit is refused (false, nothing
-- written) unless `lease_lets_commit`. Only the newest `p_kept` events of the state id are kept.
--
-- `p_commit` is the client's id of this commit, kept on the state row. A client whose
-- connection dropped before the answer came cannot know whether the commit landed, and sends
-- it again on a new connection: a call that finds its own id there (after waiting for the row
-- lock of a first attempt still running) answers true and writes nothing twice.
ALTER TABLE {S}.state ADD COLUMN last_commit TEXT;

CREATE FUNCTION {S}.commit_state(
    p_project TEXT, p_state_id TEXT, p_run TEXT, p_payload TEXT, p_action TEXT, p_detail TEXT,
    p_kept BIGINT, p_commit TEXT
) RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$
DECLARE
    v_seq BIGINT;
BEGIN
    IF p_run IS NOT NULL AND {S}.lease_lets_commit(p_project, p_state_id, p_run) IS FALSE THEN
        RETURN FALSE;
    END IF;
    PERFORM 1 FROM {S}.state s
      WHERE s.project_id = p_project AND s.state_id = p_state_id AND s.last_commit = p_commit
        FOR UPDATE;
    IF FOUND THEN
        RETURN TRUE;
    END IF;
    INSERT INTO {S}.state
        (project_id, state_id, completed_state, partial_state, updated_at, last_commit)
    VALUES (p_project, p_state_id, p_payload, '{}', now(), p_commit)
    ON CONFLICT (project_id, state_id) DO UPDATE
        SET completed_state = excluded.completed_state,
            partial_state = excluded.partial_state,
            updated_at = excluded.updated_at,
            last_commit = excluded.last_commit;
    INSERT INTO {S}.state_events (project_id, state_id, at, action, run_id, detail, payload)
    VALUES (p_project, p_state_id, clock_timestamp(), p_action, p_run, p_detail, p_payload)
    RETURNING seq INTO v_seq;
    PERFORM {S}.prune_state_events(p_project, p_state_id, v_seq, p_kept);
    RETURN TRUE;
END
$fn$;
