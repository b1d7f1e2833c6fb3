/** The demo page: served by the demo upstream, reached through the gateway, talking WebSocket through it. */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>fastify-ws-proxy demo</title>
<style>body{font:15px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
#log{background:#f4f4f4;padding:.5rem;height:16rem;overflow:auto;white-space:pre-wrap;font-family:monospace}
button,input{font:inherit;margin:.2rem}</style></head>
<body>
<h1>fastify-ws-proxy demo</h1>
<p>This page came from the demo upstream through the gateway. The WebSocket below goes through the
gateway too: the gateway forwards the handshake, and after the upstream's 101 it tunnels raw bytes.</p>
<p><button id="connect">Connect</button><button id="close" disabled>Close (4000)</button>
<input id="text" value="hello" size="20"><button id="send" disabled>Send text</button>
<button id="binary" disabled>Send binary</button> <button id="http">GET /api/hello</button></p>
<div id="log" aria-live="polite"></div>
<script>
const log = (line) => { const el = document.getElementById('log'); el.textContent += line + '\\n'; el.scrollTop = el.scrollHeight }
let ws
const buttons = (open) => { for (const id of ['close', 'send', 'binary']) document.getElementById(id).disabled = !open }
document.getElementById('connect').onclick = () => {
  ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/echo', ['echo.v1', 'chat'])
  ws.binaryType = 'arraybuffer'
  ws.onopen = () => { log('open, subprotocol: ' + ws.protocol + ', extensions: ' + (ws.extensions || 'none')); buttons(true) }
  ws.onmessage = (e) => log(typeof e.data === 'string' ? 'text: ' + e.data : 'binary: [' + new Uint8Array(e.data).join(',') + ']')
  ws.onclose = (e) => { log('closed: code ' + e.code + (e.reason ? ', reason ' + e.reason : '')); buttons(false) }
}
document.getElementById('close').onclick = () => ws.close(4000, 'bye from the page')
document.getElementById('send').onclick = () => ws.send(document.getElementById('text').value)
document.getElementById('binary').onclick = () => ws.send(new Uint8Array([1, 2, 3, 255]))
document.getElementById('http').onclick = async () => { const r = await fetch('/api/hello'); log('HTTP ' + r.status + ': ' + await r.text()) }
</script>
</body>
</html>
`
