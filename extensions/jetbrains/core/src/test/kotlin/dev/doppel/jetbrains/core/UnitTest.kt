package dev.doppel.jetbrains.core

import com.google.gson.JsonObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import java.io.EOFException
import java.io.PipedInputStream
import java.io.PipedOutputStream
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Pure tests of the core: framing, the client over in-memory pipes, the target model, launch patching, the tracker. */
class FramingTest {
    @Test
    fun `round trip with UTF-8 lengths`() {
        val out = ByteArrayOutputStream()
        Framing.write(out, """{"a":"é✓"}""")
        Framing.write(out, "{}")
        val raw = out.toString(Charsets.UTF_8)
        assertTrue(raw.startsWith("Content-Length: 13\r\n\r\n"), raw)
        val input = ByteArrayInputStream(out.toByteArray())
        assertEquals("""{"a":"é✓"}""", Framing.read(input))
        assertEquals("{}", Framing.read(input))
        assertNull(Framing.read(input))
    }

    @Test
    fun `other headers and bare LF are accepted`() {
        val msg = "Content-Type: application/vscode-jsonrpc; charset=utf-8\ncontent-length: 2\r\n\r\n{}"
        assertEquals("{}", Framing.read(ByteArrayInputStream(msg.toByteArray())))
    }

    @Test
    fun `malformed and truncated messages fail`() {
        assertThrows(FramingException::class.java) { Framing.read(ByteArrayInputStream("Content-Length: x\r\n\r\n".toByteArray())) }
        assertThrows(FramingException::class.java) { Framing.read(ByteArrayInputStream("\r\n{}".toByteArray())) }
        assertThrows(EOFException::class.java) { Framing.read(ByteArrayInputStream("Content-Length: 10\r\n\r\n{}".toByteArray())) }
    }
}

class JsonRpcClientTest {
    /** A scripted server on in-memory pipes. */
    private class Peer {
        val toClient = PipedOutputStream()
        val clientIn = PipedInputStream(toClient, 1 shl 16)
        val clientOut = PipedOutputStream()
        val fromClient = PipedInputStream(clientOut, 1 shl 16)
        val received = LinkedBlockingQueue<JsonObject>()

        init {
            Thread {
                runCatching {
                    while (true) received.put(Json.parse(Framing.read(fromClient) ?: break).asJsonObject)
                }
            }.apply { isDaemon = true }.start()
        }

        fun send(json: String) = Framing.write(toClient, json)
        fun next(): JsonObject = received.poll(5, TimeUnit.SECONDS) ?: error("no message from the client")
    }

    @Test
    fun `responses correlate by id, out of order, and errors are typed`() {
        val peer = Peer()
        val client = JsonRpcClient(peer.clientIn, peer.clientOut)
        val a = client.request("a")
        val b = client.request("b", Json.obj("x" to 1))
        val ra = peer.next()
        val rb = peer.next()
        assertEquals("2.0", ra.str("jsonrpc"))
        assertEquals("b", rb.str("method"))
        assertEquals(1, rb.getAsJsonObject("params").int("x"))
        peer.send("""{"jsonrpc":"2.0","id":${rb.get("id")},"error":{"code":-32012,"message":"gone","data":{"sessionId":"s1"}}}""")
        peer.send("""{"jsonrpc":"2.0","id":${ra.get("id")},"result":{"ok":true}}""")
        assertTrue(a.get(5, TimeUnit.SECONDS).asJsonObject.bool("ok"))
        val e = runCatching { b.get(5, TimeUnit.SECONDS) }.exceptionOrNull()?.cause
        assertTrue(e is UnknownSessionException, "$e")
        assertEquals("s1", (e as UnknownSessionException).sessionId)
        assertEquals(-32012, e.code)
        client.close()
    }

    @Test
    fun `notifications are dispatched and server requests refused`() {
        val peer = Peer()
        val client = JsonRpcClient(peer.clientIn, peer.clientOut)
        val got = LinkedBlockingQueue<String>()
        client.onNotification(Methods.PROGRESS) { got.put(ProgressParams.from(it.asJsonObject).step) }
        peer.send("""{"jsonrpc":"2.0","method":"doppel/progress","params":{"sessionId":"s","step":"creating agent job","elapsedMs":850}}""")
        assertEquals("creating agent job", got.poll(5, TimeUnit.SECONDS))
        peer.send("""{"jsonrpc":"2.0","id":"srv-1","method":"workspace/configuration","params":{}}""")
        val reply = peer.next()
        assertEquals("srv-1", reply.str("id"))
        assertEquals(ErrorCodes.METHOD_NOT_FOUND, reply.getAsJsonObject("error").int("code"))
        client.close()
    }

