// Probe for doppel's integration tests: checks, from inside a program run by
// `doppel exec`, that Node sees the pod. Prints one key=value line per check
// (keys in test/apps/probes/README.md, shared by every runtime's probe).
'use strict';
const dgram = require('node:dgram');
const dns = require('node:dns');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');

const env = process.env;
const podIP = env.PROBE_POD_IP || '';

function emit(key, value) {
  value = String(value).replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  process.stdout.write(`${key}=${value}\n`);
}

function errValue(e) {
  if (!e) return 'ok';
  if (e.code === 'ENOTFOUND' || e.code === 'ENODATA') return 'NXDOMAIN';
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') return e.code;
  return `error: ${e.code || ''} ${e.message}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timeout after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function resolvConfIsPod() {
  let ok = false;
  try { ok = fs.readFileSync('/etc/resolv.conf', 'utf8').includes(`nameserver ${podIP}`); } catch (e) { ok = false; }
  if (!ok) emit('dns.guard', "resolv.conf is not the pod's: DNS checks skipped");
  return ok;
}

async function lookup(name) {
  try {
    const all = await withTimeout(dns.promises.lookup(name, { all: true, family: 4 }), 15000, 'lookup');
    return [...new Set(all.map((a) => a.address))].sort().join(',');
  } catch (e) { return errValue(e); }
}

async function resolve4(name) {
  try {
    const all = await withTimeout(dns.promises.resolve4(name), 15000, 'resolve4');
    return [...new Set(all)].sort().join(',');
  } catch (e) { return errValue(e); }
}

async function checkDNS() {
  if (!resolvConfIsPod()) return;
  emit('dns.short', await lookup(env.PROBE_SHORT_NAME));
  emit('dns.fqdn', await lookup(env.PROBE_FQDN));
  emit('dns.unknown', await lookup(env.PROBE_UNKNOWN_NAME));
  emit('dns.hosts', await lookup(env.PROBE_HOSTS_NAME));
  // c-ares, not getaddrinfo: its own resolv.conf parser and sockets.
  emit('dns.resolve4.fqdn', await resolve4(env.PROBE_FQDN));
  emit('dns.resolve4.short', await resolve4(env.PROBE_SHORT_NAME));
  emit('dns.resolve4.unknown', await resolve4(env.PROBE_UNKNOWN_NAME + '.' + env.PROBE_FQDN.split('.').slice(1).join('.')));
}

function checkTCP() {
  return withTimeout(new Promise((resolve) => {
    const s = net.connect({ host: podIP, port: Number(env.PROBE_TCP_PORT) });
    let buf = '';
    let greeted = false;
    s.setEncoding('utf8');
    s.on('connect', () => emit('tcp.peer', `${s.remoteAddress}:${s.remotePort}`));
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!greeted) {
          greeted = true;
          emit('tcp.greeting', line);
          s.write('ping\n');
        } else {
          emit('tcp.echo', line);
          s.end();
        }
      }
    });
    s.on('error', (e) => { emit('tcp.greeting', errValue(e)); resolve(); });
    s.on('close', () => resolve());
  }), 15000, 'tcp').catch((e) => emit('tcp.greeting', errValue(e)));
}

function udpExchange(connected) {
  const key = connected ? 'udp.echo' : 'udp.unconnected.echo';
  const msg = connected ? 'ping-udp' : 'ping-unconnected';
  return withTimeout(new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, rinfo) => {
      emit(key, m.toString());
      if (!connected) emit('udp.unconnected.from', `${rinfo.address}:${rinfo.port}`);
      s.close();
      resolve();
    });
    s.on('error', (e) => { emit(key, errValue(e)); s.close(); resolve(); });
    const port = Number(env.PROBE_UDP_PORT);
    if (connected) {
      s.connect(port, podIP, (err) => { if (err) { emit(key, errValue(err)); resolve(); } else s.send(msg); });
    } else {
      s.send(msg, port, podIP);
    }
  }), 10000, 'udp').catch((e) => emit(key, errValue(e)));
}

function checkFiles() {
  try { emit('file.message', fs.readFileSync('/etc/podinfo/message', 'utf8').trim()); } catch (e) { emit('file.message', errValue(e)); }
  try { emit('file.list', fs.readdirSync('/etc/podinfo').sort().join(',')); } catch (e) { emit('file.list', errValue(e)); }
  try { emit('file.stat_dir', String(fs.statSync('/etc/podinfo/config.d').isDirectory())); } catch (e) { emit('file.stat_dir', errValue(e)); }
}

function checkRefused() {
  return withTimeout(new Promise((resolve) => {
    const s = net.connect({ host: podIP, port: Number(env.PROBE_CLOSED_PORT) });
    s.on('connect', () => { emit('tcp.refused', 'ok'); s.destroy(); resolve(); });
    s.on('error', (e) => { emit('tcp.refused', errValue(e)); resolve(); });
  }), 15000, 'refused').catch((e) => emit('tcp.refused', errValue(e)));
}

async function checkListen() {
  const servers = [];
  for (const [key, v] of [['listen.port', 'PROBE_LISTEN_PORT'], ['listen.taken_port', 'PROBE_TAKEN_PORT']]) {
    if (!env[v]) continue;
    await new Promise((resolve) => {
      const srv = net.createServer((c) => c.end());
      srv.on('error', (e) => { emit(key, errValue(e)); resolve(); });
      srv.listen(Number(env[v]), () => { emit(key, srv.address().port); servers.push(srv); resolve(); });
    });
  }
  servers.forEach((s) => s.close());
}

async function main() {
  emit('runtime', `node ${process.version}`);
  emit('env.POD_SECRET', env.POD_SECRET || '');
  emit('info.hostname', os.hostname());
  try { emit('etc.hostname', fs.readFileSync('/etc/hostname', 'utf8').trim()); } catch (e) { emit('etc.hostname', errValue(e)); }
  await checkDNS();
  await checkTCP();
  await udpExchange(true);
  await udpExchange(false);
  checkFiles();
  await checkRefused();
  await checkListen();
  emit('done', 1);
}

main().catch((e) => { emit('fatal', e.stack); process.exitCode = 1; });
