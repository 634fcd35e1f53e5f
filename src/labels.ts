/**
 * Discovery labels put on every service tao-infer launches (docker `--label`, Kubernetes object labels):
 * `docker ps --filter label=tao-infer.managed-by` or a label selector finds them again.
 */
export const LABELS = {
  managedBy: 'tao-infer.managed-by',
  jobId: 'tao-infer.job_id',
  arch: 'tao-infer.network_arch',
  /** ISO-8601 UTC expiry from `start --max-duration` (docker has no run-time limit: `prune` enforces it). */
  expiresAt: 'tao-infer.expires_at',
} as const;
