import { verifyCredential } from '@warmpool/registry/credentials';

export type GateResult =
  | { ok: true; sessionId: string }
  | { ok: false; reason: 'missing-credential' | 'invalid-credential' | 'other-session' };

/**
 * Lets through only requests of the session that claimed this instance. The credential is
 * `{sessionId}.{hmac(instanceKey, sessionId)}`, issued by the router; the first valid
 * session is pinned and every other one is refused afterwards, so even a leaked credential
 * of another session of this instance's key could not reach a used instance.
 */
export class SessionGate {
  private pinned: string | undefined;

  constructor(private readonly instanceKey: string) {}

  get pinnedSession(): string | undefined {
    return this.pinned;
  }

  check(credential: string | string[] | undefined): GateResult {
    const value = Array.isArray(credential) ? (credential.length === 1 ? credential[0] : undefined) : credential;
    if (!value) return { ok: false, reason: Array.isArray(credential) && credential.length > 1 ? 'invalid-credential' : 'missing-credential' };
    const sessionId = verifyCredential(this.instanceKey, value);
    if (sessionId === undefined) return { ok: false, reason: 'invalid-credential' };
    if (this.pinned === undefined) this.pinned = sessionId;
    else if (this.pinned !== sessionId) return { ok: false, reason: 'other-session' };
    return { ok: true, sessionId };
  }
}
