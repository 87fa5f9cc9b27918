import type Database from 'better-sqlite3';
import type { TaskListPosition, TaskListQuery } from './store.js';

/**
 * Schema 7: what GET /tasks reads, so that a page costs the same at any size and depth.
 * - `username` on each task: the key's name when it created the task, or the end user's id.
 * - One index per scope a listing can have (a key's tasks, an end user's, the project's), in
 *   listing order, and one more per scope with the status first, for `status=`. Each ends with
 *   show_in_history, so that hidden tasks are skipped in the index without reading their rows.
 *   The key and end-user indexes are partial: a task is in the one of its creator only.
 * - `task_counts`: the number of tasks per scope, visibility and status, kept by triggers in the
 *   statement that changes a task, so `pagination.total` is a sum of at most 12 rows, not COUNT(*).
 * Written out in full, as every migration is: it must not change once released.
 */
export const LISTING_MIGRATION = `
  ALTER TABLE tasks ADD COLUMN username TEXT;
  UPDATE tasks SET username = CASE WHEN api_key_id IS NOT NULL THEN (SELECT name FROM api_keys WHERE api_keys.id = tasks.api_key_id) ELSE end_user_id END;
  DROP INDEX tasks_by_activity;
  CREATE INDEX tasks_of_project ON tasks(project_id, last_activity_at, no, show_in_history);
  CREATE INDEX tasks_of_project_by_status ON tasks(project_id, status, last_activity_at, no, show_in_history);
  CREATE INDEX tasks_of_key ON tasks(project_id, api_key_id, last_activity_at, no, show_in_history) WHERE api_key_id IS NOT NULL;
  CREATE INDEX tasks_of_key_by_status ON tasks(project_id, api_key_id, status, last_activity_at, no, show_in_history) WHERE api_key_id IS NOT NULL;
  CREATE INDEX tasks_of_user ON tasks(project_id, end_user_id, last_activity_at, no, show_in_history) WHERE end_user_id IS NOT NULL;
  CREATE INDEX tasks_of_user_by_status ON tasks(project_id, end_user_id, status, last_activity_at, no, show_in_history) WHERE end_user_id IS NOT NULL;
  CREATE TABLE task_counts (
    project_id TEXT NOT NULL, scope TEXT NOT NULL, owner TEXT NOT NULL, shown INTEGER NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (project_id, scope, owner, shown, status)) WITHOUT ROWID;
  INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
    SELECT project_id, 'project', '', show_in_history, status, COUNT(*) FROM tasks GROUP BY project_id, show_in_history, status;
  INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
    SELECT project_id, 'key', api_key_id, show_in_history, status, COUNT(*) FROM tasks WHERE api_key_id IS NOT NULL
    GROUP BY project_id, api_key_id, show_in_history, status;
  INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
    SELECT project_id, 'user', end_user_id, show_in_history, status, COUNT(*) FROM tasks WHERE end_user_id IS NOT NULL
    GROUP BY project_id, end_user_id, show_in_history, status;
  CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'project', '', new.show_in_history, new.status, 1 WHERE true ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'key', new.api_key_id, new.show_in_history, new.status, 1 WHERE new.api_key_id IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'user', new.end_user_id, new.show_in_history, new.status, 1 WHERE new.end_user_id IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'project' AND owner = '' AND shown = old.show_in_history AND status = old.status;
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'key' AND owner = old.api_key_id AND shown = old.show_in_history AND status = old.status;
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'user' AND owner = old.end_user_id AND shown = old.show_in_history AND status = old.status;
  END;
  CREATE TRIGGER tasks_count_update AFTER UPDATE OF status, show_in_history, project_id, api_key_id, end_user_id ON tasks
    WHEN old.status IS NOT new.status OR old.show_in_history IS NOT new.show_in_history OR old.project_id IS NOT new.project_id
      OR old.api_key_id IS NOT new.api_key_id OR old.end_user_id IS NOT new.end_user_id
  BEGIN
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'project' AND owner = '' AND shown = old.show_in_history AND status = old.status;
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'key' AND owner = old.api_key_id AND shown = old.show_in_history AND status = old.status;
    UPDATE task_counts SET n = n - 1 WHERE project_id = old.project_id AND scope = 'user' AND owner = old.end_user_id AND shown = old.show_in_history AND status = old.status;
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'project', '', new.show_in_history, new.status, 1 WHERE true ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'key', new.api_key_id, new.show_in_history, new.status, 1 WHERE new.api_key_id IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO task_counts (project_id, scope, owner, shown, status, n)
      SELECT new.project_id, 'user', new.end_user_id, new.show_in_history, new.status, 1 WHERE new.end_user_id IS NOT NULL ON CONFLICT DO UPDATE SET n = n + 1;
  END;`;