    @Test
    fun `pending requests fail when the stream ends`() {
        val peer = Peer()
        val client = JsonRpcClient(peer.clientIn, peer.clientOut)
        val f = client.request("slow")
        peer.next()
        peer.toClient.close()
        val e = runCatching { f.get(5, TimeUnit.SECONDS) }.exceptionOrNull()?.cause
        assertTrue(e is ConnectionClosedException, "$e")
        client.done.get(5, TimeUnit.SECONDS)
        assertTrue(client.request("after").isCompletedExceptionally)
    }

    @Test
    fun `every documented code maps to its type`() {
        val cases = mapOf(
            -32700 to ParseErrorException::class, -32600 to InvalidRequestException::class, -32601 to MethodNotFoundException::class,
            -32602 to InvalidParamsException::class, -32002 to ServerNotInitializedException::class, -32010 to ConfigInvalidException::class,
            -32011 to ClusterException::class, -32012 to UnknownSessionException::class, -32013 to UnsupportedLaunchException::class,
            -32099 to InternalErrorException::class, -1 to OtherRpcException::class,
        )
        for ((code, type) in cases) assertEquals(type, DoppelRpcException.of(code, "m", null)::class, "code $code")
        val cfg = DoppelRpcException.of(-32010, "bad", Json.parse(
            """{"category":"config","path":"/ws/.doppel/c.yaml","diagnostics":[{"severity":"error","message":"m","keyPath":"a.b","line":3,"column":7,"code":"unknown_key"}]}""",
        )) as ConfigInvalidException
        assertEquals("config", cfg.category)
        assertEquals(Diagnostic("error", "m", "a.b", 3, 7, "unknown_key"), cfg.diagnostics.single())
        val cl = DoppelRpcException.of(-32011, "no", Json.parse("""{"category":"user","reason":"not_found"}""")) as ClusterException
        assertEquals("not_found", cl.reason)
    }
}

class TargetModelTest {
    private fun t(ns: String, kind: String, name: String, ready: Boolean = true) =
        TargetInfo("$kind/$name", kind, name, ns, listOf(name), ready, if (ready) 1 else 0, 1)

    private val listing = ListTargetsResult(
        "staging", listOf("default", "kube-system", "staging"),
        listOf(t("staging", "pod", "backend-7d"), t("staging", "deployment", "frontend"), t("staging", "deployment", "backend", false),
            t("kube-system", "deployment", "coredns"), t("staging", "service", "backend")),
    )

    @Test
    fun `namespaces then kinds then targets, current namespace first`() {
        val tree = TargetTree.of(listing)
        assertEquals(listOf("staging", "kube-system"), tree.namespaces.map { it.name })
        assertEquals(listOf("deployment", "service", "pod"), tree.namespaces[0].kinds.map { it.kind })
        assertEquals(listOf("backend", "frontend"), tree.namespaces[0].kinds[0].targets.map { it.name })
        assertEquals(listOf("default", "kube-system", "staging"), tree.allNamespaces)
        assertEquals("deployments", tree.namespaces[0].kinds[0].label)
        val items = tree.items()
        assertEquals(TargetTree.Item.NoTarget, items.first())
        assertEquals(6, items.size)
        assertTrue(items[1].detail.contains("0/1 ready"), items[1].detail)
    }

    @Test
    fun `filter, find and the choice's params`() {
        val tree = TargetTree.of(listing)
        assertEquals(listOf("deployment/coredns"), tree.filter("core").map { it.label })
        assertEquals(listOf(TargetTree.Item.NoTarget), tree.filter("targetless"))
        val choice = tree.filter("frontend").single().choice
        assertEquals(TargetChoice.Target("deployment/frontend", "staging"), choice)
        assertEquals("deployment/frontend", choice.targetParam)
        assertEquals("staging", choice.namespaceParam)
        assertEquals(TargetChoice.TARGETLESS, TargetChoice.NoTarget.targetParam)
        assertNull(TargetChoice.FromConfig.targetParam)
        assertTrue(tree.find(choice) is TargetTree.Item.Target)
    }

    @Test
    fun `choices survive encode and decode`() {
        for (c in listOf(TargetChoice.FromConfig, TargetChoice.NoTarget, TargetChoice.Target("deployment/a", "ns"), TargetChoice.Target("pod/b", null))) {
            assertEquals(c, TargetChoice.decode(c.encode()))
        }
    }
}

