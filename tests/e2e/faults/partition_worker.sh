#!/usr/bin/env bash
# Fault: partition a worker from the coordinator for longer than its lease.
# The worker runs in a network namespace joined to the host by a veth pair
# (10.200.x.0/30, so traffic stays on this machine), and the coordinator
# binds the host-side address. A firewall rule inside the namespace drops all
# traffic while the worker is in the middle of a job. Its attempt must
# expire and be retried on the other worker; after the partition heals the
# worker reconnects and its late result is stored as superseded (or final,
# if it arrives first). Every job keeps exactly one final result.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v nft >/dev/null \
    || ! command -v nsenter >/dev/null; then
    echo "SKIP: needs root, ip (iproute2), nft (nftables) and nsenter (util-linux)" >&2
    exit 77
fi

setup_database fault_partition_worker
setup_tmp fault-partition-worker
write_slow_agent
run_reference

namespace="dwtest$$"
host_if="dwh$$"
ns_if="dwn$$"
subnet=$(($$ % 250 + 1))
host_ip="10.200.$subnet.1"
ns_ip="10.200.$subnet.2"

delete_namespace () {
    ip netns del "$namespace" 2>/dev/null
    ip link del "$host_if" 2>/dev/null
    true
}
CLEANUP_HOOKS+=(delete_namespace)

ip netns add "$namespace" || { echo "SKIP: cannot create a network namespace" >&2; exit 77; }
ip link add "$host_if" type veth peer name "$ns_if"
ip link set "$ns_if" netns "$namespace"
ip addr add "$host_ip/30" dev "$host_if"
ip link set "$host_if" up
ip netns exec "$namespace" ip addr add "$ns_ip/30" dev "$ns_if"
ip netns exec "$namespace" ip link set "$ns_if" up
ip netns exec "$namespace" ip link set lo up

endpoint="tcp://$host_ip:$(free_port "$host_ip")"
start_coordinator "$endpoint" 1
# nsenter switches only the network namespace. "ip netns exec" would also
# mount a fresh /sys without the cgroup hierarchy, and the worker's sandbox
# then fails every job.
start_worker w1 "$endpoint" 2 nsenter --net="/run/netns/$namespace"
start_worker w2 "$endpoint" 3

wait_for_log 30 "$TEST_TMP/worker-w1.log" "event=registered" \
    || abort "w1 in namespace $namespace did not register with $endpoint"
wait_for_job_of 60 w1 || abort "w1 never ran a job"
attempt=$(leased_attempt_of w1 1)
say "partitioning w1 (namespace $namespace) during attempt $attempt"
fault_at=$(now_seconds)
ip netns exec "$namespace" nft -f - <<NFT
table inet dwfault {
    chain input { type filter hook input priority 0; policy drop; }
    chain output { type filter hook output priority 0; policy drop; }
}
NFT

# Heal once another attempt has made the job final.
wait_for_sql 60 "SELECT j.final_attempt_id IS NOT NULL AND j.final_attempt_id <> '$attempt'
                 FROM jobs j JOIN attempts a ON a.job_id = j.id WHERE a.id = '$attempt'" \
    || fail "the job of attempt $attempt did not become final during the partition"
partitioned_for=$(seconds_since "$fault_at")
say "healing the partition after ${partitioned_for}s"
ip netns exec "$namespace" nft delete table inet dwfault

wait_for_sql 60 "SELECT EXISTS (SELECT 1 FROM results WHERE attempt_id = '$attempt')" \
    || fail "w1 never delivered the late result of attempt $attempt"
late_after=$(seconds_since "$fault_at")
wait_coordinator
wait_workers
check_eq "coordinator exit status" 0 "$COORDINATOR_STATUS"
recovery=$(seconds_since "$fault_at")

disposition=$(sql "SELECT disposition FROM results WHERE attempt_id = '$attempt'")
case $disposition in
superseded | final) ;;
*) fail "late result of attempt $attempt: expected disposition superseded or final, got '$disposition'" ;;
esac
grep -q "lease expired job=.* attempt=$attempt" "$COORDINATOR_LOG.err" \
    || fail "coordinator log has no lease expiry for attempt $attempt"
grep -Fq "event=worker_lost worker=$(worker_key w1)" "$COORDINATOR_LOG.err" \
    || fail "coordinator did not notice that w1 went silent"
[ "$(grep -c "event=registered" "$TEST_TMP/worker-w1.log")" -ge 2 ] \
    || fail "w1 did not register again after the partition"

job_recovery=$(job_final_after "$fault_at" "$attempt")
check_exactly_once partition_worker
echo "$FAULT_SUMMARY late_result=$disposition affected_job_final_s=$job_recovery partitioned_s=$partitioned_for late_result_stored_s=$late_after run_complete_s=$recovery"
finish
