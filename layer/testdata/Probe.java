// The Java twin of probe/main.go for the layer's integration tests.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;

public class Probe {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("cat")) {
            try {
                String content = new String(java.nio.file.Files.readAllBytes(java.nio.file.Paths.get(args[1])), StandardCharsets.UTF_8);
                long size = new File(args[1]).length();
                System.out.println("content=\"" + content.replace("\n", "\\n") + "\" size=" + size);
            } catch (java.nio.file.NoSuchFileException e) {
                System.out.println("error=ENOENT");
            }
            return;
        }
        String[] hp = args[1].split(":");
        if (args[0].equals("http")) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 5000);
                s.getOutputStream().write("GET / HTTP/1.0\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                String all = new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                InetSocketAddress peer = (InetSocketAddress) s.getRemoteSocketAddress();
                System.out.println("peer=" + peer.getAddress().getHostAddress() + ":" + peer.getPort()
                        + " body=" + all.split("\r\n\r\n", 2)[1].trim());
            } catch (ConnectException e) {
                System.out.println("error=ECONNREFUSED " + e.getMessage());
            }
        } else if (args[0].equals("listen")) {
            try (ServerSocket l = new ServerSocket()) {
                l.bind(new InetSocketAddress("127.0.0.1", Integer.parseInt(hp[1])));
                System.out.println("addr=127.0.0.1:" + l.getLocalPort());
                System.out.flush();
                try (Socket c = l.accept()) {
                    c.getOutputStream().write("hello from probe\n".getBytes(StandardCharsets.US_ASCII));
                }
            }
        } else if (args[0].equals("udp")) {
            try (DatagramSocket s = new DatagramSocket()) {
                s.setSoTimeout(5000);
                byte[] msg = args[2].getBytes(StandardCharsets.UTF_8);
                s.send(new DatagramPacket(msg, msg.length, InetAddress.getByName(hp[0]), Integer.parseInt(hp[1])));
                DatagramPacket p = new DatagramPacket(new byte[1500], 1500);
                s.receive(p);
                System.out.println("reply=" + new String(p.getData(), 0, p.getLength(), StandardCharsets.UTF_8));
            }
        }
    }
}
