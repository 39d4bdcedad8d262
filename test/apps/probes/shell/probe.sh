#!/bin/bash
# Probe for doppel's integration tests: checks, from inside a program run by
# `doppel exec`, that curl and the shell's tools (getent, cat, ls, dd over
# bash's /dev/udp) see the pod. Prints one key=value line per check (keys in
# test/apps/probes/README.md, shared by every runtime's probe).
emit() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | sed -e 's/\\/\\\\/g' | awk 'NR>1{printf "\\n"}{printf "%s",$0}')"; }

ip=$PROBE_POD_IP
emit runtime "curl $(curl --version | head -n1 | cut -d' ' -f2) bash $BASH_VERSION"
emit env.POD_SECRET "$POD_SECRET"
emit etc.hostname "$(cat /etc/hostname 2>&1)"

lookup() { # getent uses getaddrinfo (glibc): 2 is "not found"
	local out rc
	out=$(getent ahostsv4 "$1" 2>&1)
	rc=$?
	case $rc in
	0) printf '%s' "$out" | awk '{print $1}' | sort -u | paste -sd, - ;;
	2) printf 'NXDOMAIN' ;;
	*) printf 'error: getent exit %s %s' "$rc" "$out" ;;
	esac
}
if grep -q "nameserver $ip" /etc/resolv.conf 2>/dev/null; then
	emit dns.short "$(lookup "$PROBE_SHORT_NAME")"
	emit dns.fqdn "$(lookup "$PROBE_FQDN")"
	emit dns.unknown "$(lookup "$PROBE_UNKNOWN_NAME")"
	emit dns.hosts "$(lookup "$PROBE_HOSTS_NAME")"
	# curl resolves by name (getaddrinfo, in its resolver thread) and talks HTTP.
	body=$(curl -sS --max-time 10 -w '\n%{remote_ip}:%{remote_port}' "http://$PROBE_SHORT_NAME:$PROBE_HTTP_PORT/probe" 2>&1)
	emit http.body "$(printf '%s' "$body" | head -n1)"
	emit http.peer "$(printf '%s' "$body" | tail -n1)"
else
	emit dns.guard "resolv.conf is not the pod's: DNS checks skipped"
fi

# telnet://: a raw TCP connection; the pod greets, then echoes the line sent.
out=$(printf 'ping\n' | curl -sS --max-time 10 -w '\n%{remote_ip}:%{remote_port}' "telnet://$ip:$PROBE_TCP_PORT" 2>&1)
emit tcp.greeting "$(printf '%s' "$out" | sed -n 1p)"
emit tcp.echo "$(printf '%s' "$out" | sed -n 2p)"
emit tcp.peer "$(printf '%s' "$out" | tail -n1)"

# UDP with bash's /dev/udp (a connected socket); dd reads one datagram.
if exec 3<>"/dev/udp/$ip/$PROBE_UDP_PORT"; then
	printf 'ping-udp' >&3
	emit udp.echo "$(timeout 10 dd bs=512 count=1 <&3 2>/dev/null)"
	exec 3<&-
else
	emit udp.echo "error: /dev/udp"
fi

emit file.message "$(cat /etc/podinfo/message 2>&1 | sed -e 's/[[:space:]]*$//')"
emit file.list "$(ls -1 /etc/podinfo 2>&1 | sort | paste -sd, -)"
if [ -d /etc/podinfo/config.d ]; then emit file.stat_dir true; else emit file.stat_dir false; fi

# curl 7.88 says "Couldn't connect to server" (exit 7) for any failed
# connect; its verbose log names the errno.
err=$(curl -sS -v --max-time 10 "http://$ip:$PROBE_CLOSED_PORT/" 2>&1)
rc=$?
case "$rc:$err" in
7:*"Connection refused"*) emit tcp.refused ECONNREFUSED ;;
*) emit tcp.refused "error: curl exit $rc: $(printf '%s' "$err" | grep -v '^\*   Trying' | tail -n2)" ;;
esac
emit done 1
