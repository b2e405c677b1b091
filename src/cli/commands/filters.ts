import type { Command } from 'commander';
import type { ListJobsQuery } from '../../client/index.js';

export interface FilterOptions {
  state?: string;
  queue?: string;
  type?: string;
  tag?: string;
}

/** The filters `jobs list` and the by-filter actions share. */
export function withFilters(command: Command): Command {
  return command
    .option('--state <states>', 'queued, scheduled, active, completed, failed, cancelled (comma-separated)')
    .option('--queue <name>', 'only this queue')
    .option('--type <type>', 'only this job type')
    .option('--tag <tag>', 'only jobs with this tag');
}

export function filterQuery(options: FilterOptions): ListJobsQuery {
  return {
    ...(options.state ? { state: options.state } : {}),
    ...(options.queue ? { queue: options.queue } : {}),
    ...(options.type ? { type: options.type } : {}),
    ...(options.tag ? { tag: options.tag } : {}),
  };
}
