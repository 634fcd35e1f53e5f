import type { RegistryEntry } from '../../types.js';
import type { PlatformDescriptor } from '../descriptor.js';
import { options, stopOptions } from './options.js';

/** brev (contract §8): docker on a Brev VM driven by the brev CLI, reached through a local ssh forward. */
export const descriptor = {
  name: 'brev',
  options: { start: options, stop: stopOptions },
  unsupported: {},
  reservesHostPort: false,
  maxDuration: { enforcedBy: 'prune', how: 'docker on the instance has no run-time limit: the container carries the label tao-infer.expires_at and `tao-infer prune` stops it once expired' },
  hostPortScope: 'remote',
  entryDefaults: [{ key: 'instance', env: ['BREV_INSTANCE'], what: 'instance' }],
  /** Host ports are per instance. */
  remoteHost: (entry: RegistryEntry) => (typeof entry.platform_data?.instance === 'string' ? entry.platform_data.instance : undefined),
  load: async () => (await import('./adapter.js')).createAdapter(),
  /** `stop --delete-instance`: delete the instances of the stopped services that no other service uses. */
  afterStop: async (ctx) => (await import('./cli.js')).deleteUnusedInstances(ctx),
} as const satisfies PlatformDescriptor<'brev'>;
