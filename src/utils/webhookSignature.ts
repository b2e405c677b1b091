import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): secrets are `whsec_` + base64 of
 * the key, and a signature is `v1,` + base64 HMAC-SHA256 of `<webhook-id>.<unix seconds>.<body>`.
 * The official package does the signing, so receivers verifying with it agree with us byte for byte.
 */

export const WEBHOOK_SECRET_PREFIX = 'whsec_';
/** 24 random bytes: 192 bits of key, and a secret without base64 padding. */
const SECRET_BYTES = 24;

export function newWebhookSecret(): string {
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;
}

/**
 * The `webhook-signature` header: one `v1,<signature>` per secret, space-separated, so during a
 * rotation a receiver holding either the old or the new secret can verify.
 */
export function signatureHeader(secrets: readonly string[], messageId: string, at: Date, body: string): string {
  return secrets.map((secret) => new Webhook(secret).sign(messageId, at, body)).join(' ');
}
