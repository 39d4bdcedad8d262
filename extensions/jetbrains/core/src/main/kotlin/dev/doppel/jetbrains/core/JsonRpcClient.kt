package dev.doppel.jetbrains.core

import com.google.gson.JsonElement
import com.google.gson.JsonNull
import com.google.gson.JsonObject
import com.google.gson.JsonPrimitive
import java.io.InputStream
import java.io.OutputStream
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicLong

/**
 * A JSON-RPC 2.0 client over a pair of streams with Content-Length framing: requests are
 * correlated with their responses by id, notifications go to the handlers registered with
 * [onNotification]. Requests the server sends (none in protocol version 1) are answered with
 * -32601 method not found. One reader thread; writes are serialized.
 *
 * Handlers run on the reader thread, in the order the server sent them: keep them short (hand
 * UI work to the UI thread).
 */
class JsonRpcClient(
    private val input: InputStream,
    private val output: OutputStream,
    private val log: (String) -> Unit = {},
    threadName: String = "doppel-jsonrpc-reader",
) : AutoCloseable {
    private val nextId = AtomicLong(1)
    private val pending = ConcurrentHashMap<Long, CompletableFuture<JsonElement>>()
    private val handlers = ConcurrentHashMap<String, CopyOnWriteArrayList<(JsonElement) -> Unit>>()
    private val anyHandlers = CopyOnWriteArrayList<(String, JsonElement) -> Unit>()
    private val writeLock = Any()
    private val closed = AtomicBoolean(false)
    @Volatile private var closeCause: Throwable? = null
    private val reader = Thread(::readLoop, threadName).apply { isDaemon = true }

    /** Completes when the stream from the server ended. */
    val done: CompletableFuture<Unit> = CompletableFuture()

    init {
        reader.start()
    }

    /** Registers a handler for a notification method; returns a function that removes it. */
    fun onNotification(method: String, handler: (JsonElement) -> Unit): () -> Unit {
        val list = handlers.computeIfAbsent(method) { CopyOnWriteArrayList() }
        list.add(handler)
        return { list.remove(handler) }
    }

    /** Registers a handler for every notification. */
    fun onAnyNotification(handler: (String, JsonElement) -> Unit): () -> Unit {
        anyHandlers.add(handler)
        return { anyHandlers.remove(handler) }
    }

    /** Sends a request; the future completes with the result (JsonNull for `null`) or a [DoppelRpcException]. */
    fun request(method: String, params: JsonElement? = null): CompletableFuture<JsonElement> {
        val id = nextId.getAndIncrement()
        val future = CompletableFuture<JsonElement>()
        if (closed.get()) {
            future.completeExceptionally(ConnectionClosedException("the doppel helper is gone", closeCause))
            return future
        }
        pending[id] = future
        val msg = JsonObject().apply {
            addProperty("jsonrpc", "2.0")
            addProperty("id", id)
            addProperty("method", method)
            if (params != null && !params.isJsonNull) add("params", params)
        }
        try {
            send(msg)
        } catch (e: Exception) {
            pending.remove(id)
            future.completeExceptionally(ConnectionClosedException("cannot write to the doppel helper: ${e.message}", e))
        }
        // A caller that gives up (cancel, or orTimeout) frees the slot.
        future.whenComplete { _, _ -> pending.remove(id) }
        return future
    }

    /** Sends a request and waits for its result; throws the typed error. */
    fun call(method: String, params: JsonElement? = null, timeoutMs: Long = DEFAULT_TIMEOUT_MS): JsonElement {
        val f = request(method, params)
        try {
            return f.get(timeoutMs, TimeUnit.MILLISECONDS)
        } catch (e: TimeoutException) {
            f.cancel(false)
            throw RpcTimeoutException("$method: no answer from the doppel helper within ${timeoutMs} ms")
        } catch (e: ExecutionException) {
            throw e.cause ?: e
        }
    }

    /** Sends a notification. */
    fun notify(method: String, params: JsonElement? = null) {
        val msg = JsonObject().apply {
            addProperty("jsonrpc", "2.0")
            addProperty("method", method)
            if (params != null && !params.isJsonNull) add("params", params)
        }
        send(msg)
    }

    private fun send(msg: JsonObject) {
        if (closed.get()) throw ConnectionClosedException("the doppel helper is gone", closeCause)
        val text = Json.stringify(msg)
        synchronized(writeLock) { Framing.write(output, text) }
    }

    private fun readLoop() {
        try {
            while (true) {
                val text = Framing.read(input) ?: break
                val msg = try {
                    Json.parse(text)
                } catch (e: Exception) {
                    log("unparsable message from the helper: ${e.message}")
                    continue
                }
                if (!msg.isJsonObject) {
                    log("message from the helper is not an object")
                    continue
                }
                dispatch(msg.asJsonObject)
            }
            shutDown(null)
        } catch (e: Throwable) {
            shutDown(e)
        }
    }

    private fun dispatch(msg: JsonObject) {
        val method = msg.strOrNull("method")
        val id = msg.get("id")
        if (method != null) {
            val params = msg.get("params") ?: JsonNull.INSTANCE
            if (id != null && !id.isJsonNull) {
                // A request from the server: none are defined in version 1.
                val reply = JsonObject().apply {
                    addProperty("jsonrpc", "2.0")
                    add("id", id)
                    add("error", JsonObject().apply {
                        addProperty("code", ErrorCodes.METHOD_NOT_FOUND)
                        addProperty("message", "the JetBrains plugin does not serve $method")
                    })
                }
                runCatching { send(reply) }
                return
            }
            for (h in anyHandlers) runHandler(method) { h(method, params) }
            handlers[method]?.forEach { h -> runHandler(method) { h(params) } }
            return
        }
        val key = idKey(id)
        val future = key?.let { pending.remove(it) }
        if (future == null) {
            log("response for an unknown request id $id")
            return
        }
        val error = msg.get("error")
        if (error != null && error.isJsonObject) {
            val e = error.asJsonObject
            future.completeExceptionally(DoppelRpcException.of(e.int("code"), e.str("message"), e.get("data")))
        } else {
            future.complete(msg.get("result") ?: JsonNull.INSTANCE)
        }
    }

    private fun idKey(id: JsonElement?): Long? {
        if (id == null || !id.isJsonPrimitive) return null
        val p = id as JsonPrimitive
        return if (p.isNumber) p.asLong else p.asString.toLongOrNull()
    }

    private inline fun runHandler(method: String, block: () -> Unit) {
        try {
            block()
        } catch (e: Exception) {
            log("handler of $method failed: $e")
        }
    }

    private fun shutDown(cause: Throwable?) {
        if (!closed.compareAndSet(false, true)) return
        closeCause = cause
        val ex = ConnectionClosedException(
            if (cause == null) "the doppel helper closed the connection" else "the connection to the doppel helper failed: ${cause.message}", cause,
        )
        for (f in pending.values) f.completeExceptionally(ex)
        pending.clear()
        done.complete(Unit)
    }

    val isClosed: Boolean get() = closed.get()

    /**
     * Closes the stream to the server (its stdin) and keeps reading what it still sends: after
     * `exit`, so that the server sees end of input at once.
     */
    fun closeOutput() {
        synchronized(writeLock) { runCatching { output.close() } }
    }

    /** Closes both streams; pending requests fail with [ConnectionClosedException]. */
    override fun close() {
        runCatching { output.close() }
        runCatching { input.close() }
        shutDown(null)
    }

    companion object {
        const val DEFAULT_TIMEOUT_MS = 30_000L
    }
}
