import type { Command } from 'commander';
import type { Queue } from '../../client/index.js';
import type { CliContext } from '../context.js';

export function registerQueues(program: Command, ctx: CliContext): void {
  const queues = program.command('queues').description('job counts per queue; pause and resume queues (admin)');

  queues
    .command('list', { isDefault: true })
    .description('a table of every queue and its job counts')
    .action(async () => {
      const client = await ctx.client();
      const list = await client.queues.list();
      const output = ctx.output;
      output.table(
        ['QUEUE', 'STATUS', 'QUEUED', 'SCHEDULED', 'ACTIVE', 'COMPLETED', 'FAILED', 'CANCELLED'],
        list.map((queue) => [
          queue.name,
          queue.paused ? output.color.yellow('paused') : 'running',
          queue.counts.queued,
          queue.counts.scheduled,
          queue.counts.active,
          queue.counts.completed,
          queue.counts.failed,
          queue.counts.cancelled,
        ]),
        list,
        'no queues yet',
      );
    });

  queues
    .command('pause')
    .description('stop handing out jobs from a queue (running jobs finish)')
    .argument('<name>')
    .action(async (name: string) => {
      const client = await ctx.client();
      said(ctx, await client.queues.pause(name));
    });

  queues
    .command('resume')
    .description('hand out jobs from a paused queue again')
    .argument('<name>')
    .action(async (name: string) => {
      const client = await ctx.client();
      said(ctx, await client.queues.resume(name));
    });
}

function said(ctx: CliContext, queue: Queue): void {
  const output = ctx.output;
  output.line(`queue ${queue.name} ${queue.paused ? output.color.yellow('paused') : 'resumed'}`);
  if (output.json) output.writeJson(queue);
}
