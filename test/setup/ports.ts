// Tests own their ports: every tao-infer the tests start (in-process or as a child) allocates host ports from
// TAO_INF_PORT_RANGE, a range no user service uses, so a program or another tao-infer service on 8080 (or any
// port of the default 8080–8199) does not change what the tests see. .ci/run holds 127.0.0.1:8080 during the run.
export const TEST_PORT_RANGE = '18080-18199';

export default function setup(): void {
  process.env.TAO_INF_PORT_RANGE ??= TEST_PORT_RANGE;
}
