import type { McpServerConfig } from '../config.js';

const TEMPLATE = /\{\{\s*mcp\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** A server config with every template replaced, and the values that went in (for scrubbing). */
export interface ResolvedServer {
  config: McpServerConfig;
  /** KEY → value of each template used; never logged or stored. */
  used: Record<string, string>;
}

export type TemplateResolution = { ok: true; server: ResolvedServer } | { ok: false; missingKeys: string[] };

/**
 * Resolves `{{mcp.KEY}}` (whitespace allowed inside the braces) in url (URL-encoded), headers,
 * env and args from the task's variables (API.md section 8). Any missing key: nothing resolved.
 */
export function resolveTemplates(config: McpServerConfig, variables: Readonly<Record<string, string>>): TemplateResolution {
  const used: Record<string, string> = {};
  const missing = new Set<string>();
  const fill = (text: string, encode: boolean) =>
    text.replace(TEMPLATE, (_match, key: string) => {
      const value = Object.hasOwn(variables, key) ? variables[key] : undefined;
      if (typeof value !== 'string') {
        missing.add(key);
        return '';
      }
      used[key] = value;
      return encode ? encodeURIComponent(value) : value;
    });
  const mapValues = (record: Record<string, string> | undefined) =>
    record && Object.fromEntries(Object.entries(record).map(([name, value]) => [name, fill(value, false)]));

  const resolved: McpServerConfig = {
    ...config,
    ...(config.url !== undefined ? { url: fill(config.url, true) } : {}),
    ...(config.headers ? { headers: mapValues(config.headers) } : {}),
    ...(config.env ? { env: mapValues(config.env) } : {}),
    ...(config.args ? { args: config.args.map((arg) => fill(arg, false)) } : {}),
  };
  if (missing.size) return { ok: false, missingKeys: [...missing].sort() };
  return { ok: true, server: { config: resolved, used } };
}

/** The template keys a server config refers to. */
export function templateKeys(config: McpServerConfig): string[] {
  const texts = [config.url ?? '', ...Object.values(config.headers ?? {}), ...Object.values(config.env ?? {}), ...(config.args ?? [])];
  const keys = new Set<string>();
  for (const text of texts) for (const match of text.matchAll(TEMPLATE)) keys.add(match[1]!);
  return [...keys].sort();
}
