// Contender: nginx, one worker, the seeds' WebSocket configuration with upstream keep-alive, to the upstream given
// as argv[2]. Prints "READY <port> <master pid>" (the benchmark measures the master's process tree: master + worker).
// With argv[3] and argv[4] (certificate and key PEM files, bench/http2.ts): `listen ... ssl http2` (ALPN h2 and
// http/1.1; WebSockets over HTTP/1.1 only, nginx has no RFC 8441), keep-alive without a request cap.
// bench/run.ts installs nginx (`apt-get install nginx-light`) when it is missing, and fails when it cannot.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

async function freePort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-bench-nginx-'))
const port = await freePort()
const [, , upstreamPort, certFile, keyFile] = process.argv
const listen = certFile === undefined
  ? `listen 127.0.0.1:${port};`
  : `listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;`
writeFileSync(join(dir, 'nginx.conf'), `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_max_body_size 0;
  # The seeds' map, with '' instead of 'close' for plain requests, as nginx's keepalive docs advise: nginx at its best.
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream backend { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    ${listen}
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
    }
  }
}
`)
const binary = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx'
const master = spawn(binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'inherit', 'inherit'] })
process.on('SIGTERM', () => { master.kill('SIGQUIT'); setTimeout(() => process.exit(0), 500) })
master.once('exit', (code) => process.exit(code ?? 1))
for (let i = 0; i < 100; i++) {
  const up = await new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
  if (up) break
  await new Promise((resolve) => setTimeout(resolve, 50))
}
process.stdout.write(`READY ${port} ${master.pid}\n`)
