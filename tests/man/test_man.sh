#!/bin/bash
# The manual pages: groff finds nothing to warn about in each, and each
# documents every long option that its program's --help prints. Needs
# neither root nor the network. TAP output.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}

# page BINARY: the page's path in the tree.
page() {
	case $1 in
	tlsgated) echo userspace/man/tlsgated.8 ;;
	tlsgatectl) echo userspace/man/tlsgatectl.8 ;;
	tlsgate-replay) echo userspace/man/tlsgate-replay.1 ;;
	tlsgate-probe) echo probe/tlsgate-probe.8 ;;
	esac
}

command -v groff >/dev/null || { echo "Bail out! groff missing: install groff-base (tests/lib/deps.sh)"; exit 1; }
for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	[ -x "$BUILD/$b" ] || { echo "Bail out! $BUILD/$b missing: run make"; exit 1; }
done

for b in tlsgated tlsgatectl tlsgate-probe tlsgate-replay; do
	p=$(page "$b")
	name=$(basename "$p")
	if [ ! -r "$p" ]; then
		not_ok "$name exists ($p)"
		continue
	fi
	warn=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
	check "groff -man -ww finds nothing to warn about in $name" [ -z "$warn" ]
	[ -z "$warn" ] || diag "$warn"

	# Plain text (\- becomes -), on lines long enough that nothing is
	# hyphenated or broken inside an option name.
	text=$(groff -man -Tascii -P-cbou -rLL=2000n "$p" 2>/dev/null)
	# Some print their usage to stderr.
	opts=$("$BUILD/$b" --help 2>&1 | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
	missing=""
	for o in $opts; do
		grep -qE -- "(^|[^a-z0-9-])$o([^a-z0-9-]|\$)" <<<"$text" || missing="$missing $o"
	done
	if [ -z "$opts" ]; then
		not_ok "$b --help prints long options"
		continue
	fi
	check "$name documents every option of $b --help${missing:+ (missing:$missing)}" [ -z "$missing" ]
done
done_testing
