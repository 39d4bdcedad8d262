// Probe for doppel's integration tests: checks, from inside a program run by
// `doppel exec`, that a JVM sees the pod. Prints one key=value line per check
// (keys in test/apps/probes/README.md, shared by every runtime's probe).

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.UnknownHostException;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

public class Probe {
    static String env(String k) {
        String v = System.getenv(k);
        return v == null ? "" : v;
    }

    static void emit(String key, Object value) {
        String v = String.valueOf(value).replace("\\", "\\\\").replace("\n", "\\n");
        System.out.println(key + "=" + v);
        System.out.flush();
    }

    static String errValue(Throwable e) {
        if (e instanceof UnknownHostException) return "NXDOMAIN";
        if (e instanceof ConnectException && String.valueOf(e.getMessage()).contains("refused")) return "ECONNREFUSED";
        if (e instanceof NoSuchFileException) return "ENOENT";
        return "error: " + e.getClass().getName() + ": " + e.getMessage();
    }

    static final String podIP = env("PROBE_POD_IP");

    static boolean resolvConfIsPod() {
        boolean ok;
        try {
            ok = Files.readString(Path.of("/etc/resolv.conf")).contains("nameserver " + podIP);
        } catch (Exception e) {
            ok = false;
        }
        if (!ok) emit("dns.guard", "resolv.conf is not the pod's: DNS checks skipped");
        return ok;
    }

    static String lookup(String name) {
        try {
            TreeSet<String> v4 = new TreeSet<>();
            for (InetAddress a : InetAddress.getAllByName(name)) {
                if (a instanceof Inet4Address) v4.add(a.getHostAddress());
            }
            return String.join(",", v4);
        } catch (Exception e) {
            return errValue(e);
        }
    }

    static void dns() {
        if (!resolvConfIsPod()) return;
        emit("dns.short", lookup(env("PROBE_SHORT_NAME")));
        emit("dns.fqdn", lookup(env("PROBE_FQDN")));
        emit("dns.unknown", lookup(env("PROBE_UNKNOWN_NAME")));
        emit("dns.hosts", lookup(env("PROBE_HOSTS_NAME")));
    }

    static void tcp() {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(podIP, Integer.parseInt(env("PROBE_TCP_PORT"))), 10000);
            s.setSoTimeout(10000);
            // The JVM keeps its own copy of the peer: this is not getpeername(2).
            emit("tcp.peer", s.getInetAddress().getHostAddress() + ":" + s.getPort());
            BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
            emit("tcp.greeting", r.readLine());
            OutputStream o = s.getOutputStream();
            o.write("ping\n".getBytes(StandardCharsets.UTF_8));
            o.flush();
            emit("tcp.echo", r.readLine());
        } catch (Exception e) {
            emit("tcp.greeting", errValue(e));
        }
        // NIO: the same connect through a SocketChannel.
        try (SocketChannel ch = SocketChannel.open()) {
            ch.connect(new InetSocketAddress(podIP, Integer.parseInt(env("PROBE_TCP_PORT"))));
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(256);
            ch.socket().setSoTimeout(10000);
            int n = ch.read(b);
            String line = new String(b.array(), 0, Math.max(n, 0), StandardCharsets.UTF_8);
            int nl = line.indexOf('\n');
            emit("tcp.nio.greeting", nl >= 0 ? line.substring(0, nl) : line);
        } catch (Exception e) {
            emit("tcp.nio.greeting", errValue(e));
        }
    }

    static void udp() {
        InetSocketAddress dst = new InetSocketAddress(podIP, Integer.parseInt(env("PROBE_UDP_PORT")));
        try (DatagramSocket s = new DatagramSocket()) {
            s.setSoTimeout(10000);
            s.connect(dst);
            byte[] out = "ping-udp".getBytes(StandardCharsets.UTF_8);
            s.send(new DatagramPacket(out, out.length));
            byte[] in = new byte[512];
            DatagramPacket p = new DatagramPacket(in, in.length);
            s.receive(p);
            emit("udp.echo", new String(in, 0, p.getLength(), StandardCharsets.UTF_8));
        } catch (Exception e) {
            emit("udp.echo", errValue(e));
        }
        try (DatagramSocket s = new DatagramSocket()) {
            s.setSoTimeout(10000);
            byte[] out = "ping-unconnected".getBytes(StandardCharsets.UTF_8);
            s.send(new DatagramPacket(out, out.length, dst));
            byte[] in = new byte[512];
            DatagramPacket p = new DatagramPacket(in, in.length);
            s.receive(p);
            emit("udp.unconnected.echo", new String(in, 0, p.getLength(), StandardCharsets.UTF_8));
            emit("udp.unconnected.from", p.getAddress().getHostAddress() + ":" + p.getPort());
        } catch (Exception e) {
            emit("udp.unconnected.echo", errValue(e));
        }
    }

    static void files() {
        try {
            emit("file.message", Files.readString(Path.of("/etc/podinfo/message")).strip());
        } catch (Exception e) {
            emit("file.message", errValue(e));
        }
        try (Stream<Path> list = Files.list(Path.of("/etc/podinfo"))) {
            emit("file.list", list.map(p -> p.getFileName().toString()).sorted().collect(Collectors.joining(",")));
        } catch (Exception e) {
            emit("file.list", errValue(e));
        }
        emit("file.stat_dir", Files.isDirectory(Path.of("/etc/podinfo/config.d")));
    }

    static void refused() {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(podIP, Integer.parseInt(env("PROBE_CLOSED_PORT"))), 10000);
            emit("tcp.refused", "ok");
        } catch (Exception e) {
            emit("tcp.refused", errValue(e));
        }
    }

    static void listen() {
        List<ServerSocket> keep = new ArrayList<>();
        String[][] ports = {{"listen.port", "PROBE_LISTEN_PORT"}, {"listen.taken_port", "PROBE_TAKEN_PORT"}};
        for (String[] p : ports) {
            if (env(p[1]).isEmpty()) continue;
            try {
                ServerSocket ss = new ServerSocket(Integer.parseInt(env(p[1])));
                keep.add(ss);
                emit(p[0], ss.getLocalPort());
            } catch (Exception e) {
                emit(p[0], errValue(e));
            }
        }
        for (ServerSocket ss : keep) {
            try {
                ss.close();
            } catch (Exception e) {
                // closing
            }
        }
    }

    public static void main(String[] args) throws Exception {
        emit("runtime", "java " + System.getProperty("java.version"));
        emit("env.POD_SECRET", env("POD_SECRET"));
        try {
            emit("info.hostname", InetAddress.getLocalHost().getHostName());
        } catch (Exception e) {
            emit("info.hostname", errValue(e));
        }
        try {
            emit("etc.hostname", Files.readString(Path.of("/etc/hostname")).strip());
        } catch (Exception e) {
            emit("etc.hostname", errValue(e));
        }
        dns();
        tcp();
        udp();
        files();
        refused();
        listen();
        emit("done", 1);
    }
}
