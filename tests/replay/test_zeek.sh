#!/bin/bash
# Replays every Zeek capture that carries SMTP or TLS through tlsgate-replay
# and compares the summaries with Zeek's baseline logs (see
# zeek_compare.py for the field mapping). TAP output.
# Vectors: $TLSGATE_VECTORS, else ../shared/vectors next to the repository.
cd "$(dirname "$0")/../.." || exit 2
. tests/lib/tap.sh
BUILD=${BUILD:-build}
REPLAY=${TLSGATE_REPLAY:-$BUILD/tlsgate-replay}
VEC=${TLSGATE_VECTORS:-$(pwd)/../shared/vectors}
if [ ! -d "$VEC/zeek/baselines" ]; then
	echo "ok 1 # SKIP Zeek vectors not found at $VEC/zeek (set TLSGATE_VECTORS)"
	echo "1..1"
	exit 0
fi
if [ ! -x "$REPLAY" ]; then
	not_ok "tlsgate-replay is built ($REPLAY)"
	done_testing
	exit 1
fi
exec python3 tests/replay/zeek_compare.py "$REPLAY" "$VEC/zeek"
