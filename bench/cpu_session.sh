#!/usr/bin/env bash
# The open sweeps on this project's CPU machines (2 cores, no GPU), in the order the issues train them,
# with both cores busy to the end, across sweeps too. Run from the repository root:
#
#   bash bench/cpu_session.sh start     # two workers, each walking the queue below, in the background
#   bash bench/cpu_session.sh status    # what each worker is training, and each sweep's count
#   bash bench/cpu_session.sh stop      # SIGTERM both; a run in flight keeps its last epoch's checkpoint
#
# The queue (SWEEPS, experiment names): reproduce_fashion_mnist → design, both complete since 2026-12-07,
# so a start trains nothing (reproduce_e30, complete, left the queue; SWEEPS="reproduce_e30 ..." relaunches
# it, which trains nothing); a new sweep joins it through SWEEPS. Each worker
# relaunches every experiment in turn with the plain launcher and one torch thread (num_threads=1, what
# joblib with n_jobs=2 gives each run: the same arithmetic); the per-run flock makes the two share
# one sweep (a run the other holds is skipped, never trained twice), and a worker that finds nothing left
# in one sweep goes on to the next while the other finishes its run, so no core idles at the tail of a
# sweep. The workers run from a detached worktree of HEAD (RUNTREE), so editing this checkout never
# changes the code they import, and write into this checkout's results/ (results_dir); `nice -n 10`
# leaves the foreground its share.
#
# After `stop`: the relaunch rewrote each committed sweep's grid.json and multirun.yaml (the launch time
# and command), which `stop` restores from git; the runs that finished are committed after
# `python -m sweep.slim <sweep dir>` (docs/running.md "Long sweeps across sessions").
set -u
ROOT=$(git rev-parse --show-toplevel) || exit 2
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
SWEEPS=${SWEEPS:-"reproduce_fashion_mnist design"}
WORKERS=${WORKERS:-2}
RUNTREE=${RUNTREE:-/tmp/vae-sweep-runtree}
LOGS=${LOGS:-/tmp/vae-sweep-logs}
RESULTS=${RESULTS:-$ROOT/results}
OVERRIDES=${OVERRIDES:-}  # more overrides for every launch (a check: OVERRIDES="epochs=4" SWEEPS=smoke)
pids() { [ -s "$LOGS/workers" ] && while read -r p; do kill -0 "$p" 2>/dev/null && echo "$p"; done <"$LOGS/workers"; }

case ${1:-} in
start)
    [ -x "$PY" ] || { echo "error: PY=$PY is not an executable python; valid: the venv's (README set-up: python3 -m venv .venv)"; exit 2; }
    for e in $SWEEPS; do
        [ -f "conf/experiment/$e.yaml" ] || { echo "error: SWEEPS names experiment '$e', which conf/experiment lacks; valid: $(cd conf/experiment && ls *.yaml | sed 's/\.yaml$//' | xargs)"; exit 2; }
    done
    if [ -n "$(pids)" ]; then echo "error: workers already running (process groups $(pids | xargs)); valid: stop them first"; exit 2; fi
    mkdir -p "$LOGS" && : >"$LOGS/workers"
    git worktree prune
    [ -d "$RUNTREE" ] && git worktree remove --force "$RUNTREE"
    git worktree add --quiet --detach "$RUNTREE" HEAD || exit 1
    for w in $(seq 1 "$WORKERS"); do
        # setsid: each worker leads its own process group, so `stop` reaches its python too
        (cd "$RUNTREE" && exec setsid nice -n 10 bash -c '
            for e in '"$SWEEPS"'; do
                echo "== $(date -u +%FT%TZ) worker '"$w"': experiment=$e"
                "'"$PY"'" -m sweep.train experiment=$e num_threads=1 results_dir="'"$RESULTS"'" '"$OVERRIDES"'
                echo "== $(date -u +%FT%TZ) worker '"$w"': experiment=$e exited $?"
            done' >>"$LOGS/worker$w.log" 2>&1 </dev/null &
         echo $! >>"$LOGS/workers")
    done
    sleep 1
    echo "started $WORKERS workers (process groups $(pids | xargs)) on $SWEEPS from $RUNTREE ($(git -C "$RUNTREE" rev-parse --short HEAD)); logs: $LOGS/worker*.log"
    ;;
status)
    echo "workers: $(pids | xargs)"
    for w in $(seq 1 "$WORKERS"); do
        # its last event: a run launched (the one it is on now, until a line about it follows), a run
        # resumed, finished or skipped (another worker holds it), or a sweep begun or ended
        [ -f "$LOGS/worker$w.log" ] && echo "worker $w: $(grep -E '^== |: ok; |resuming|^L[0-9]|\[HYDRA\][[:space:]]+#[0-9]+ : ' "$LOGS/worker$w.log" | tail -1 |
            sed -E 's/^\[[^]]*\]\[HYDRA\][[:space:]]+(#[0-9]+) : /on \1: /; s/ (experiment|num_threads|results_dir)=[^ ]*//g')"
    done
    for e in $SWEEPS; do
        d=$(ls -d "$RESULTS"/*/"$e" 2>/dev/null | head -1)
        [ -n "$d" ] || continue
        n=$(ls "$d"/*/COMPLETE 2>/dev/null | wc -l)  # of the grid its last launch recorded (grid.json), if any
        [ -f "$d/grid.json" ] && n="$n of $("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["runs"]))' "$d/grid.json")"
        echo "$e: $n runs complete in $d"
        for r in "$d"/*/epochs.parquet; do  # the runs in flight or stopped, with their last epoch
            if [ -e "$r" ] && [ ! -e "$(dirname "$r")/COMPLETE" ]; then  # (an if: no run in flight is no error)
                "$PY" -c 'import sys, pyarrow.parquet as pq
print("  %s: epoch %d done" % (sys.argv[2], max(pq.read_table(sys.argv[1], columns=["epoch"]).column(0).to_pylist())))' "$r" "$(basename "$(dirname "$r")")"
            fi
        done
    done
    ;;
stop)
    if [ ! -s "$LOGS/workers" ]; then echo "error: no workers of this script in $LOGS; valid: stop after start"; exit 2; fi
    for g in $(pids); do kill -TERM -- -"$g" 2>/dev/null; done
    for _ in $(seq 1 120); do [ -z "$(pids)" ] && break; sleep 1; done
    [ -n "$(pids)" ] && { echo "error: workers $(pids | xargs) still alive after 120 s; valid: kill -KILL -- -<group>"; exit 1; }
    for e in $SWEEPS; do  # the relaunch's rewrite of a committed sweep's launch record
        for path in "$RESULTS"/*/"$e"/grid.json "$RESULTS"/*/"$e"/multirun.yaml; do
            git ls-files --error-unmatch "$path" >/dev/null 2>&1 && git checkout -q -- "$path"
        done
    done
    rm -f "$LOGS/workers"
    git worktree remove --force "$RUNTREE" 2>/dev/null
    echo "stopped; unfinished runs (checkpoints kept, they resume): $(for e in $SWEEPS; do for d in "$RESULTS"/*/"$e"/*/; do [ -d "$d" ] && [ ! -e "$d/COMPLETE" ] && basename "$d"; done; done | xargs)"
    ;;
*)
    echo "error: command '${1:-}' is unknown; valid: start, status, stop"
    exit 2
    ;;
esac
