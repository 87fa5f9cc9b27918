import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/**
 * The installed Anthropic SDK's own model tables, the ones `messages.create` warns from. They are
 * not among the package's exports, so they are loaded by file; a test fails loudly when the SDK
 * moves them, which is the moment to look again at what it warns about.
 */
export function anthropicSdkTables(): { deprecated: Readonly<Record<string, string>>; warnWithThinkingEnabled: readonly string[] } {
  const root = dirname(require.resolve('@anthropic-ai/sdk'));
  const data = require(join(root, 'internal', 'data.js')) as { DEPRECATED_MODELS?: Record<string, string>; MODELS_TO_WARN_WITH_THINKING_ENABLED?: string[] };
  if (!data.DEPRECATED_MODELS || !data.MODELS_TO_WARN_WITH_THINKING_ENABLED) throw new Error(`the Anthropic SDK's model tables are not where they were (${root}/internal/data.js)`);
  return { deprecated: data.DEPRECATED_MODELS, warnWithThinkingEnabled: data.MODELS_TO_WARN_WITH_THINKING_ENABLED };
}
