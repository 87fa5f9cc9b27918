import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { ProjectConfig, SandboxConfig } from './config.js';

/**
 * Paths the config asks a sandbox to show that no sandbox may show: Airlock's data directory (the
 * database, every workspace) or its config file, or a path inside them.
 */
export function hiddenPathProblems(input: { sandbox?: Partial<SandboxConfig>; projects: Record<string, ProjectConfig>; dataDir: string; configPath?: string }): string[] {
  const problems: string[] = [];
  const check = (where: string, path: string) => {
    if (!isAbsolute(path) || path.includes('{{')) return;
    const real = realOrSelf(path);
    const dataDir = realOrSelf(input.dataDir);
    if (isInside(dataDir, real)) problems.push(`${where}: "${path}" is inside Airlock's data directory (${input.dataDir}), which no sandbox shows`);
    else if (input.configPath && real === realOrSelf(input.configPath)) problems.push(`${where}: "${path}" is Airlock's config file, which no sandbox shows`);
  };
  (input.sandbox?.readOnlyPaths ?? []).forEach((path, index) => check(`sandbox.readOnlyPaths[${index}]`, path));
  for (const [name, project] of Object.entries(input.projects)) {
    for (const [serverName, server] of Object.entries(project.mcpServers ?? {})) {
      if (server.type !== 'stdio') continue;
      const where = `projects.${name}.mcpServers.${serverName}`;
      if (server.command) check(`${where}.command`, server.command);
      (server.args ?? []).forEach((arg, index) => check(`${where}.args[${index}]`, arg));
      (server.sandbox?.readOnlyPaths ?? []).forEach((path, index) => {
        if (!isAbsolute(path) || resolve(path) === '/') problems.push(`${where}.sandbox.readOnlyPaths[${index}]: "${path}" must be an absolute path other than /`);
        else check(`${where}.sandbox.readOnlyPaths[${index}]`, path);
      });
    }
  }
  return problems;
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
