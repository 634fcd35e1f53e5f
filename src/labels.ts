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
  /** The model_path given to start (non-secret), so discover can rebuild the entry. */
  modelPath: 'tao-infer.model_path',
  /** ISO-8601 UTC start time of the service. */
  startedAt: 'tao-infer.started_at',
} as const;
