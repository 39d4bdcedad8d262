package dev.doppel.jetbrains.core

import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Path
import java.util.Collections
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/**
 * The core against the real helper: `doppel ide` as the plugin starts it ($DOPPEL_BIN, else
 * bin/doppel of the repository). Each test has a process of its own.
 */
class HelperTest {
    private val started = mutableListOf<DoppelIdeClient>()
    private val stderr: MutableList<String> = Collections.synchronizedList(mutableListOf())

    private fun helperBin(): String {
        val bin = System.getenv("DOPPEL_BIN")?.takeIf { it.isNotEmpty() }
            ?: generateSequence(File("").absoluteFile) { it.parentFile }.map { File(it, "bin/doppel") }.firstOrNull { it.isFile }?.path
        assertNotNull(bin, "no doppel binary: set DOPPEL_BIN or build bin/doppel")
        return bin!!
    }

    private fun start(vararg args: String): DoppelIdeClient =
        DoppelIdeClient.start(helperBin(), args.toList(), stderr = { stderr.add(it) }).also { started.add(it) }

    private fun startInitialized(workspace: Path? = null): DoppelIdeClient = start().also {
        it.initialize(InitializeParams("jetbrains-test", "0", listOfNotNull(workspace?.toString())))
    }

    @AfterEach
    fun tearDown() {
        for (c in started) c.close()
        for (c in started) assertNotNull(c.exitCode(), "the helper still runs after close")
    }

    private fun <T : Throwable> rpcError(type: Class<T>, block: () -> Unit): T = assertThrows(type, block, "stderr:\n" + stderr.joinToString("\n"))

    @Test
    fun `initialize answers who it is and what it launches`() {
        val c = start()
        val res = c.initialize(InitializeParams("jetbrains-test", "2025.1", emptyList()))
        assertEquals("doppel", res.serverName)
        assertEquals(PROTOCOL_VERSION, res.protocolVersion)
        assertTrue(res.serverVersion.isNotEmpty())
        assertTrue(res.debugTypes.containsAll(LaunchType.entries.map { it.wire }), "${res.debugTypes}")
        assertEquals(res, c.server)
        val again = rpcError(InvalidRequestException::class.java) { c.initialize(InitializeParams("again")) }
        assertEquals(-32600, again.code)
    }

    @Test
    fun `requests before initialize fail with -32002`() {
        val c = start()
        val e = rpcError(ServerNotInitializedException::class.java) { c.getSchema() }
        assertEquals(-32002, e.code)
        assertTrue(e.message!!.contains("initialize"), e.message)
    }

    @Test
    fun `getSchema returns the config's JSON schema`() {
        val schema = startInitialized().getSchema()
        assertTrue(schema.isJsonObject, "$schema")
        val o = schema.asJsonObject
        assertTrue(o.str("\$schema").contains("json-schema.org"), o.str("\$schema"))
        val text = Json.stringify(schema)
        for (key in listOf("\"target\"", "\"feature\"", "\"incoming\"")) assertTrue(text.contains(key), "schema without $key")
    }

    @Test
    fun `checkConfig locates a bad key with line, column and key path`(@TempDir ws: Path) {
        val c = startInitialized()
        val path = ws.resolve(".doppel/config.yaml").toString()
        val bad = "target: deployment/backend\nfeature:\n  network:\n    incomin: steal\n"
        val d = c.checkConfig(path, bad).single()
        assertEquals("error", d.severity)
        assertTrue(d.isError)
        assertEquals("feature.network.incomin", d.keyPath)
        assertEquals(4, d.line)
        assertEquals(5, d.column)
        assertEquals("unknown_key", d.code)
        assertTrue(d.message.contains("incoming"), d.message)

        // From the file on disk (no text), and a valid file gives an empty list.
        File(path).apply { parentFile.mkdirs(); writeText(bad) }
        assertEquals(d, c.checkConfig(path).single())
        assertEquals(emptyList<Diagnostic>(), c.checkConfig(path, "target: deployment/backend\nfeature:\n  network:\n    incoming: steal\n"))
        // A wrong enum value, in JSON.
        val json = c.checkConfig(ws.resolve(".mirrord/mirrord.json").toString(), "{\n  \"feature\": {\"network\": {\"incoming\": {\"mode\": \"borrow\"}}}\n}\n")
        assertEquals("feature.network.incoming.mode", json.single().keyPath)
        assertEquals(2, json.single().line)
    }

