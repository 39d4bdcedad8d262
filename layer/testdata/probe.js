// The Node twin of probe/main.go for the layer's integration tests.
const net = require("net");
const dgram = require("dgram");
const fs = require("fs");
const [cmd, ...args] = process.argv.slice(2);
const hostPort = (a) => { const i = a.lastIndexOf(":"); return [a.slice(0, i), Number(a.slice(i + 1))]; };

if (cmd === "http") {
  const [host, port] = hostPort(args[0]);
  const s = net.connect({ host, port });
  let data = "";
  s.on("connect", () => s.write("GET / HTTP/1.0\r\nHost: x\r\n\r\n"));
  s.on("data", (d) => { data += d; });
  s.on("end", () => {
    console.log(`peer=${s.remoteAddress}:${s.remotePort} body=${data.split("\r\n\r\n")[1].trim()}`);
  });
  s.on("error", (e) => console.log(`error=${e.code}`));
} else if (cmd === "udp") {
  const [host, port] = hostPort(args[0]);
  const s = dgram.createSocket("udp4");
  s.on("message", (m) => { console.log(`reply=${m}`); s.close(); });
  s.send(Buffer.from(args[1]), port, host, (e) => { if (e) console.log(`error=${e.code}`); });
  setTimeout(() => { console.log("timeout"); process.exit(3); }, 5000).unref();
} else if (cmd === "listen") {
  const srv = net.createServer((c) => { c.end("hello from probe\n"); srv.close(); });
  const [host, port] = hostPort(args[0]);
  srv.listen(port, host, () => {
    const a = srv.address();
    console.log(`addr=${a.address}:${a.port}`);
  });
} else if (cmd === "cat") {
  try {
    const content = fs.readFileSync(args[0], "utf8");
    console.log(`content=${JSON.stringify(content)} size=${fs.statSync(args[0]).size}`);
  } catch (e) { console.log(`error=${e.code}`); }
}
