import type { Command } from 'commander';
import { sessionToStore, type CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { ask, askSecret } from '../input.js';

interface LoginOptions {
  email?: string;
  password?: string;
}

export function registerAuth(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description('store a profile: the server and an API key (--api-key) or a login (--email/--password)')
    .option('--email <email>', 'log in as this user (the refresh token is stored and kept up to date)')
    .option('--password <password>', 'the password; asked for on a terminal when omitted')
    .action((options: LoginOptions) => login(ctx, options));

  program
    .command('logout')
    .description("forget the profile's credentials (and end the login on the server)")
    .action(() => logout(ctx));

  program
    .command('whoami')
    .description('show the user the credentials in use belong to')
    .action(async () => {
      const client = await ctx.client();
      const user = await client.me();
      ctx.output.record(
        [
          ['email', user.email],
          ['role', user.role],
          ['id', user.id],
          ['server', ctx.url ?? '-'],
        ],
        user,
      );
    });
}

async function login(ctx: CliContext, options: LoginOptions): Promise<void> {
  const url = ctx.resolveUrl();
  const output = ctx.output;
  const apiKey = ctx.globals.apiKey ?? (options.email === undefined ? (ctx.env.apiKey ?? undefined) : undefined);
  if (apiKey !== undefined) {
    // Checked before storing, so a mistyped key fails now rather than at the next command.
    const user = await ctx.makeClient(url, { apiKey }).me();
    ctx.store.save(ctx.profileName, { url, apiKey, email: user.email });
    output.line(`logged in to ${url} as ${user.email} with an API key; profile '${ctx.profileName}' saved in ${ctx.store.file}`);
    if (output.json) output.writeJson({ url, profile: ctx.profileName, user });
    return;
  }
  const email = options.email ?? (ctx.io.stdin.isTTY === true ? (await ask(ctx.io, 'email: ')).trim() : undefined);
  if (!email) throw new CliError('login needs --api-key KEY, or --email E (and --password P off a terminal)', 'see jobline login --help');
  const password = options.password ?? (await askSecret(ctx.io, 'password: '));
  const client = ctx.makeClient(url, {});
  const session = await client.login(email, password);
  ctx.store.save(ctx.profileName, { url, email: session.user.email, session: sessionToStore(session) });
  output.line(`logged in to ${url} as ${session.user.email}; profile '${ctx.profileName}' saved in ${ctx.store.file}`);
  if (output.json) output.writeJson({ url, profile: ctx.profileName, user: session.user });
}

async function logout(ctx: CliContext): Promise<void> {
  const profile = ctx.profile();
  const output = ctx.output;
  if (!profile) {
    output.note(`no profile '${ctx.profileName}' to log out of`);
    return;
  }
  if (profile.session) {
    try {
      await ctx.makeClient(profile.url, { session: profile.session }).logout();
    } catch (error) {
      // The local credentials go anyway: being unable to reach the server must not keep them.
      output.note(`jobline: could not end the login on ${profile.url} (${error instanceof Error ? error.message : String(error)}); forgetting it here anyway`);
    }
  }
  ctx.store.remove(ctx.profileName);
  output.line(`logged out of ${profile.url}; profile '${ctx.profileName}' removed`);
  if (profile.apiKey) output.note('the API key itself still works until revoked: jobline keys revoke ID');
}
