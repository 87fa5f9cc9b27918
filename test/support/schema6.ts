import Database from 'better-sqlite3';

/**
 * Rewrites a store file of schema 7 as schema 6 had it: no `username`, no per-scope listing
 * indexes, no maintained counts; so that tests can migrate a database holding rows written by
 * real runs. The DDL is schema 6's, as the store's migrations 1 to 6 left it.
 */
export function downgradeToSchema6(path: string): void {
  const db = new Database(path);
  try {
    db.transaction(() => {
      db.exec(`
        DROP TRIGGER tasks_count_insert;
        DROP TRIGGER tasks_count_delete;
        DROP TRIGGER tasks_count_update;
        DROP TABLE task_counts;
        DROP INDEX tasks_of_project;
        DROP INDEX tasks_of_project_by_status;
        DROP INDEX tasks_of_key;
        DROP INDEX tasks_of_key_by_status;
        DROP INDEX tasks_of_user;
        DROP INDEX tasks_of_user_by_status;
        ALTER TABLE tasks DROP COLUMN username;
        CREATE INDEX tasks_by_activity ON tasks(project_id, last_activity_at DESC);`);
      db.pragma('user_version = 6');
    })();
  } finally {
    db.close();
  }
}
