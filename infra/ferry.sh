#!/usr/bin/env bash
# The two commands of Ferry (see README.md):
#   ./infra/ferry.sh start   install what is missing, start Ferry in the foreground (Ctrl-C stops it)
#   ./infra/ferry.sh test    install what is missing, run every test (unit, integration, e2e)
# and the step both begin with:
#   ./infra/ferry.sh setup   install what is missing (Debian packages, Node, npm ci, guest image…)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
  setup)
    . infra/setup.sh
    ;;
  start)
    . infra/setup.sh
    exec node_modules/.bin/tsx infra/launcher/main.ts
    ;;
  test)
    . infra/setup.sh
    exec infra/test.sh
    ;;
  *)
    echo "usage: ./infra/ferry.sh start | test | setup   (see README.md)" >&2
    exit 2
    ;;
esac
