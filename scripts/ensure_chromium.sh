#!/usr/bin/env bash
# Browser tests drive Debian's Chromium. Install it where we can (root, apt); otherwise they skip.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: browser tests will be skipped"
else
  echo "no /usr/bin/chromium and no root: browser tests will be skipped"
fi
