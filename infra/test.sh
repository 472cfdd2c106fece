#!/usr/bin/env bash
# Every test of Ferry, on services of its own; run by `./infra/ferry.sh test` after setup.
#   1. a private PostgreSQL and Redis on free ports, in a temporary state folder
#   2. vitest: the unit and integration projects (tests create their own databases and prefixes)
#   3. Playwright, when e2e/playwright.config.ts exists, against a whole Ferry started for it
#   4. one last line "N passed, N failed"; exit status 1 when anything failed
# The temporary folder is removed after a green run and kept (with every log) after a red one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run_dir="$(mktemp -d /tmp/ferry-test.XXXXXX)"
chmod 755 "$run_dir"
launcher_pid=""
passed=0
failed=0

say() { echo "test: $*" >&2; }

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

finish() {
  local status=$?
  if [ -n "$launcher_pid" ] && kill -0 "$launcher_pid" 2>/dev/null; then
    kill -TERM "$launcher_pid"
    wait "$launcher_pid" 2>/dev/null || true
  fi
  infra/services.sh stop "$run_dir" || true
  if [ "$status" = 0 ] && [ "$failed" = 0 ]; then
    rm -rf "$run_dir"
  else
    say "logs and reports kept in $run_dir"
  fi
  echo "$passed passed, $failed failed"
  [ "$status" = 0 ] && [ "$failed" = 0 ]
}
trap finish EXIT
trap 'exit 130' INT TERM

# 1. services ------------------------------------------------------------------------------------
database_url="$(infra/services.sh start-postgres "$run_dir" "$(free_port)" | sed 's/^FERRY_DATABASE_URL=//')"
redis_url="$(infra/services.sh start-redis "$run_dir" "$(free_port)" | sed 's/^FERRY_REDIS_URL=//')"
export FERRY_TEST_DATABASE_URL="${database_url%/ferry}/postgres"
export FERRY_TEST_REDIS_URL="$redis_url"
export FERRY_IMAGES_DIR
say "PostgreSQL ${FERRY_TEST_DATABASE_URL##*@}, Redis ${FERRY_TEST_REDIS_URL#redis://}, images $FERRY_IMAGES_DIR"

# Reads "<passed> <failed>" from a runner's JSON report; a missing report counts as one failure.
count() {
  node -e '
    const [kind, file] = process.argv.slice(1);
    let report;
    try { report = JSON.parse(require("fs").readFileSync(file, "utf8")); }
    catch { console.log("0 1"); process.exit(0); }
    if (kind === "vitest") console.log(report.numPassedTests, report.numFailedTests + (report.success || report.numFailedTests ? 0 : 1));
    else console.log(report.stats.expected + report.stats.flaky, report.stats.unexpected + (report.errors?.length ? 1 : 0));
  ' "$1" "$2"
}

# 2. vitest --------------------------------------------------------------------------------------
say "vitest (unit + integration)"
vitest_status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$run_dir/vitest.json" || vitest_status=$?
read -r p f < <(count vitest "$run_dir/vitest.json")
# Unhandled errors fail the run without failing a test: count them as one failure.
if [ "$vitest_status" != 0 ] && [ "$f" = 0 ]; then
  say "vitest exited with status $vitest_status though no test failed (unhandled errors?)"
  f=1
fi
passed=$((passed + p)); failed=$((failed + f))

# 3. Playwright ------------------------------------------------------------------------------------
if [ -f e2e/playwright.config.ts ]; then
  e2e_port="$(free_port)"
  console_port="$(free_port)"
  e2e_database_url="${database_url%/ferry}/ferry_e2e"
  export FERRY_E2E_BASE_URL="http://localhost:$e2e_port"
  export FERRY_ADMIN_EMAIL="${FERRY_ADMIN_EMAIL:-admin@ferry.local}"
  export FERRY_ADMIN_PASSWORD="${FERRY_ADMIN_PASSWORD:-ferry-admin-password}"
  say "starting a whole Ferry for the e2e suite on $FERRY_E2E_BASE_URL"
  PGPASSWORD="$(cat "$run_dir/postgres/password")" "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/createdb" \
    -h 127.0.0.1 -p "$(sed -n 4p "$run_dir/postgres/data/postmaster.pid")" -U ferry ferry_e2e
  # A short state folder: each guest's unix sockets are in <state>/workers/wN/run/<vm id>-<pid>-<tag>/,
  # and with "$run_dir/e2e" a suspend's state-out.sock was 108 characters for a 5-digit worker
  # pid, past the 107 a unix socket path may have (Node binds it cut short, QEMU cannot connect,
  # the suspend waits forever). Four vCPUs per worker: the labs journey runs 5 one-vCPU clones.
  FERRY_STATE_DIR="$run_dir/e" FERRY_DATABASE_URL="$e2e_database_url" FERRY_REDIS_URL="$redis_url" \
    FERRY_QUEUE_PREFIX=ferry-e2e FERRY_PORT="$e2e_port" FERRY_CONSOLE_PORT="$console_port" \
    FERRY_ACCELERATOR="${FERRY_ACCELERATOR:-tcg}" FERRY_WORKER_VCPUS="${FERRY_WORKER_VCPUS:-4}" \
    node_modules/.bin/tsx infra/launcher/main.ts > "$run_dir/e2e-ferry.log" 2>&1 &
  launcher_pid=$!
  for _ in $(seq 300); do
    grep -q "Ferry is running" "$run_dir/e2e-ferry.log" && break
    kill -0 "$launcher_pid" 2>/dev/null || break
    sleep 1
  done
  if grep -q "Ferry is running" "$run_dir/e2e-ferry.log"; then
    say "Playwright"
    PLAYWRIGHT_JSON_OUTPUT_NAME="$run_dir/playwright.json" \
      npx playwright test -c e2e/playwright.config.ts --reporter=list,json || true
    read -r p f < <(count playwright "$run_dir/playwright.json")
  else
    say "Ferry did not start for the e2e suite; its output:"
    tail -40 "$run_dir/e2e-ferry.log" >&2
    p=0 f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
else
  say "no e2e/playwright.config.ts yet: skipping the browser tests"
fi
