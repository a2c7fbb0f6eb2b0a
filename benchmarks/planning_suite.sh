#!/usr/bin/env bash
# The planning/navigation measurements of docs/experiments/planning.md (issue 10), one after
# the other on an idle machine. Usage: bash benchmarks/planning_suite.sh OUTDIR [SAMPLE]
set -uo pipefail
out=$(mkdir -p "${1:?output folder}" && cd "$1" && pwd); sample=${2:-50}
mai=$(cd ../shared/benchmarks/movingai && pwd)
dl=${DESCENTLAB:-.venv/bin/descentlab}
OLDOLDPY=$(pwd)/.venv/bin/python
mkdir -p "$out"
for m in random/random512-10-0 dao/arena2 room/8room_000 maze/maze512-1-0; do
  n=$(basename "$m")
  /usr/bin/time -f "$n wall %e s" $dl plan-bench "$mai/$m.map" --sample "$sample" \
      --planner gradient --json "$out/pb_gradient_$n.json" > "$out/pb_gradient_$n.txt"
done
# --init line (local descent only) against the code before the potential (OLD: a checkout of
# an older commit, e.g. `git worktree add /tmp/oldmain f2df0dd`), same scenarios, one run
$dl plan-bench "$mai/random/random512-10-0.map" --sample 8 --planner gradient --init line \
    --no-anyangle --json "$out/pb_line_random512-10-0.json" > "$out/pb_line_random512-10-0.txt"
if [ -n "${OLD:-}" ]; then
  (cd "$OLD" && PYTHONPATH="$OLD" "$OLDOLDPY" -m descentlab plan-bench \
      "$mai/random/random512-10-0.map" --sample 8 --planner gradient \
      --json "$out/pb_line_random512-10-0_before.json" > "$out/pb_line_before.txt")
fi
$dl nav-bench --maps $mai/random/random512-10-0.map $mai/dao/arena2.map \
    $mai/room/8room_000.map $mai/maze/maze512-1-0.map --n 10 --sensor ray --radius 5 \
    --json "$out/nav_movingai_r5.json" > "$out/nav_movingai_r5.txt" 2> "$out/nav_movingai_r5.log"
$dl nav-bench --n 20 --sensor ray --radius 5 --json "$out/nav_random64_r5.json" \
    > "$out/nav_random64_r5.txt" 2> "$out/nav_random64_r5.log"
.venv/bin/python benchmarks/plan_profile.py "$mai/dao/arena2.map" --sample 10 \
    --json "$out/profile_arena2.json" > "$out/profile_arena2.txt"
.venv/bin/python benchmarks/plan_profile.py "$mai/maze/maze512-1-0.map" --sample 10 \
    --json "$out/profile_maze.json" > "$out/profile_maze.txt"
# maps of other kinds (generated): a check that no navigation setting is tuned to the four
$dl nav-bench --maps random96 --n 20 --sensor ray --radius 5 --json "$out/nav_random96.json" \
    > "$out/nav_random96.txt" 2> "$out/nav_random96.log"
$dl nav-bench --maps maze81 rooms121 --n 10 --sensor ray --radius 5 \
    --json "$out/nav_maze81_rooms121.json" > "$out/nav_maze81_rooms121.txt" \
    2> "$out/nav_maze81_rooms121.log"
