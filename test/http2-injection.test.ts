import t from 'tap'
import { constants as h2 } from 'node:http2'
import type { WsProxyOptions } from '../src/index.js'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { codeOf, h2Gateway, h2Request, h2Session, rawH2Request } from './helpers/h2.js'
import { bodyOf, openH2WebSocket } from './helpers/h2-ws.js'
import { rawExchange } from './helpers/clients.js'
import { gateway, origin, type Teardown } from './helpers/servers.js'
import { acceptFor, headUpstream, parseHead, rawClient, wsHandshakeHead, type ScriptedServer } from './helpers/ws.js'

// Header values with CR, LF or NUL set by hooks or made by templates, over HTTP/2 (requests and RFC 8441 WebSockets)
// as over HTTP/1.1. Node's HTTP/1.1 response refuses such a value only as it writes the head (after the upstream had
// the request); its HTTP/2 response writes it as it is (Node's client then drops the field, or resets the stream
// for a NUL: no answer). Every case gets the same prompt 400 FST_WS_PROXY_BAD_HEADER_VALUE on both protocols,
// nothing goes upstream, and the refusal carries no trace of the value.

/** What an onRequest hook puts on its reply, by the request's `x-case`. */
const REPLY_CASES: Record<string, (reply: FastifyReply) => void> = {
  crlf: (reply) => reply.header('x-bad', 'a\r\nb'),
  lf: (reply) => reply.header('x-bad', 'a\nb'),
  nul: (reply) => reply.header('x-bad', 'a\0b'),
  control: (reply) => reply.header('x-bad', 'a\x01b'),
  array: (reply) => reply.header('x-bad', ['fine', 'a\r\nInjected: yes']),
  name: (reply) => reply.header('x bad', 'fine'),
  // Over HTTP/1.1 Node's raw response throws in the hook itself (Fastify's 500): HTTP/2 only.
  raw: (reply) => reply.raw.setHeader('x-bad', 'a\r\nb')
}
const CASES_H1 = Object.keys(REPLY_CASES).filter((name) => name !== 'raw')

function hooks (app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const which = request.headers['x-case'] as string | undefined
    if (which !== undefined) {
      REPLY_CASES[which](reply)
      // A valid field a hook set is kept on the refusal (only the invalid ones are left out).
      reply.header('x-fine', 'kept')
    }
  })
  app.addHook('preHandler', async (request) => {
    if (request.headers['x-set-evil'] !== undefined) request.headers['x-evil'] = 'a\r\nb'
  })
}

