#!/usr/bin/env bash
# Install the Debian packages the portal needs, only those missing. Usage: system-deps.sh run|test
#   run:  python3-venv (the portal itself needs nothing else from Debian)
#   viewer: + nodejs and npm (`make viewer` installs the viewer's pinned npm package), unless npm is there
#   test: + orthanc orthanc-dicomweb dcmtk (the real PACS and reference tools), dicom3tools (dciodvfy
#         checks the photo Secondary Captures), chromium (browser tests),
#         postgresql and redis-server (make test-scaleout starts its own on free ports),
#         prometheus (its promtool checks the /metrics text)
set -euo pipefail
want=(python3-venv)
[ "${1:-run}" = viewer ] && ! command -v npm >/dev/null && want+=(nodejs npm)
[ "${1:-run}" = test ] && want+=(orthanc orthanc-dicomweb dcmtk dicom3tools chromium curl postgresql redis-server prometheus)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "Installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
# policy-rc.d or not: the distro 'orthanc' service is not used; tests start their own Orthanc on free ports
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
