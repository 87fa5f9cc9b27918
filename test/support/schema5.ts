import Database from 'better-sqlite3';
import { downgradeToSchema6 } from './schema6.js';

/**
 * Rewrites a store file of schema 7 as schema 5 had it (tasks, messages and events keyed by the
 * task's text id), so that tests can migrate a database holding rows written by real runs. Tasks
 * go in newest first, so their rowids are not in created_at order. The DDL is schema 5's, as the
 * store's migrations 1 to 5 left it.
 */
export function downgradeToSchema5(path: string): void {
  downgradeToSchema6(path);
  const db = new Database(path);
  try {
    db.pragma('foreign_keys = OFF');
    db.transaction(() => {
      db.exec(`
        CREATE TABLE tasks_v5 (
          id TEXT PRIMARY KEY, project_id TEXT NOT NULL, api_key_id TEXT, end_user_id TEXT,
          session_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL,
          message TEXT NOT NULL, system_prompt TEXT, show_in_history INTEGER NOT NULL, auto_execute INTEGER NOT NULL,
          env TEXT, error TEXT, usage TEXT NOT NULL,
          created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, last_activity_at TEXT NOT NULL,
          message_count INTEGER NOT NULL DEFAULT 0, run_start_seq INTEGER NOT NULL DEFAULT 0, secret_keys TEXT NOT NULL DEFAULT '[]');
        INSERT INTO tasks_v5 SELECT id, project_id, api_key_id, end_user_id, session_id, conversation_id, status, message, system_prompt,
          show_in_history, auto_execute, env, error, usage, created_at, started_at, completed_at, last_activity_at,
          message_count, run_start_seq, secret_keys FROM tasks ORDER BY no DESC;
        CREATE TABLE messages_v5 (
          task_id TEXT NOT NULL REFERENCES tasks(id), position INTEGER NOT NULL, id TEXT NOT NULL,
          role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL,
          attached_files TEXT, thoughts TEXT, tool_calls TEXT, after_seq INTEGER NOT NULL,
          PRIMARY KEY (task_id, position)) WITHOUT ROWID;
        INSERT INTO messages_v5 SELECT t.id, m.position, m.id, m.role, m.content, m.created_at, m.attached_files, m.thoughts, m.tool_calls, m.after_seq
          FROM messages m JOIN tasks t ON t.no = m.task_no;
        CREATE TABLE events_v5 (
          task_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL,
          PRIMARY KEY (task_id, seq)) WITHOUT ROWID;
        INSERT INTO events_v5 SELECT t.id, e.seq, e.type, e.data, e.created_at FROM events e JOIN tasks t ON t.no = e.task_no;
        DROP TABLE messages;
        DROP TABLE events;
        DROP TABLE tasks;
        ALTER TABLE tasks_v5 RENAME TO tasks;
        ALTER TABLE messages_v5 RENAME TO messages;
        ALTER TABLE events_v5 RENAME TO events;
        CREATE INDEX tasks_by_activity ON tasks(project_id, last_activity_at DESC);
        CREATE INDEX tasks_by_status ON tasks(status);`);
      db.pragma('user_version = 5');
    })();
  } finally {
    db.close();
  }
}
