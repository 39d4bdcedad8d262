package dev.doppel.jetbrains.core

import com.google.gson.JsonElement
import java.io.File
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit

/**
 * The typed client of `doppel ide` (docs/ide-protocol.md): one per IDE window (project). Use
 * [start] to spawn the helper, then [initialize] before anything else.
 */
class DoppelIdeClient(val rpc: JsonRpcClient, private val process: Process? = null) : AutoCloseable {
    /** What [initialize] answered; null before. */
    @Volatile var server: InitializeResult? = null
        private set

    // -- requests --

    fun initialize(params: InitializeParams): InitializeResult {
        val res = InitializeResult.from(rpc.call(Methods.INITIALIZE, params.toJson()).objOrEmpty())
        server = res
        return res
    }

    fun getSchema(): JsonElement = rpc.call(Methods.GET_SCHEMA).objOrEmpty().get("schema") ?: com.google.gson.JsonNull.INSTANCE

    fun checkConfig(path: String, text: String? = null): List<Diagnostic> =
        Diagnostic.listFrom(rpc.call(Methods.CHECK_CONFIG, CheckConfigParams(path, text).toJson()).objOrEmpty())

    fun listTargets(params: ListTargetsParams = ListTargetsParams(), timeoutMs: Long = 60_000): ListTargetsResult =
        ListTargetsResult.from(rpc.call(Methods.LIST_TARGETS, params.toJson(), timeoutMs).objOrEmpty())

    /** Starts or reuses a session; may take a while (agent start): progress arrives as notifications meanwhile. */
    fun resolveLaunch(params: ResolveLaunchParams, timeoutMs: Long = RESOLVE_TIMEOUT_MS): ResolveLaunchResult =
        ResolveLaunchResult.from(rpc.call(Methods.RESOLVE_LAUNCH, params.toJson(), timeoutMs).objOrEmpty())

    fun resolveLaunchAsync(params: ResolveLaunchParams): CompletableFuture<ResolveLaunchResult> =
        rpc.request(Methods.RESOLVE_LAUNCH, params.toJson()).thenApply { ResolveLaunchResult.from(it.objOrEmpty()) }

    fun endSession(sessionId: String) {
        rpc.call(Methods.END_SESSION, Json.obj("sessionId" to sessionId))
    }

    fun debuggeeState(sessionId: String, paused: Boolean) {
        rpc.call(Methods.DEBUGGEE_STATE, Json.obj("sessionId" to sessionId, "paused" to paused))
    }

    fun listSessions(): List<SessionInfo> = rpc.call(Methods.LIST_SESSIONS).objOrEmpty().objects("sessions").map(SessionInfo::from)

    fun shutdown(timeoutMs: Long = 30_000) {
        rpc.call(Methods.SHUTDOWN, null, timeoutMs)
    }

    /**
     * Sends `exit` and closes the helper's stdin: nothing may follow exit, and a helper blocked
     * reading its stdin sees the end of input at once instead of after its own grace period.
     */
    fun exit() {
        try {
            rpc.notify(Methods.EXIT)
        } finally {
            rpc.closeOutput()
        }
    }

    // -- notifications --

    fun onProgress(h: (ProgressParams) -> Unit) = rpc.onNotification(Methods.PROGRESS) { h(ProgressParams.from(it.objOrEmpty())) }
    fun onSessionState(h: (SessionStateParams) -> Unit) = rpc.onNotification(Methods.SESSION_STATE) { h(SessionStateParams.from(it.objOrEmpty())) }
    fun onNotice(h: (NoticeParams) -> Unit) = rpc.onNotification(Methods.NOTICE) { h(NoticeParams.from(it.objOrEmpty())) }
    fun onConfigDiagnostics(h: (ConfigDiagnosticsParams) -> Unit) =
        rpc.onNotification(Methods.CONFIG_DIAGNOSTICS) { h(ConfigDiagnosticsParams.from(it.objOrEmpty())) }

    /** Feeds every session notification to a tracker. */
    fun track(tracker: SessionTracker): () -> Unit {
        val offs = listOf(onProgress(tracker::onProgress), onSessionState(tracker::onSessionState), onNotice(tracker::onNotice))
        return { offs.forEach { it() } }
    }

    // -- process --

    val isAlive: Boolean get() = (process?.isAlive ?: true) && !rpc.isClosed

    /** The helper's exit code once it exited, else null. */
    fun exitCode(): Int? = process?.let { if (it.isAlive) null else it.exitValue() }

    /** Waits for the helper process to exit; its exit code, or null if it still runs. */
    fun waitFor(timeoutMs: Long): Int? {
        val p = process ?: return null
        return if (p.waitFor(timeoutMs, TimeUnit.MILLISECONDS)) p.exitValue() else null
    }

    /**
     * Ends the conversation as the protocol says: shutdown (every session ends), exit, then waits
     * for the process; kills it if it does not go. Safe to call twice, or after the helper died.
     */
    override fun close() {
        if (!rpc.isClosed) {
            runCatching { shutdown(15_000) }
            runCatching { exit() }
        }
        val p = process
        if (p != null && !p.waitFor(5, TimeUnit.SECONDS)) {
            p.destroy()
            if (!p.waitFor(5, TimeUnit.SECONDS)) p.destroyForcibly()
        }
        rpc.close()
    }

    companion object {
        const val RESOLVE_TIMEOUT_MS = 5 * 60_000L

        /**
         * Spawns `doppel ide` ([helper] is the doppel binary) and connects to it. Its stderr (the
         * log, one line per event) goes to [stderr] line by line, on a thread of its own.
         */
        fun start(
            helper: String,
            extraArgs: List<String> = emptyList(),
            env: Map<String, String> = emptyMap(),
            workingDir: File? = null,
            stderr: (String) -> Unit = {},
            log: (String) -> Unit = stderr,
        ): DoppelIdeClient {
            val pb = ProcessBuilder(listOf(helper, "ide") + extraArgs)
            pb.environment().putAll(env)
            if (workingDir != null) pb.directory(workingDir)
            pb.redirectInput(ProcessBuilder.Redirect.PIPE)
            pb.redirectOutput(ProcessBuilder.Redirect.PIPE)
            pb.redirectError(ProcessBuilder.Redirect.PIPE)
            val p = pb.start()
            Thread({
                runCatching { p.errorStream.bufferedReader().forEachLine(stderr) }
            }, "doppel-ide-stderr").apply { isDaemon = true }.start()
            val rpc = JsonRpcClient(p.inputStream, p.outputStream, log)
            return DoppelIdeClient(rpc, p)
        }
    }
}

/**
 * Finds the doppel binary: an explicit setting, `$DOPPEL_BIN`, the plugin's bundled copy, then
 * PATH. Null when there is none.
 */
object HelperLocator {
    fun find(setting: String? = null, bundled: File? = null, env: Map<String, String> = System.getenv()): String? {
        val candidates = buildList {
            setting?.takeIf { it.isNotBlank() }?.let { add(File(it)) }
            env["DOPPEL_BIN"]?.takeIf { it.isNotBlank() }?.let { add(File(it)) }
            bundled?.let { add(it) }
            env["PATH"]?.split(File.pathSeparatorChar)?.filter { it.isNotEmpty() }?.forEach { add(File(it, "doppel")) }
        }
        return candidates.firstOrNull { it.isFile && it.canExecute() }?.absolutePath
    }
}
