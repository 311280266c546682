import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Session credentials checked by the sidecar. The cluster secret lives in the registry
 * ({prefix}cluster). Each instance gets its own key, derived from the secret and its id,
 * handed to its sidecar by the agent; the router derives the same key and signs the
 * session id with it. A client never sees either key, so it cannot forge a credential, and
 * a credential for one instance is worthless at any other.
 */
export const CREDENTIAL_HEADER = 'x-warmpool-credential';
export const SESSION_HEADER = 'x-warmpool-session';

export function newClusterSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function instanceKey(clusterSecret: string, instanceId: string): string {
  return createHmac('sha256', clusterSecret).update(`instance:${instanceId}`).digest('base64url');
}

/** The credential header value: `{sessionId}.{hmac(instanceKey, sessionId)}`. */
export function sessionCredential(instanceKeyValue: string, sessionId: string): string {
  const mac = createHmac('sha256', instanceKeyValue).update(`session:${sessionId}`).digest('base64url');
  return `${sessionId}.${mac}`;
}

/** Returns the session id a credential was issued for, or undefined when it is not valid. */
export function verifyCredential(instanceKeyValue: string, credential: string | undefined): string | undefined {
  if (!credential || credential.length > 512) return undefined;
  const dot = credential.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const sessionId = credential.slice(0, dot);
  const expected = Buffer.from(sessionCredential(instanceKeyValue, sessionId));
  const given = Buffer.from(credential);
  if (expected.length !== given.length) return undefined;
  return timingSafeEqual(expected, given) ? sessionId : undefined;
}

/** Session ids: 128 random bits, base64url (22 characters). */
export const SESSION_ID_RE = /^[A-Za-z0-9_-]{22}$/;

export function newSessionId(random: (n: number) => Buffer = randomBytes): string {
  return random(16).toString('base64url');
}

export function isValidSessionId(id: string): boolean {
  return SESSION_ID_RE.test(id);
}
