// `app.wsProxy` in nested contexts means what docs/semantics.md says, and prints as its public state only.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { inspect } from 'node:util'
import wsProxyPlugin from '../src/index.js'

const route = (prefix: string) => ({ routes: [{ prefix, upstream: 'http://127.0.0.1:1' }] })

async function withChild (rootFirst: boolean): Promise<{ app: FastifyInstance, child: FastifyInstance }> {
  const app = Fastify()
  let child: FastifyInstance | undefined
  const nested = async (instance: FastifyInstance): Promise<void> => {
    await instance.register(wsProxyPlugin, route('/child/'))
    child = instance
  }
  if (rootFirst) {
    app.register(wsProxyPlugin, route('/root/'))
    app.register(nested)
  } else {
    app.register(nested)
    app.register(wsProxyPlugin, route('/root/'))
  }
  await app.ready()
  return { app, child: child as FastifyInstance }
}

const prefixes = (instance: FastifyInstance): string[] => instance.wsProxy.metrics().routes.map((r) => r.route)

t.test('registered in the root first: one wsProxy, seen from every context, totalling all registrations', async (t) => {
  const { app, child } = await withChild(true)
  t.teardown(() => app.close())
  t.equal(child.wsProxy, app.wsProxy, 'the child reads the root\'s totals')
  t.same(prefixes(app), ['/root/', '/child/'])
})

t.test('registered in a child first: the child has its own wsProxy, which the root\'s does not include', async (t) => {
  const { app, child } = await withChild(false)
  t.teardown(() => app.close())
  t.not(child.wsProxy, app.wsProxy)
  t.same(prefixes(child), ['/child/'])
  t.same(prefixes(app), ['/root/'])
})

t.test('console.log and util.inspect show the public state, not the registrations behind it', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, route('/a/'))
  t.equal(inspect(app.wsProxy, { breakLength: Infinity }), 'WsProxyStateView { tunnels: 0, upstreamConnections: 0, draining: false, routes: 1 }')
  app.wsProxy.markDraining()
  t.match(inspect(app.wsProxy), /draining: true/)
})
