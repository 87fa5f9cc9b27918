import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { TaskService } from '../runtime/tasks/taskService.js';
import type { TaskStreams } from '../runtime/tasks/taskStream.js';
import type { TaskArtifacts } from '../runtime/tasks/taskArtifacts.js';
import type { Uploads } from '../sandbox/uploads.js';
import { authenticate } from './auth.js';
import { errorHandler } from './errorHandler.js';
import { healthChecks } from './health.js';
import type { HealthOptions } from './health.js';
import { rateLimit } from './rateLimit.js';
import { requestLogger } from './requestLog.js';
import { taskRoutes } from './taskRoutes.js';

export interface AppOptions extends HealthOptions {
  store: Store;
  tasks: TaskService;
  streams: TaskStreams;
  artifacts: TaskArtifacts;
  /** Where uploaded files wait while a request is checked, and their limits. */
  uploads: Uploads;
  logger: Logger;
  jwtSecret?: string;
  /** Names of the configured projects. */
  projects: string[];
  bodyLimitBytes: number;
  heartbeatIntervalMs: number;
  rateLimit?: { requestsPerMinute: number; burst?: number };
}

/** Builds the Koa app without listening: tests drive it over a real socket on port 0. */
export function buildApp(options: AppOptions): Koa {
  const app = new Koa();
  app.proxy = false;
  // Errors are handled and logged by errorHandler; Koa's default handler would print to stderr.
  app.silent = true;

  app.use(requestLogger(options.logger));
  app.use(errorHandler());

  app.use(healthChecks(options));

  const api = new Router({ prefix: '/api/v1' });
  api.use(authenticate({ store: options.store, jwtSecret: options.jwtSecret, projects: new Set(options.projects) }));
  if (options.rateLimit) api.use(rateLimit(options.rateLimit));
  taskRoutes(api, options);
  app.use(api.routes());
  return app;
}
