import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Whether this is the compiled build (`npm run build`: `.js` files under dist/) rather than the
 * TypeScript sources of a checkout, which run through tsx.
 */
export const RUNS_FROM_BUILD = import.meta.url.endsWith('.js');

/** Airlock's package: the directory of its package.json and node_modules, above src/ or dist/src/. */
export const PROJECT_ROOT = fileURLToPath(new URL(RUNS_FROM_BUILD ? '../..' : '..', import.meta.url));

/**
 * The file of one of Airlock's own modules, named by its source path (`mcp-servers/workspace/server.ts`):
 * that file in a checkout, its compiled `.js` under dist/ in the build.
 */
export function ownModulePath(sourcePath: string): string {
  return RUNS_FROM_BUILD ? join(PROJECT_ROOT, 'dist', sourcePath.replace(/\.ts$/, '.js')) : join(PROJECT_ROOT, sourcePath);
}
