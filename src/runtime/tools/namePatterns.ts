/**
 * Whether `name` matches `pattern`, where `*` stands for any run of characters and everything else
 * is literal (tool policies, includeTools and excludeTools).
 */
export function globMatch(pattern: string, name: string): boolean {
  let regex = compiled.get(pattern);
  if (!regex) {
    regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    compiled.set(pattern, regex);
  }
  return regex.test(name);
}

// Patterns come from the config file (a bounded set) and are matched on every tool call and listing.
const compiled = new Map<string, RegExp>();
