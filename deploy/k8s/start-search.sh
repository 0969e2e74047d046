#!/bin/sh
# Run by the CronJob torch-search-scheduled (cronjob.yaml): start one search and wait for its end.
#   1. create a RayJob from the template (generateName gives each run its own name);
#   2. poll it until KubeRay reports Complete or Failed, so that concurrencyPolicy: Forbid keeps
#      two scheduled searches from overlapping;
#   3. delete all but the newest $KEEP_RAYJOBS RayJobs with the template's label;
#   4. exit 0 only if the Ray job SUCCEEDED, so the CronJob's history shows failed searches.
# Uses only `kubectl create/get/delete` on rayjobs: the verbs the Role torch-search-scheduler grants.
set -eu

TEMPLATE=${RAYJOB_TEMPLATE:-/etc/torch-search/rayjob.yaml}
SELECTOR=${RAYJOB_SELECTOR:-app.kubernetes.io/component=search-run}
POLL_SECONDS=${POLL_SECONDS:-30}
WAIT_SECONDS=${WAIT_SECONDS:-90000}
KEEP_RAYJOBS=${KEEP_RAYJOBS:-5}

fail() {
    echo "start-search: $*" >&2
    exit 1
}

[ -r "$TEMPLATE" ] || fail "RayJob template $TEMPLATE is not readable; mount the ConfigMap torch-search-rayjob-template there"
name=$(kubectl create -f "$TEMPLATE" -o name) || fail "could not create a RayJob from $TEMPLATE"
[ -n "$name" ] || fail "kubectl create printed no name for $TEMPLATE"
echo "start-search: created $name"

started=$(date +%s)
while :; do
    # A failed `get` (API server hiccup) is retried at the next poll rather than ending the run.
    state=$(kubectl get "$name" -o 'jsonpath={.status.jobDeploymentStatus}') || state="unknown"
    case "$state" in
        Complete | Failed) break ;;
    esac
    elapsed=$(($(date +%s) - started))
    [ "$elapsed" -lt "$WAIT_SECONDS" ] ||
        fail "$name is still '$state' after ${elapsed}s (WAIT_SECONDS=$WAIT_SECONDS); it keeps running, see: kubectl describe $name"
    sleep "$POLL_SECONDS"
done
status=$(kubectl get "$name" -o 'jsonpath={.status.jobStatus}') || status="unknown"
echo "start-search: $name finished: deployment $state, job $status"

# Keep the newest $KEEP_RAYJOBS (including this one); a failed clean-up does not fail the search.
old=$(kubectl get rayjobs.ray.io -l "$SELECTOR" --sort-by=.metadata.creationTimestamp -o name |
    awk -v keep="$KEEP_RAYJOBS" '{ names[NR] = $0 } END { for (i = 1; i <= NR - keep; i++) print names[i] }') ||
    old=""
if [ -n "$old" ]; then
    # shellcheck disable=SC2086 # one name per word, on purpose
    kubectl delete $old || echo "start-search: could not delete old RayJobs: $old" >&2
fi

[ "$status" = "SUCCEEDED" ] || fail "$name ended with job status '$status'; logs: kubectl logs -l job-name=${name#*/}"
