import type { Readable } from 'node:stream';
import { archiveWorkspace, listArtifacts, openArtifact } from '../../sandbox/artifacts.js';
import type { Artifact, ArtifactFile } from '../../sandbox/artifacts.js';
import type { Workspaces } from '../../sandbox/workspaces.js';
import type { Principal } from '../security/principal.js';
import type { TaskService } from './taskService.js';

/**
 * The files of a task's workspace, for any caller who may see the task, in any status (API.md
 * section 6). Another project's task is NOT_FOUND, as everywhere.
 */
export class TaskArtifacts {
  constructor(private readonly tasks: TaskService, private readonly workspaces: Workspaces) {}

  async list(principal: Principal, taskId: string): Promise<{ files: Artifact[]; truncated: boolean }> {
    await this.tasks.visibleTask(principal, taskId);
    return listArtifacts(await this.workspaces.open(taskId));
  }

  /** One file, opened for streaming; the caller closes its handle. */
  async file(principal: Principal, taskId: string, path: string): Promise<ArtifactFile> {
    await this.tasks.visibleTask(principal, taskId);
    return openArtifact(await this.workspaces.open(taskId), path);
  }

  /** The whole workspace as a .tar.gz stream. */
  async archive(principal: Principal, taskId: string): Promise<Readable> {
    await this.tasks.visibleTask(principal, taskId);
    return archiveWorkspace(await this.workspaces.open(taskId));
  }
}
