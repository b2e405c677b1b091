import type { Config } from '../config/env.js';
import { createOutboundPolicy } from '../utils/ssrfGuard.js';
import { createHttpJobHandler } from './httpJob.js';
import type { HandlerRegistry } from './registry.js';

/** The job types every Jobline server knows. */
export function registerBuiltInHandlers(registry: HandlerRegistry, config: Config): void {
  const policy = createOutboundPolicy({ allow: config.outboundAllow });
  registry.register(createHttpJobHandler({ policy }), 'built-in');
}
