import type { Command } from 'commander';
import type { WebhookDelivery } from '../../client/index.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { integerOption } from '../input.js';
import { brief, when } from '../output.js';

const STATUSES = ['pending', 'succeeded', 'failed'] as const;

export function registerWebhooks(program: Command, ctx: CliContext): void {
  const webhooks = program.command('webhooks').description('webhook endpoints and their deliveries');

  webhooks
    .command('list', { isDefault: true })
    .description('list webhook endpoints')
    .action(async () => {
      const client = await ctx.client();
      const list = await client.webhooks.list();
      const output = ctx.output;
      output.table(
        ['ID', 'URL', 'EVENTS', 'QUEUE', 'STATUS'],
        list.map((endpoint) => [
          endpoint.id,
          endpoint.url,
          endpoint.events.join(','),
          endpoint.queue ?? '*',
          endpoint.enabled ? 'enabled' : output.color.yellow(`disabled${endpoint.disabledReason ? `: ${endpoint.disabledReason}` : ''}`),
        ]),
        list,
        'no webhook endpoints',
      );
    });

  webhooks
    .command('deliveries')
    .description("an endpoint's deliveries, newest first")
    .argument('<endpoint>', 'the endpoint ID')
    .option('--status <status>', STATUSES.join(', '))
    .option('--limit <n>', 'show at most this many (default 50)', integerOption('--limit', 1, 10_000), 50)
    .action(async (endpoint: string, options: { status?: string; limit: number }) => {
      const status = options.status === undefined ? undefined : STATUSES.find((known) => known === options.status);
      if (options.status !== undefined && !status) throw new CliError(`--status must be ${STATUSES.join(', ')}, not '${options.status}'`);
      const client = await ctx.client();
      const list = await client.webhooks.deliveries(endpoint, status ? { status } : {}).toArray(options.limit);
      const output = ctx.output;
      output.table(
        ['ID', 'EVENT', 'JOB', 'STATUS', 'HTTP', 'TRIES', 'CREATED', 'NEXT TRY'],
        list.map((delivery) => [
          delivery.id,
          delivery.eventType,
          delivery.jobId ?? '-',
          output.state(delivery.status),
          delivery.lastStatusCode ?? brief(delivery.lastError?.code),
          delivery.attempts,
          when(delivery.createdAt),
          when(delivery.nextAttemptAt),
        ]),
        list,
        'no deliveries',
      );
    });

  webhooks
    .command('redeliver')
    .description('send a delivery again')
    .argument('<endpoint>', 'the endpoint ID')
    .argument('<delivery>', 'the delivery ID')
    .action(async (endpoint: string, deliveryId: string) => {
      const client = await ctx.client();
      const delivery: WebhookDelivery = await client.webhooks.redeliver(endpoint, deliveryId);
      const output = ctx.output;
      output.line(`delivery ${delivery.id} queued again (${output.state(delivery.status)})`);
      if (output.json) output.writeJson(delivery);
    });
}
