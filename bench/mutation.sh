#!/usr/bin/env bash
# Mutation testing of the kernel, the contracts and telemetry with mutmut (3.x).
#
#   bench/mutation.sh                        engine/_core, contracts and telemetry
#   bench/mutation.sh engine/_core/gates.py  one file (or folder) at a time
#   MUTATION_TESTS="tests/engine/test_state.py" bench/mutation.sh engine/_core/state.py
#                                            a test selection of your own (pytest args)
#   MUTATION_NAMES="engine._core.supervisor.x_run_status*" bench/mutation.sh engine/_core/supervisor.py
#                                            only these mutants (mutmut's name patterns)
#   MUTATION_FRESH=1 bench/mutation.sh ...   forget earlier results (start over)
#   MUTATION_CHILDREN=1 bench/mutation.sh ... one process instead of 2 (a busy machine)
#
# The sources are copied to .mutation/<id>/ (ignored by git; one folder per targets
# and test selection) and mutated there; mutmut keeps its results in its mutants/,
# so a second run re-tests only what changed. Each mutant runs only the tests that reached the mutated function during
# a clean run (fastest first, stopping at the first failure), on 2 processes
# (MUTATION_CHILDREN).
# Prints the score and every surviving mutant by file (bench/mutation_report.py).
#
# Not run by CI: the whole of it takes hours on 2 shared cores (see
# docs/reliability.md, "Mutation testing", for the last figures).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
root="$PWD"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(engine/_core contracts telemetry)
fi
# One work folder per (targets, test selection): mutmut starts over when its test
# selection changes, so each combination keeps its own results.
work="$root/.mutation/$(echo "${targets[*]} ${MUTATION_TESTS:-}" | sha256sum | cut -c1-12)"
if [ "${MUTATION_FRESH:-0}" = 1 ]; then
    rm -rf "$work"
fi
mkdir -p "$work"
# A copy of the working tree as it is (committed or not), without the ignored files.
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - -cf - | tar -xf - -C "$work"
# The tests go straight to where they run: a `tests` package beside mutmut's own
# working folder would be imported in place of the copy in mutants/.
mkdir -p "$work/mutants"
rm -rf "$work/mutants/tests"
mv "$work/tests" "$work/mutants/tests"

only_mutate=""
for target in "${targets[@]}"; do
    target="${target%/}"
    if [[ "$target" == *.py ]]; then
        only_mutate+=$'\n    '"$target"
    else
        only_mutate+=$'\n    '"$target/*"
    fi
done

# The test selection: by default the unit and system tests of the kernel, contracts
# and telemetry that run in seconds (not the slow ones, not the tools' own tests,
# which reach the kernel only through whole runs). mutmut maps every test to the
# functions it reached, so a mutant costs only the tests that can see it.
tests=(-m "not slow" tests/contracts tests/telemetry tests/engine)
for skip in gauntlet synth score serve determinism docs matrix layout diff report_cli; do
    tests+=("--deselect=tests/engine/test_$skip.py")
done
if [ -n "${MUTATION_TESTS:-}" ]; then
    read -ra tests <<<"$MUTATION_TESTS"
fi
selection=""
for arg in "${tests[@]}"; do
    selection+=$'\n    '"$arg"
done

cat > "$work/setup.cfg" <<EOF
[mutmut]
source_paths=
    engine
    contracts
    telemetry
only_mutate=$only_mutate
also_copy=
    plugins
    examples
    docs
    README.md
pytest_add_cli_args_test_selection=$selection
pytest_add_cli_args=
    -p
    no:cacheprovider
EOF
# mutmut keeps the copy of a file it already has: drop the mutated copies of files
# that changed since its last run, so they are mutated again (their results, kept in
# the .meta beside them, stay for every function whose source hash is unchanged, and
# the mutants of the functions that changed are run again), and the plain copies of
# the files it does not mutate that differ from the source (else the tests would run
# against stale neighbours).
if [ -d "$work/mutants" ]; then
    (cd "$work" && find engine contracts telemetry -name '*.py') | while read -r file; do
        if [ -f "$work/mutants/$file.meta" ]; then
            if [ "$work/$file" -nt "$work/mutants/$file.meta" ]; then
                rm -f "$work/mutants/$file"
            fi
        elif [ -f "$work/mutants/$file" ] && ! cmp -s "$work/$file" "$work/mutants/$file"; then
            rm -f "$work/mutants/$file"
        fi
    done
fi
cd "$work"
start=$(date +%s)
# A mutant can turn a loop into one that never ends and grows a list without bound
# (find_cycles did: 7 GB in two minutes, before the CPU limit mutmut sets). Address
# space is capped per process, so such a mutant dies with MemoryError, counted as
# killed, instead of taking the machine's memory (MUTATION_MEMORY_MB, default 4096).
ulimit -v $(( ${MUTATION_MEMORY_MB:-4096} * 1024 ))
# Subprocesses a test starts (``python -m engine ...``) import the mutated copy too.
read -ra names <<<"${MUTATION_NAMES:-}"
PYTHONPATH="$work/mutants" "$root/.venv/bin/mutmut" run --max-children "${MUTATION_CHILDREN:-2}" "${names[@]}" \
    >mutmut-run.log 2>&1 || {
    tail -40 mutmut-run.log
    exit 1
}
echo "mutmut ran in $(( $(date +%s) - start ))s (log: $work/mutmut-run.log)"
"$root/.venv/bin/python" "$root/bench/mutation_report.py" "$work/mutants" "${targets[@]}"
