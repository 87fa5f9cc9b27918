/** Who is calling: an API key of a project (with the key's name, if it has one), or a widget end user holding a JWT. */
export type Principal =
  | { kind: 'apiKey'; projectId: string; apiKeyId: string; keyName: string | null }
  | { kind: 'endUser'; projectId: string; endUserId: string };

/** The id an audit trail shows for a caller. */
export function principalId(principal: Principal): string {
  return principal.kind === 'apiKey' ? `key:${principal.apiKeyId}` : `user:${principal.endUserId}`;
}
