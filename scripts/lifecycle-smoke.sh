#!/usr/bin/env bash
# Lifecycle smoke on a machine without GPUs: start → ready → request → stop with --num-gpus 0,
# against the stand-in microservice image built locally (test/fixtures/build-test-image.sh).
# Needs a running Docker engine (test/infra/setup.sh starts one). Uses its own registry file.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/bin/tao-infer.cjs ] || { npm ci --no-audit --no-fund; npm run build; }
bash test/fixtures/build-test-image.sh
export IMAGE_COSMOS_RL=tao-infer-test/standin:latest
export TAO_INF_STATE_FILE="${TAO_INF_STATE_FILE:-$(mktemp -d)/state.json}"
cli="node dist/bin/tao-infer.cjs"
job=$($cli start --arch cosmos-rl --model /models/cosmos-reason --num-gpus 0 --timeout 120 --yes --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).job_id))')
trap '$cli stop "$job" --yes >/dev/null 2>&1 || true' EXIT
$cli ls
$cli request --job "$job" --prompt "What is in this picture?" --image test/fixtures/media/cat.png --yes
$cli stop "$job" --yes
trap - EXIT
echo "lifecycle smoke passed"
