"""Probe for doppel's integration tests: checks, from inside a program run by
`doppel exec`, that Python sees the pod. Prints one key=value line per check
(keys in test/apps/probes/README.md, shared by every runtime's probe)."""
import errno
import os
import socket
import sys

env = os.environ


def emit(key, value):
    value = str(value).replace("\\", "\\\\").replace("\n", "\\n")
    print(f"{key}={value}", flush=True)


def err_value(e):
    if isinstance(e, socket.gaierror):
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return "NXDOMAIN"
        return f"error: gaierror {e.errno} {e}"
    if isinstance(e, OSError) and e.errno == errno.ECONNREFUSED:
        return "ECONNREFUSED"
    if isinstance(e, OSError) and e.errno == errno.ENOENT:
        return "ENOENT"
    return f"error: {type(e).__name__}: {e}"


pod_ip = env.get("PROBE_POD_IP", "")


def resolv_conf_is_pod():
    try:
        with open("/etc/resolv.conf") as f:
            ok = ("nameserver " + pod_ip) in f.read()
    except OSError:
        ok = False
    if not ok:
        emit("dns.guard", "resolv.conf is not the pod's: DNS checks skipped")
    return ok


def lookup(name):
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except Exception as e:  # noqa: BLE001
        return err_value(e)
    return ",".join(sorted({i[4][0] for i in infos if i[0] == socket.AF_INET}))


def dns():
    if not resolv_conf_is_pod():
        return
    emit("dns.short", lookup(env["PROBE_SHORT_NAME"]))
    emit("dns.fqdn", lookup(env["PROBE_FQDN"]))
    emit("dns.unknown", lookup(env["PROBE_UNKNOWN_NAME"]))
    emit("dns.hosts", lookup(env["PROBE_HOSTS_NAME"]))


def tcp():
    try:
        s = socket.create_connection((pod_ip, int(env["PROBE_TCP_PORT"])), timeout=10)
    except Exception as e:  # noqa: BLE001
        emit("tcp.greeting", err_value(e))
        return
    with s:
        host, port = s.getpeername()[:2]
        emit("tcp.peer", f"{host}:{port}")
        f = s.makefile("rwb")
        emit("tcp.greeting", f.readline().decode().rstrip("\n"))
        f.write(b"ping\n")
        f.flush()
        emit("tcp.echo", f.readline().decode().rstrip("\n"))


def udp():
    dst = (pod_ip, int(env["PROBE_UDP_PORT"]))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.connect(dst)
            s.send(b"ping-udp")
            emit("udp.echo", s.recv(512).decode())
    except Exception as e:  # noqa: BLE001
        emit("udp.echo", err_value(e))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.sendto(b"ping-unconnected", dst)
            data, frm = s.recvfrom(512)
            emit("udp.unconnected.echo", data.decode())
            emit("udp.unconnected.from", f"{frm[0]}:{frm[1]}")
    except Exception as e:  # noqa: BLE001
        emit("udp.unconnected.echo", err_value(e))


def files():
    try:
        with open("/etc/podinfo/message") as f:
            emit("file.message", f.read().strip())
    except Exception as e:  # noqa: BLE001
        emit("file.message", err_value(e))
    try:
        emit("file.list", ",".join(sorted(os.listdir("/etc/podinfo"))))
    except Exception as e:  # noqa: BLE001
        emit("file.list", err_value(e))
    try:
        emit("file.stat_dir", str(os.path.isdir("/etc/podinfo/config.d")).lower())
    except Exception as e:  # noqa: BLE001
        emit("file.stat_dir", err_value(e))


def refused():
    try:
        socket.create_connection((pod_ip, int(env["PROBE_CLOSED_PORT"])), timeout=10).close()
        emit("tcp.refused", "ok")
    except Exception as e:  # noqa: BLE001
        emit("tcp.refused", err_value(e))


def listen():
    keep = []
    for key, var in (("listen.port", "PROBE_LISTEN_PORT"), ("listen.taken_port", "PROBE_TAKEN_PORT")):
        if not env.get(var):
            continue
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(env[var])))
            s.listen(8)
            keep.append(s)
            emit(key, s.getsockname()[1])
        except Exception as e:  # noqa: BLE001
            emit(key, err_value(e))
    for s in keep:
        s.close()


emit("runtime", "python " + sys.version.split()[0])
emit("env.POD_SECRET", env.get("POD_SECRET", ""))
emit("info.hostname", socket.gethostname())
try:
    with open("/etc/hostname") as f:
        emit("etc.hostname", f.read().strip())
except Exception as e:  # noqa: BLE001
    emit("etc.hostname", err_value(e))
dns()
tcp()
udp()
files()
refused()
listen()
emit("done", 1)