/** An upstream that answers a WebSocket handshake 101 (with the right accept key) and anything else 200 `ok`. */
async function upstream (t: Teardown): Promise<ScriptedServer> {
  return headUpstream(t, ({ socket, head }) => {
    const key = /^sec-websocket-key: (.*)\r$/im.exec(head)
    if (key === null) socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
    else socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key[1])}\r\n\r\n`)
  })
}

const routes = (up: ScriptedServer): WsProxyOptions => ({
  routes: [
    { prefix: '/plain/', upstream: origin(up) },
    { prefix: '/copy/', upstream: origin(up), requestHeaders: { set: { 'x-copy': '$http_x_evil' } } },
    { prefix: '/path/', upstream: origin(up), requestHeaders: { set: { 'x-path': '$uri' } } },
    { prefix: '/served/', upstream: origin(up), responseHeaders: { set: { 'x-served': '$uri' } } }
  ]
})

const messageFor = (name: string): string => `Header ${name} would carry characters not allowed in an HTTP field value`

t.test('HTTP/2: a hook\'s reply header with CR, LF, NUL or a bad name gets 400 for a request and a WebSocket; nothing goes upstream', async (t) => {
  const up = await upstream(t)
  const gw = await h2Gateway(t, routes(up), { setup: hooks })
  const session = await h2Session(t, gw)
  for (const which of Object.keys(REPLY_CASES)) {
    const name = which === 'name' ? 'x bad' : 'x-bad'
    const res = await h2Request(session, { ':path': '/plain/a', 'x-case': which }, undefined, 3000)
    t.equal(res.status, 400, `${which}: a request gets 400`)
    t.ok(res.ended, `${which}: a complete answer (END_STREAM), no reset`)
    t.equal(res.rstCode, h2.NGHTTP2_NO_ERROR)
    t.equal(codeOf(res), 'FST_WS_PROXY_BAD_HEADER_VALUE')
    t.equal((JSON.parse(res.body.toString()) as { message: string }).message, messageFor(name), 'the message names the header, not its bytes')
    t.equal(res.headers[name], undefined)
    t.equal(res.headers['x-fine'], 'kept')

    const ws = await openH2WebSocket(t, session, '/plain/ws', { 'x-case': which }, 3000)
    t.equal(ws.status, 400, `${which}: an extended CONNECT gets 400`)
    t.equal(ws.headers[name], undefined)
    t.equal((JSON.parse(await bodyOf(ws)) as { code: string }).code, 'FST_WS_PROXY_BAD_HEADER_VALUE')
    t.ok(ws.reader.ended, 'the stream ended with the answer')
  }
  t.equal(up.accepted.length, 0, 'no connection was even opened upstream')
  t.equal(gw.app.wsProxy.tunnels, 0)
  // What went on the wire, read from the HPACK block: the status from the static table and none of the value's bytes.
  const raw = await rawH2Request(t, gw.port, [[':method', 'GET'], [':path', '/plain/a'], [':scheme', 'http'], [':authority', 'x'], ['x-case', 'crlf']])
  t.equal(raw.status, 400)
  t.notOk(raw.head.includes(Buffer.from('a\r\nb', 'latin1')), 'the value never reached the HEADERS frame')
  t.match(raw.body, /FST_WS_PROXY_BAD_HEADER_VALUE/)
  // The session is still good: a clean request and a clean WebSocket on it.
  t.equal((await h2Request(session, { ':path': '/plain/ok' })).status, 200)
  const ws = await openH2WebSocket(t, session, '/plain/ws')
  t.equal(ws.status, 200)
  ws.stream.close()
  await bodyOf(ws)
})

t.test('HTTP/1.1: the same hooks get the same 400 before anything goes upstream', async (t) => {
  const up = await upstream(t)
  const { port } = await gateway(t, { ...routes(up), exposeErrors: true }, {}, hooks)
  for (const which of CASES_H1) {
    const answer = await rawExchange(t, port, `GET /plain/a HTTP/1.1\r\nHost: h\r\nx-case: ${which}\r\nConnection: close\r\n\r\n`)
    const head = parseHead(answer)
    t.equal(head.status, 400, `${which}: a request gets 400`)
    t.match(answer, /"code":"FST_WS_PROXY_BAD_HEADER_VALUE"/)
    t.notOk(head.names.includes('x-bad') || head.names.includes('x bad'), 'the refusal has no trace of the field')
    t.equal(head.headers['x-fine'], 'kept')
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/plain/ws', [`x-case: ${which}`]))
    await client.end()
    t.equal(parseHead(client.text).status, 400, `${which}: a WebSocket handshake gets 400`)
    t.match(client.text, /"code":"FST_WS_PROXY_BAD_HEADER_VALUE"/)
  }
  t.equal(up.accepted.length, 0, 'no connection was even opened upstream')
})

t.test('a hook\'s request.headers never go upstream; a template that copies one refuses with 400, over HTTP/2 and HTTP/1.1', async (t) => {
  const up = await upstream(t)
  const gw = await h2Gateway(t, routes(up), { setup: hooks })
  const session = await h2Session(t, gw)
  const plain = await h2Request(session, { ':path': '/plain/a', 'x-set-evil': '1' })
  t.equal(plain.status, 200, 'as over HTTP/1.1: what hooks change in request.headers is not what is forwarded')
  const ws = await openH2WebSocket(t, session, '/plain/ws', { 'x-set-evil': '1' })
  t.equal(ws.status, 200)
  ws.stream.close()
  await bodyOf(ws)
  t.equal(up.accepted.length, 2)
  for (const connection of up.accepted) {
    t.notMatch(connection.head, /x-evil|a\r\nb/i, 'the upstream head has neither the field nor its bytes')
  }
  const copied = await h2Request(session, { ':path': '/copy/a', 'x-set-evil': '1' })
  t.equal(copied.status, 400)
  t.equal(codeOf(copied), 'FST_WS_PROXY_BAD_HEADER_VALUE')
  const copiedWs = await openH2WebSocket(t, session, '/copy/ws', { 'x-set-evil': '1' })
  t.equal(copiedWs.status, 400)
  t.match(await bodyOf(copiedWs), /FST_WS_PROXY_BAD_HEADER_VALUE/)
  t.equal(up.accepted.length, 2, 'the refused ones sent nothing upstream')

  const h1 = await gateway(t, { ...routes(up), exposeErrors: true }, {}, hooks)
  const fine = parseHead(await rawExchange(t, h1.port, 'GET /plain/a HTTP/1.1\r\nHost: h\r\nx-set-evil: 1\r\nConnection: close\r\n\r\n'))
  t.equal(fine.status, 200)
  t.notMatch(up.accepted[2].head, /x-evil|a\r\nb/i)
  const refused = await rawExchange(t, h1.port, 'GET /copy/a HTTP/1.1\r\nHost: h\r\nx-set-evil: 1\r\nConnection: close\r\n\r\n')
  t.equal(parseHead(refused).status, 400)
  t.match(refused, /FST_WS_PROXY_BAD_HEADER_VALUE/)
  t.equal(up.accepted.length, 3)
})

t.test('HTTP/2: templates fed a CRLF from the path refuse with 400, for a request and a WebSocket', async (t) => {
  const up = await upstream(t)
  const gw = await h2Gateway(t, routes(up), { setup: hooks })
  const session = await h2Session(t, gw)
  const path = '/path/a%0D%0AInjected:%20yes'
  const res = await h2Request(session, { ':path': path })
  t.equal(res.status, 400)
  t.equal(codeOf(res), 'FST_WS_PROXY_BAD_HEADER_VALUE')
  const ws = await openH2WebSocket(t, session, path)
  t.equal(ws.status, 400)
  t.match(await bodyOf(ws), /FST_WS_PROXY_BAD_HEADER_VALUE/)
  t.equal(up.accepted.length, 0, 'a request header template refuses before anything goes upstream')
  // A response header template is evaluated on the upstream's answer, as over HTTP/1.1: the client gets the 400.
  const served = await h2Request(session, { ':path': '/served/a%0D%0Ab' })
  t.equal(served.status, 400)
  t.equal(codeOf(served), 'FST_WS_PROXY_BAD_HEADER_VALUE')
  t.equal(served.headers['x-served'], undefined)
  const servedWs = await openH2WebSocket(t, session, '/served/a%0D%0Ab')
  t.equal(servedWs.status, 400)
  t.match(await bodyOf(servedWs), /FST_WS_PROXY_BAD_HEADER_VALUE/)
  t.equal(gw.app.wsProxy.tunnels, 0, 'no tunnel')
})
