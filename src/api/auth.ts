import type { Context, Next } from 'koa';
import { jwtVerify, errors as joseErrors } from 'jose';
import { ServiceError } from '../errors.js';
import { API_KEY_PATTERN, ApiKeyVerifier } from '../runtime/security/apiKeys.js';
import type { Principal } from '../runtime/security/principal.js';
import type { Store } from '../store/store.js';

/** The audience Airlock's widget JWTs carry. */
export const JWT_AUDIENCE = 'airlock';
const JWT_PATTERN = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface AuthOptions {
  store: Store;
  /** HS256 secret; JWTs are refused with JWT_NOT_CONFIGURED without it. */
  jwtSecret?: string;
  /** Projects a token may name. */
  projects: ReadonlySet<string>;
}

/** Reads the credential of a request: `Authorization: Bearer …` first, then `X-API-Key`. */
export function credentialOf(ctx: Context): string | undefined {
  const header = ctx.get('authorization');
  if (header) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new ServiceError('INVALID_AUTH_FORMAT', 'The Authorization header must be "Bearer <API key or token>"');
    return match[1];
  }
  return ctx.get('x-api-key') || undefined;
}

/** Koa middleware: sets ctx.state.principal or throws the right 401/501. */
export function authenticate(options: AuthOptions) {
  const secret = options.jwtSecret ? new TextEncoder().encode(options.jwtSecret) : undefined;
  const keys = new ApiKeyVerifier(options.store);
  return async (ctx: Context, next: Next) => {
    const credential = credentialOf(ctx);
    if (!credential) throw new ServiceError('AUTH_REQUIRED', 'Send an API key as "Authorization: Bearer <key>" or "X-API-Key: <key>"');
    if (API_KEY_PATTERN.test(credential)) {
      const key = await keys.verify(credential);
      if (!key) throw new ServiceError('INVALID_API_KEY', 'The API key is unknown, revoked or expired');
      ctx.state.principal = { kind: 'apiKey', projectId: key.projectId, apiKeyId: key.id, keyName: key.name } satisfies Principal;
    } else if (JWT_PATTERN.test(credential)) {
      if (!secret) throw new ServiceError('JWT_NOT_CONFIGURED', 'This Airlock has no JWT signing secret (AIRLOCK_JWT_SECRET), so it accepts API keys only');
      ctx.state.principal = await verifyJwt(credential, secret, options.projects);
    } else {
      throw new ServiceError('INVALID_AUTH_FORMAT', 'The credential is neither an Airlock API key ("airlock_" + 64 hex) nor a JWT');
    }
    await next();
  };
}

async function verifyJwt(token: string, secret: Uint8Array, projects: ReadonlySet<string>): Promise<Principal> {
  try {
    // Pinning the algorithm list is what refuses `alg: none` and key-confusion tokens.
    const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], audience: JWT_AUDIENCE, requiredClaims: ['exp', 'sub'] });
    // A signed claim is still the signer's input: jose checks only that `sub` is there.
    const projectId = typeof payload.project === 'string' ? payload.project : undefined;
    const endUserId = typeof payload.sub === 'string' ? payload.sub : undefined;
    if (!projectId || !endUserId) throw new ServiceError('INVALID_TOKEN', 'The token\'s "project" and "sub" must be non-empty strings');
    if (!projects.has(projectId)) throw new ServiceError('INVALID_TOKEN', 'The token names a project this Airlock does not have');
    return { kind: 'endUser', projectId, endUserId };
  } catch (err) {
    if (err instanceof ServiceError) throw err;
    const reason = err instanceof joseErrors.JWTExpired ? 'The token has expired' : 'The token is not valid';
    throw new ServiceError('INVALID_TOKEN', reason);
  }
}
