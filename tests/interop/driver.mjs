// Drives Motia's own state adapters for tests/interop (copied next to node_modules by tests/interop/node.py).
//
// stdin:  {"adapter": "redis", "url": "redis://…", "options": {"keyPrefix": …, "ttl": …}, "calls": [[method, ...args], …]}
//      or {"adapter": "file", "dir": "…", "calls": […]}
// stdout: a JSON array, the result of each call in order (undefined as null). Nothing else is written to
// stdout: the adapters' console logging goes to stderr. A failing call exits 1 with the error on stderr.

for (const name of ['log', 'info', 'warn', 'debug']) {
  console[name] = (...args) => console.error(...args)
}

let text = ''
for await (const chunk of process.stdin) text += chunk
const request = JSON.parse(text)

let adapter
if (request.adapter === 'redis') {
  const { RedisStateAdapter } = await import('@motiadev/adapter-redis-state')
  adapter = new RedisStateAdapter({ url: request.url }, request.options ?? {})
} else if (request.adapter === 'file') {
  const { FileStateAdapter } = await import('@motiadev/core')
  adapter = new FileStateAdapter({ filePath: request.dir })
} else {
  throw new Error(`unknown adapter ${JSON.stringify(request.adapter)}`)
}

const results = []
try {
  for (const [method, ...args] of request.calls) {
    if (typeof adapter[method] !== 'function') throw new Error(`the adapter has no method ${method}`)
    const value = await adapter[method](...args)
    results.push(value === undefined ? null : value)
  }
} finally {
  await adapter.cleanup()
}
// Exit once the answer is flushed, whatever timers or sockets a package left open.
process.stdout.write(JSON.stringify(results), () => process.exit(0))