/** The columns a listed row needs for its position. */
interface PositionedRow {
  no: number;
  last_activity_at: string;
}

/** A page of rows in listing order, the matching total, and the position after the page when more follow. */
export interface ListedRows<Row> {
  rows: Row[];
  total: number;
  next: TaskListPosition | null;
}

/**
 * One page of `SELECT *` rows of tasks for `query`, newest activity first (ties: newest task first),
 * with its total. `statement` prepares (and caches) SQL; run it inside one read transaction, so
 * that the total and the rows agree. Every page is an index range of at most limit + 1 entries
 * (after a position, or from either end of the list), except an offset in the middle of a long
 * list, which SQLite steps over in the index: cursors (`after`) are the way to walk far.
 */
export function listTaskRows<Row extends PositionedRow>(statement: (sql: string) => Database.Statement, query: TaskListQuery): ListedRows<Row> {
  const scope = query.apiKeyId !== undefined ? 'key' : query.endUserId !== undefined ? 'user' : 'project';
  const where = ['project_id = @projectId'];
  const counted = ['project_id = @projectId', `scope = '${scope}'`, 'owner = @owner'];
  if (scope === 'key') where.push('api_key_id = @owner');
  if (scope === 'user') where.push('end_user_id = @owner');
  if (!query.includeHidden) {
    where.push('show_in_history = 1');
    counted.push('shown = 1');
  }
  if (query.status) {
    where.push('status = @status');
    counted.push('status = @status');
  }
  const params: Record<string, unknown> = {
    projectId: query.projectId, owner: query.apiKeyId ?? query.endUserId ?? '', status: query.status, offset: query.offset,
  };
  const total = (statement(`SELECT COALESCE(SUM(n), 0) AS n FROM task_counts WHERE ${counted.join(' AND ')}`).get(params) as { n: number }).n;
  if (query.after) {
    where.push('(last_activity_at, no) < (@afterActivity, @afterNo)');
    params.afterActivity = query.after.lastActivityAt;
    params.afterNo = query.after.no;
  } else if (query.offset >= total) {
    return { rows: [], total, next: null };
  } else if (query.offset * 2 > total) {
    // Past the middle, the page is read from the oldest end: the last page costs what the first does.
    const end = total - query.offset;
    params.offset = Math.max(0, end - query.limit);
    params.limit = end - (params.offset as number);
    const rows = (statement(`SELECT * FROM tasks WHERE ${where.join(' AND ')} ORDER BY last_activity_at, no LIMIT @limit OFFSET @offset`).all(params) as Row[]).reverse();
    return { rows, total, next: query.offset + rows.length < total ? positionOf(rows[rows.length - 1]) : null };
  }
  params.limit = query.limit + 1;
  const rows = statement(`SELECT * FROM tasks WHERE ${where.join(' AND ')} ORDER BY last_activity_at DESC, no DESC LIMIT @limit OFFSET @offset`).all(params) as Row[];
  const more = rows.length > query.limit;
  if (more) rows.pop();
  return { rows, total, next: more ? positionOf(rows[rows.length - 1]) : null };
}

function positionOf(row: PositionedRow | undefined): TaskListPosition | null {
  return row ? { lastActivityAt: row.last_activity_at, no: row.no } : null;
}
