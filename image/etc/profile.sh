# tlsgatectl reads the daemon's HTTP API at TLSGATE_WEB: point it at the
# "web" address of tlsgated.conf (the management address on the appliance).
if [ -z "${TLSGATE_WEB:-}" ] && [ -r /etc/tlsgate/tlsgated.conf ]; then
	TLSGATE_WEB=$(sed -n 's/^[[:space:]]*web[[:space:]]*=[[:space:]]*\([^[:space:]#]*\).*/\1/p' /etc/tlsgate/tlsgated.conf | tail -1)
	[ -n "$TLSGATE_WEB" ] && [ "$TLSGATE_WEB" != off ] && export TLSGATE_WEB || unset TLSGATE_WEB
fi
