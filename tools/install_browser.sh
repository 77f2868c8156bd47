#!/usr/bin/env bash
# Install Debian's chromium for tests/test_browser.py, which drives it through Playwright (Playwright's own browser
# download is not used). As root with apt-get this installs it; otherwise it says what to run and leaves the rest of
# the setup alone (the browser test then fails with the same command).
set -euo pipefail
CHROMIUM=${LLMCOURSE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  echo "chromium for the browser test: $CHROMIUM"; exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser test (tests/test_browser.py)"
  export DEBIAN_FRONTEND=noninteractive
  # a fresh image may have no package lists yet
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
else
  echo "The browser test (tests/test_browser.py) needs chromium at $CHROMIUM. Install it with:"
  echo "  sudo apt-get install -y chromium"
  echo "(Debian; elsewhere install chromium and set LLMCOURSE_CHROMIUM to its executable)"
fi