class LaunchPatchingTest {
    @Test
    fun `launches in VS Code's shape per type`() {
        val java = RunSpec(LaunchType.JAVA, "App", "com.example.Main", listOf("--x"),
            listOf("-Xmx1g", "-agentlib:jdwp=transport=dt_socket,address=127.0.0.1:50123,suspend=y,server=n"), "/ws", mapOf("A" to "1"), debug = true).toLaunch()
        assertEquals("java", java["type"])
        assertEquals("launch", java["request"])
        assertEquals(50123, java["port"])
        assertEquals(listOf("-Xmx1g", "-agentlib:jdwp=transport=dt_socket,address=127.0.0.1:50123,suspend=y,server=n"), java["vmArgs"])
        assertEquals(mapOf("A" to "1"), java["env"])

        val py = RunSpec(LaunchType.PYTHON, "srv", null,
            listOf("/opt/pycharm/pydevd.py", "--multiprocess", "--port", "41234", "--client", "127.0.0.1", "--file", "/ws/app.py")).toLaunch()
        assertEquals(mapOf("host" to "127.0.0.1", "port" to 41234), py["connect"])
        assertEquals("/ws/app.py", CommandLines.pythonScript(listOf("pydevd.py", "--port", "1", "--file", "/ws/app.py")))

        val node = RunSpec(LaunchType.NODE, "n", "/ws/server.js", runtimeArgs = listOf("--inspect-brk=127.0.0.1:9229")).toLaunch()
        assertEquals(9229, node["port"])
        assertEquals(listOf("--inspect-brk=127.0.0.1:9229"), node["runtimeArgs"])

        val go = RunSpec(LaunchType.GO, "g", "/ws/cmd/server", debuggerPort = 40000).toLaunch()
        assertEquals("debug", go["mode"])
        assertFalse(go.containsKey("port"), "the IDE's port must not go where Delve's goes")
    }

    @Test
    fun `env merge keeps the run configuration's own and adds the target's and doppel's`() {
        val spec = RunSpec(LaunchType.NODE, "n", env = mapOf("PORT" to "8080", "KEEP" to "me"))
        val res = ResolveLaunchResult("s1", mapOf("type" to "node",
            "env" to mapOf("PORT" to "8080", "DB_HOST" to "postgres", "REPLICAS" to 3L, "LD_PRELOAD" to "/opt/doppel/libdoppel.so", "DOPPEL_LAYER_SOCKET" to "/tmp/x/layer.sock")),
            TargetRef("deployment/backend", "staging"), listOf("w"))
        val p = LaunchPatcher.apply(spec, res)
        assertEquals("me", p.env["KEEP"])
        assertEquals("postgres", p.env["DB_HOST"])
        assertEquals("3", p.env["REPLICAS"])
        assertEquals(setOf("DB_HOST", "REPLICAS", "LD_PRELOAD", "DOPPEL_LAYER_SOCKET"), p.added.keys)
        assertEquals(emptyList<String>(), p.wrapper)
        assertEquals("s1", p.sessionId)
    }

    @Test
    fun `go is wrapped - the command line goes behind the session's wrapper`() {
        val spec = RunSpec(LaunchType.GO, "g")
        val wrapper = listOf("/usr/local/bin/doppel", "wrap", "--")
        val p = LaunchPatcher.apply(spec, ResolveLaunchResult("s", mapOf("type" to "go", "env" to mapOf("A" to "b")), null, wrapper = wrapper))
        assertEquals(wrapper, p.wrapper)
        assertEquals("b", p.env["A"])
        assertTrue(spec.toLaunch()["type"] == "go")
        assertThrows(IllegalStateException::class.java) { LaunchPatcher.apply(spec, ResolveLaunchResult("s", mapOf("type" to "go"), null)) }
    }

    @Test
    fun `JSON numbers come back as Long or Double`() {
        val m = Json.toMap(Json.parse("""{"port":38211,"f":1.5,"list":[1,"a",null],"o":{"b":true}}"""))
        assertEquals(38211L, m["port"])
        assertEquals(1.5, m["f"])
        assertEquals(listOf(1L, "a", null), m["list"])
        assertEquals(mapOf("b" to true), m["o"])
    }
}

class SessionTrackerTest {
    @Test
    fun `states, progress and the status text`() {
        val tr = SessionTracker { 0 }
        val seen = mutableListOf<String>()
        tr.addListener { seen.add(it.state) }
        val choice = TargetChoice.Target("deployment/backend", "staging")
        assertEquals("doppel: off", tr.statusText(false, choice))
        assertEquals("doppel: staging/deployment/backend", tr.statusText(true, choice))
        tr.onSessionState(SessionStateParams("s1", SessionStates.STARTING))
        tr.onProgress(ProgressParams("s1", "creating agent job", 850))
        assertEquals("doppel: creating agent job…", tr.statusText(true, choice))
        tr.onSessionState(SessionStateParams("s1", SessionStates.READY))
        tr.onResolved(ResolveLaunchResult("s1", emptyMap(), TargetRef("deployment/backend", "staging", "backend-7d", "backend")), "App")
        tr.onPaused("s1", true)
        assertEquals("doppel: staging/deployment/backend (paused)", tr.statusText(true, choice))
        tr.onNotice(NoticeParams("s1", "info", "port 8080: steal"))
        assertEquals(1, tr["s1"]!!.notices.size)
        tr.onSessionState(SessionStateParams("s1", SessionStates.ENDED, "the agent exited", "cluster"))
        assertFalse(tr["s1"]!!.live)
        assertEquals("the agent exited", tr["s1"]!!.reason)
        assertTrue(tr.live().isEmpty())
        assertEquals(listOf("starting", "starting", "ready", "ready", "ready", "ready", "ended"), seen)
    }
}
