#!/bin/sh
# The headless Chrome or Chromium the dashboard test draws the page in (`make test` calls this).
#
# Prints the browser's path. Looks at CLTV_BROWSER, then PATH, then the usual macOS places.
# Where there is none and this machine can install one (Debian or Ubuntu, as root or with
# passwordless sudo), installs the distribution's package; otherwise prints one line saying
# what to install and exits 1, before any test runs.
#
#   --no-install                    only look (what the test does when run without make)
#   CLTV_BROWSER_DRY_RUN=1          say what would be installed instead of installing it
set -u

install=yes
[ "${1:-}" = "--no-install" ] && install=no

find_browser() {
    if [ -n "${CLTV_BROWSER:-}" ]; then
        [ -x "$CLTV_BROWSER" ] && { echo "$CLTV_BROWSER"; return 0; }
        echo "CLTV_BROWSER=$CLTV_BROWSER is not an executable file: point it at chrome or chromium, or unset it" >&2
        exit 1
    fi
    for name in chromium chromium-browser google-chrome google-chrome-stable chrome; do
        found=$(command -v "$name" 2>/dev/null) && { echo "$found"; return 0; }
    done
    for found in "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
        "/Applications/Chromium.app/Contents/MacOS/Chromium" \
        "${HOME:-/nonexistent}/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" \
        "${HOME:-/nonexistent}/Applications/Chromium.app/Contents/MacOS/Chromium"; do
        [ -x "$found" ] && { echo "$found"; return 0; }
    done
    return 1
}

find_browser && exit 0

distribution=""
[ -r /etc/os-release ] && distribution=$(. /etc/os-release && echo "${ID:-}")
# Ubuntu ships Chromium as chromium-browser; Debian as chromium
package=chromium
[ "$distribution" = ubuntu ] && package=chromium-browser

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
    else
        as_root=none
    fi
    if [ "$install" = yes ] && [ "$as_root" != none ]; then
        command="${as_root:+$as_root }apt-get install -y -qq $package"
        if [ -n "${CLTV_BROWSER_DRY_RUN:-}" ]; then
            echo "would run: $command" >&2
            exit 0
        fi
        echo "make test: no Chrome or Chromium found, installing it: $command" >&2
        $as_root apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive $command >/dev/null &&
            find_browser && exit 0
        echo "make test: installing $package failed (apt-get's message is above); install it and run make test again" >&2
        exit 1
    fi
    sudo=sudo
    [ "$(id -u)" = 0 ] && sudo=""
    advice="run: ${sudo:+$sudo }apt-get update && ${sudo:+$sudo }apt-get install $package"
elif [ "$(uname -s 2>/dev/null)" = Darwin ]; then
    advice="install Google Chrome (https://www.google.com/chrome) or run: brew install --cask chromium"
else
    advice="install your distribution's chromium package (dnf install chromium, pacman -S chromium, ...)"
fi
echo "make test needs Chrome or Chromium for the dashboard test, and none was found: $advice (or set CLTV_BROWSER=/path/to/chrome), then run make test again" >&2
exit 1
