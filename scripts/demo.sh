#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds, and runs the voting-app tutorial
# end to end on the embedded store (examples/voting-app/run.sh): meshpilot, an ingress gateway and
# each component behind a meshproxy sidecar, all on free loopback ports, printing at each step
# what the tutorial's curl loops print. Everything it starts stops when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec bash examples/voting-app/run.sh