    @Test
    fun `configDiagnostics are pushed when a file under dot doppel changes`(@TempDir ws: Path) {
        val c = start()
        val pushed = LinkedBlockingQueue<ConfigDiagnosticsParams>()
        c.onConfigDiagnostics { pushed.put(it) }
        c.initialize(InitializeParams("jetbrains-test", "0", listOf(ws.toString())))
        val file = ws.resolve(".doppel/config.yaml").toFile()
        file.parentFile.mkdirs()
        file.writeText("feature:\n  network:\n    incomin: steal\n")
        var got: ConfigDiagnosticsParams? = null
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15)
        while (System.nanoTime() < deadline) {
            val p = pushed.poll(500, TimeUnit.MILLISECONDS) ?: continue
            if (p.path.endsWith("config.yaml") && p.diagnostics.isNotEmpty()) { got = p; break }
        }
        assertNotNull(got, "no doppel/configDiagnostics within 15 s; stderr:\n" + stderr.joinToString("\n"))
        assertEquals("feature.network.incomin", got!!.diagnostics.single().keyPath)
        assertEquals(3, got.diagnostics.single().line)
    }

    private fun clusterKubeconfig(): String? =
        (System.getenv("KUBECONFIG")?.takeIf { it.isNotEmpty() } ?: "/var/lib/doppel-cluster/kubeconfig/admin.conf").takeIf { File(it).canRead() }

    @Test
    fun `listTargets feeds the picker from the local cluster, or says why not`() {
        val c = startInitialized()
        val kubeconfig = clusterKubeconfig()
        try {
            val res = c.listTargets(ListTargetsParams(allNamespaces = true, kubeconfig = kubeconfig))
            assertTrue(res.targets.isNotEmpty(), "no targets in the cluster")
            assertTrue(res.namespaces.contains("kube-system"), "${res.namespaces}")
            for (t in res.targets) {
                assertEquals("${t.kind}/${t.name}", t.path)
                assertTrue(t.namespace.isNotEmpty())
            }
            val tree = TargetTree.of(res)
            val coredns = tree.filter("coredns").filterIsInstance<TargetTree.Item.Target>()
            assertTrue(coredns.any { it.target.kind == "deployment" && it.target.namespace == "kube-system" }, "${tree.items().map { it.label }}")
            println("listTargets: ${res.targets.size} targets in ${tree.namespaces.size} namespaces")
            // One namespace.
            val ks = c.listTargets(ListTargetsParams(namespace = "kube-system", kubeconfig = kubeconfig))
            assertEquals("kube-system", ks.namespace)
            assertTrue(ks.targets.all { it.namespace == "kube-system" })
        } catch (e: ClusterException) {
            // No cluster here: the error path, with its code and category.
            println("listTargets: the cluster is not reachable (${e.message}); checked the error path")
            assertEquals(-32011, e.code)
            assertNotNull(e.category)
        }
    }

    @Test
    fun `listTargets against an unreachable cluster fails with -32011`(@TempDir dir: Path) {
        val kc = dir.resolve("kubeconfig").toFile()
        kc.writeText(
            """
            apiVersion: v1
            kind: Config
            clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
            users: [{name: u, user: {token: t}}]
            contexts: [{name: nowhere, context: {cluster: nowhere, user: u, namespace: default}}]
            current-context: nowhere
            """.trimIndent(),
        )
        val c = startInitialized()
        val e = rpcError(ClusterException::class.java) { c.listTargets(ListTargetsParams(kubeconfig = kc.path)) }
        assertEquals(-32011, e.code)
        assertTrue(e.category == "cluster" || e.category == "user", "category ${e.category}")
        assertTrue(e.message!!.isNotEmpty())
    }

    @Test
    fun `unknown sessions fail with -32012 and their id`() {
        val c = startInitialized()
        val end = rpcError(UnknownSessionException::class.java) { c.endSession("no-such-session") }
        assertEquals(-32012, end.code)
        assertEquals("no-such-session", end.sessionId)
        val paused = rpcError(UnknownSessionException::class.java) { c.debuggeeState("no-such-session", true) }
        assertEquals("no-such-session", paused.sessionId)
        val reuse = rpcError(UnknownSessionException::class.java) {
            c.resolveLaunch(ResolveLaunchParams(RunSpec(LaunchType.NODE, "n", "/ws/server.js").toLaunch(), sessionId = "gone"))
        }
        assertEquals("gone", reuse.sessionId)
        assertEquals(emptyList<SessionInfo>(), c.listSessions())
    }

    @Test
    fun `launches doppel can't run fail with -32013`() {
        val c = startInitialized()
        val ruby = rpcError(UnsupportedLaunchException::class.java) {
            c.resolveLaunch(ResolveLaunchParams(mapOf("type" to "ruby", "request" to "launch", "name" to "r")))
        }
        assertEquals(-32013, ruby.code)
        assertEquals("ruby", ruby.type)
        val attach = rpcError(UnsupportedLaunchException::class.java) {
            c.resolveLaunch(ResolveLaunchParams(RunSpec(LaunchType.JAVA, "j").toLaunch() + ("request" to "attach")))
        }
        assertEquals("java", attach.type)
        assertEquals("request", attach.reason)
    }

    @Test
    fun `a launch with an invalid config fails with -32010 and diagnostics, even when reusing a dead session`(@TempDir ws: Path) {
        val c = startInitialized()
        val cfg = ws.resolve(".doppel/config.yaml").toFile()
        cfg.parentFile.mkdirs()
        cfg.writeText("target: deployment/backend\nfeature:\n  network:\n    incoming:\n      mode: borrow\n")
        val patcher = LaunchPatcher(c)
        val spec = RunSpec(LaunchType.PYTHON, "srv", "${ws}/app.py", cwd = ws.toString(), env = mapOf("PORT" to "8080"))
        // reuseSessionId names no live session: the patcher starts a new one, which fails on the config.
        val e = rpcError(ConfigInvalidException::class.java) { patcher.patch(spec, TargetChoice.FromConfig, ws.toString(), reuseSessionId = "gone") }
        assertEquals(-32010, e.code)
        assertEquals("config", e.category)
        val d = e.diagnostics.single()
        assertEquals("feature.network.incoming.mode", d.keyPath)
        assertEquals(5, d.line)
        assertTrue(d.column > 0)
    }

    @Test
    fun `protocol errors - method not found and invalid params`() {
        val c = startInitialized()
        assertEquals(-32601, rpcError(MethodNotFoundException::class.java) { c.rpc.call("doppel/noSuchMethod") }.code)
        assertEquals(-32602, rpcError(InvalidParamsException::class.java) { c.rpc.call(Methods.CHECK_CONFIG, Json.obj("text" to "x")) }.code)
        assertEquals(-32602, rpcError(InvalidParamsException::class.java) { c.rpc.call(Methods.END_SESSION, Json.obj("sessionId" to 5)) }.code)
    }

    @Test
    fun `shutdown then exit ends the process with 0`() {
        val c = startInitialized()
        c.shutdown()
        val after = rpcError(InvalidRequestException::class.java) { c.listSessions() }
        assertEquals(-32600, after.code)
        c.exit()
        assertEquals(0, c.waitFor(10_000), "exit code; stderr:\n" + stderr.joinToString("\n"))
        c.rpc.done.get(5, TimeUnit.SECONDS)
        assertTrue(c.rpc.isClosed)
        assertFalse(c.isAlive)
        assertTrue(runCatching { c.listSessions() }.exceptionOrNull() is ConnectionClosedException)
    }

    @Test
    fun `exit without shutdown is exit code 1, and a closed stdin ends the helper`() {
        val c = startInitialized()
        c.exit()
        assertEquals(1, c.waitFor(10_000))
        val d = startInitialized()
        d.rpc.close() // closes the helper's stdin
        assertNotNull(d.waitFor(10_000), "the helper outlived its stdin")
    }

    /**
     * A real session (opt-in, DOPPEL_JB_SESSION=1: it starts an agent in the cluster, with the
     * image $DOPPEL_AGENT_IMAGE when set):
     * resolveLaunch of a Node launch without a target, progress and state notifications, the
     * injected env, then endSession.
     */
    @Test
    fun `a real session - targetless node launch`(@TempDir ws: Path) {
        assumeTrue(System.getenv("DOPPEL_JB_SESSION") == "1", "set DOPPEL_JB_SESSION=1 to start a real session")
        val kubeconfig = clusterKubeconfig()
        assumeTrue(kubeconfig != null, "no kubeconfig")
        // The agent image the cluster has (the Makefile's DOPPEL_AGENT_IMAGE), when the helper's own version has none.
        System.getenv("DOPPEL_AGENT_IMAGE")?.takeIf { it.isNotEmpty() }?.let { image ->
            ws.resolve(".doppel").toFile().mkdirs()
            ws.resolve(".doppel/config.yaml").toFile().writeText("agent:\n  image: $image\n  image_pull_policy: IfNotPresent\n")
        }
        val c = start("--kubeconfig", kubeconfig!!)
        val tracker = SessionTracker()
        c.track(tracker)
        c.initialize(InitializeParams("jetbrains-test", "0", listOf(ws.toString())))
        val spec = RunSpec(LaunchType.NODE, "server", "$ws/server.js", cwd = ws.toString(), env = mapOf("PORT" to "8080"),
            runtimeArgs = listOf("--inspect-brk=127.0.0.1:9229"))
        val t0 = System.nanoTime()
        val p = LaunchPatcher(c).patch(spec, TargetChoice.NoTarget, ws.toString())
        println("resolveLaunch (targetless node): ${(System.nanoTime() - t0) / 1_000_000} ms")
        assertTrue(p.env["LD_PRELOAD"]!!.contains("libdoppel"), "${p.env}")
        assertNotNull(p.env["DOPPEL_LAYER_SOCKET"])
        assertEquals("8080", p.env["PORT"])
        assertEquals(emptyList<String>(), p.wrapper)
        val view = tracker[p.sessionId]
        assertNotNull(view, "no notification for the session")
        assertEquals(SessionStates.READY, view!!.state)
        assertEquals(p.sessionId, c.listSessions().single().sessionId)
        // Reuse: the same session.
        val again = LaunchPatcher(c).patch(spec, TargetChoice.NoTarget, ws.toString(), reuseSessionId = p.sessionId)
        assertEquals(p.sessionId, again.sessionId)
        c.debuggeeState(p.sessionId, true)
        c.debuggeeState(p.sessionId, false)
        // Go: no Delve; the command line runs behind the session's wrapper, inside the session.
        val goSpec = RunSpec(LaunchType.GO, "gosrv", ws.toString(), cwd = ws.toString())
        val g = LaunchPatcher(c).patch(goSpec, TargetChoice.NoTarget, ws.toString(), reuseSessionId = p.sessionId)
        assertEquals(p.sessionId, g.sessionId)
        assertEquals(listOf("wrap", "--"), g.wrapper.drop(1), "${g.wrapper}")
        val pb = ProcessBuilder(g.wrapper + listOf("sh", "-c", "test -n \"\$DOPPEL_LAYER_SOCKET\" && exit 7")).redirectErrorStream(true)
        pb.environment().putAll(g.env)
        val proc = pb.start()
        val out = proc.inputStream.bufferedReader().readText()
        assertTrue(proc.waitFor(30, TimeUnit.SECONDS))
        assertEquals(7, proc.exitValue(), "the wrapped command's exit code is the wrapper's; output:\n$out")
        c.endSession(p.sessionId)
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
        while (tracker[p.sessionId]?.live == true && System.nanoTime() < deadline) Thread.sleep(50)
        assertEquals(SessionStates.ENDED, tracker[p.sessionId]!!.state)
    }
}
