import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env.js';
import { emailSchema } from '../../src/routes/schemas.js';
import { DEFAULT_ADMIN_EMAIL } from '../../src/services/firstAdmin.js';

describe('email addresses', () => {
  it.each(['admin@localhost', 'ops@intranet', 'Boss@Example.com', 'a.b+tag@sub.example.org'])('accepts %s', (address) => {
    expect(emailSchema.safeParse(address).success).toBe(true);
  });

  it.each(['not-an-email', 'two@@example.com', '@example.com', 'user@', 'sp ace@example.com', 'user@-bad-.com'])('refuses %s', (address) => {
    expect(emailSchema.safeParse(address).success).toBe(false);
  });

  it('lets JOBLINE_ADMIN_EMAIL name the generated default, admin@localhost', () => {
    const config = loadConfig({ env: { JOBLINE_ADMIN_EMAIL: DEFAULT_ADMIN_EMAIL }, envFile: false, cwd: '/srv/jobline' });
    expect(config.adminEmail).toBe(DEFAULT_ADMIN_EMAIL);
  });
});
