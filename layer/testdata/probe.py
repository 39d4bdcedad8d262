# The Python twin of probe/main.go for the layer's integration tests.
import errno, json, os, socket, sys

def http(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect((host, int(port)))
    except OSError as e:
        return "error=" + errno.errorcode.get(e.errno, str(e))
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    peer = "%s:%d" % s.getpeername()[:2]
    return "peer=%s body=%s" % (peer, data.split(b"\r\n\r\n", 1)[1].decode().strip())

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "http":
    print(http(args[0]))
elif cmd == "udp":
    host, port = args[0].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(args[1].encode(), (host, int(port)))
    data, frm = s.recvfrom(1500)
    print("reply=%s" % data.decode())
elif cmd == "listen":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host, port = args[0].rsplit(":", 1)
    s.bind((host, int(port)))
    s.listen(8)
    print("addr=%s:%d" % s.getsockname(), flush=True)
    c, _ = s.accept()
    c.sendall(b"hello from probe\n")
    c.close()
elif cmd == "cat":
    try:
        with open(args[0]) as f:
            content = f.read()
        st = os.stat(args[0])
        print("content=%s size=%d" % (json.dumps(content), st.st_size))
    except OSError as e:
        print("error=" + errno.errorcode.get(e.errno, str(e)))
