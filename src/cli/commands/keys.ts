import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { collect } from '../input.js';
import { when } from '../output.js';

const SCOPES = ['jobs:read', 'jobs:write', 'webhooks:read', 'webhooks:write', 'schedules:read', 'schedules:write', 'account:read', 'account:write', 'admin', '*'] as const;
type Scope = (typeof SCOPES)[number];

interface CreateOptions {
  scope?: string[];
  expiresAt?: string;
}

export function registerKeys(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description('API keys of the logged-in user');

  keys
    .command('list', { isDefault: true })
    .description('list API keys (never the keys themselves)')
    .action(async () => {
      const client = await ctx.client();
      const list = await client.apiKeys.list();
      ctx.output.table(
        ['ID', 'NAME', 'PREFIX', 'SCOPES', 'EXPIRES', 'LAST USED'],
        list.map((key) => [key.id, key.name, key.prefix, key.scopes.join(','), when(key.expiresAt), when(key.lastUsedAt)]),
        list,
        'no API keys',
      );
    });

  keys
    .command('create')
    .description('create an API key; it is shown once')
    .argument('<name>')
    .option('--scope <scope>', `${SCOPES.join(', ')} (repeatable; default *: all you may do)`, collect)
    .option('--expires-at <time>', 'an ISO 8601 time after which the key stops working')
    .action(async (name: string, options: CreateOptions) => {
      const scopes = options.scope?.map((scope) => scopeOf(scope));
      const client = await ctx.client();
      const created = await client.apiKeys.create({
        name,
        ...(scopes ? { scopes } : {}),
        ...(options.expiresAt ? { expiresAt: options.expiresAt } : {}),
      });
      const output = ctx.output;
      if (output.json) return output.writeJson(created);
      output.line(created.key);
      output.note(`created key ${created.id} (${created.scopes.join(',')}); store it now, it is not shown again`);
    });

  keys
    .command('revoke')
    .description('revoke API keys: they stop working at once')
    .argument('<ids...>')
    .action(async (ids: string[]) => {
      const client = await ctx.client();
      for (const id of ids) {
        await client.apiKeys.revoke(id);
        ctx.output.line(`revoked key ${id}`);
      }
      if (ctx.output.json) ctx.output.writeJson(ids.map((id) => ({ id, revoked: true })));
    });
}

function scopeOf(text: string): Scope {
  // The server validates too; checking here names the flag and lists the choices.
  const scope = SCOPES.find((known) => known === text);
  if (!scope) throw new CliError(`--scope '${text}' is not a scope`, `use one of ${SCOPES.join(', ')}`);
  return scope;
}
