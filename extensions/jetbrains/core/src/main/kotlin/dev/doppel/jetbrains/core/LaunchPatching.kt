package dev.doppel.jetbrains.core

/**
 * The launch types of docs/ide-protocol.md the JetBrains run configurations map to. All of them
 * get `LD_PRELOAD` and `DOPPEL_LAYER_SOCKET`; [GO] programs (often statically linked, and GoLand's
 * debugger runs its own Delve) are run behind the session's wrapper (`doppel wrap --`).
 */
enum class LaunchType(val wire: String) {
    GO("go"), NODE("node"), PYTHON("python"), JAVA("java");

    /** The command line must be prefixed with [PatchedLaunch.wrapper]. */
    val wrapped: Boolean get() = this == GO
}

/**
 * A run configuration as plain data, as the IntelliJ glue reads it from a Java, Python, Node or
 * Go run configuration (or from the command line the IDE is about to run).
 */
data class RunSpec(
    val type: LaunchType,
    /** The run configuration's name. */
    val name: String,
    /** Script, main class, or Go package/file; whatever identifies the program. */
    val program: String? = null,
    val args: List<String> = emptyList(),
    /** Node's runtime arguments, the JVM's options, or the Python interpreter's options. */
    val runtimeArgs: List<String> = emptyList(),
    val cwd: String? = null,
    /** The run configuration's own environment (not the IDE's). */
    val env: Map<String, String> = emptyMap(),
    /** Started by the Debug executor. */
    val debug: Boolean = false,
    /** The port the IDE's debugger listens on or connects to, when the glue knows it. */
    val debuggerPort: Int? = null,
    /** Anything else to send in `launch` (merged last). */
    val extra: Map<String, Any?> = emptyMap(),
) {
    /**
     * The launch configuration resolveLaunch takes: VS Code's shape for the same type, so the
     * helper's port detection (node `--inspect`, JDWP `address=`, debugpy `connect`) applies.
     */
    fun toLaunch(): Map<String, Any?> {
        val m = LinkedHashMap<String, Any?>()
        m["type"] = type.wire
        m["request"] = "launch"
        m["name"] = name
        if (!program.isNullOrEmpty()) m["program"] = program
        if (args.isNotEmpty()) m["args"] = args
        if (!cwd.isNullOrEmpty()) m["cwd"] = cwd
        m["env"] = LinkedHashMap(env)
        when (type) {
            LaunchType.NODE -> if (runtimeArgs.isNotEmpty()) m["runtimeArgs"] = runtimeArgs
            LaunchType.JAVA -> if (runtimeArgs.isNotEmpty()) m["vmArgs"] = runtimeArgs
            LaunchType.PYTHON -> if (runtimeArgs.isNotEmpty()) m["pythonArgs"] = runtimeArgs
            LaunchType.GO -> m["mode"] = "debug"
        }
        val port = debuggerPort ?: CommandLines.debuggerPort(type, runtimeArgs + args)
        if (port != null) {
            when (type) {
                // PyCharm's pydevd connects to the IDE: debugpy's `connect`.
                LaunchType.PYTHON -> m["connect"] = mapOf("host" to "127.0.0.1", "port" to port)
                // The helper sets launch.port for Go (Delve's DAP port): never send the IDE's there.
                LaunchType.GO -> {}
                else -> m["port"] = port
            }
        }
        m.putAll(extra)
        return m
    }
}

/** What the glue applies to the run configuration. */
data class PatchedLaunch(
    val sessionId: String,
    /** The run configuration's env after doppel: its own, the target's under it, doppel's variables. */
    val env: Map<String, String>,
    /** What doppel added or changed, for the log and the UI. */
    val added: Map<String, String>,
    /** Put before the command line (Go): runs it inside the session under its launcher. */
    val wrapper: List<String>,
    val target: TargetRef?,
    val warnings: List<String>,
    /** The launch the helper returned, as it is. */
    val launch: Map<String, Any?>,
)

/**
 * Launch patching: a run configuration's data → doppel/resolveLaunch → the env to run it with.
 */
class LaunchPatcher(private val client: DoppelIdeClient) {
    /**
     * Resolves [spec] for [choice]. [reuseSessionId] reuses a live session (a restarted run);
     * when it is no longer live the helper says -32012 and a new session is started instead.
     */
    fun patch(
        spec: RunSpec,
        choice: TargetChoice,
        workspaceFolder: String?,
        configFile: String? = null,
        reuseSessionId: String? = null,
    ): PatchedLaunch {
        fun params(session: String?) = ResolveLaunchParams(
            launch = spec.toLaunch(), workspaceFolder = workspaceFolder, target = choice.targetParam,
            namespace = choice.namespaceParam, configFile = configFile, sessionId = session, wrap = spec.type.wrapped,
        )
        val res = try {
            client.resolveLaunch(params(reuseSessionId))
        } catch (e: UnknownSessionException) {
            if (reuseSessionId.isNullOrEmpty()) throw e
            client.resolveLaunch(params(null))
        }
        return apply(spec, res)
    }

    companion object {
        /** Turns a resolveLaunch result into what the glue applies; pure. */
        fun apply(spec: RunSpec, res: ResolveLaunchResult): PatchedLaunch {
            val returned = envOf(res.launch)
            val merged = mergeEnv(spec.env, returned)
            val added = merged.filter { (k, v) -> spec.env[k] != v }
            if (spec.type.wrapped && res.wrapper.isEmpty()) {
                throw IllegalStateException("doppel resolved a ${spec.type.wire} launch without the wrapper to run it in the session")
            }
            val wrapper = if (spec.type.wrapped) res.wrapper else emptyList()
            return PatchedLaunch(res.sessionId, merged, added, wrapper, res.target, res.warnings, res.launch)
        }

        /** `launch.env` as strings (numbers and booleans as JSON writes them; nulls dropped). */
        fun envOf(launch: Map<String, Any?>): Map<String, String> {
            val env = launch["env"] as? Map<*, *> ?: return emptyMap()
            val out = LinkedHashMap<String, String>()
            for ((k, v) in env) {
                if (k == null || v == null) continue
                out[k.toString()] = when (v) {
                    is Double -> if (v == Math.floor(v) && !v.isInfinite()) v.toLong().toString() else v.toString()
                    else -> v.toString()
                }
            }
            return out
        }

        /**
         * The run configuration's env after doppel: the helper's env already has the launch's own
         * variables over the target's and doppel's over both, so it wins; variables of the run
         * configuration it does not mention stay.
         */
        fun mergeEnv(own: Map<String, String>, returned: Map<String, String>): Map<String, String> =
            LinkedHashMap(own).apply { putAll(returned) }
    }
}

/** Reading debugger ports and programs out of the command lines JetBrains IDEs build. */
object CommandLines {
    private val inspect = Regex("^--inspect(?:-brk|-port|-wait)?=(?:.*:)?(\\d+)$")
    private val jdwp = Regex("jdwp=.*address=(?:[^,]*:)?(\\d+)")

    fun debuggerPort(type: LaunchType, args: List<String>): Int? = when (type) {
        LaunchType.NODE -> args.firstNotNullOfOrNull { inspect.find(it)?.groupValues?.get(1)?.toIntOrNull() }
        LaunchType.JAVA -> args.firstNotNullOfOrNull { jdwp.find(it)?.groupValues?.get(1)?.toIntOrNull() }
        LaunchType.PYTHON -> pydevdPort(args)
        LaunchType.GO -> null
    }

    /** PyCharm debugs with `python … pydevd.py --port N --client HOST --file script.py args`. */
    fun pydevdPort(args: List<String>): Int? {
        val pydevd = args.indexOfFirst { it.endsWith("pydevd.py") }
        if (pydevd < 0) return null
        val i = args.subList(pydevd, args.size).indexOf("--port")
        if (i < 0) return null
        return args.getOrNull(pydevd + i + 1)?.toIntOrNull()
    }

    /** The script after pydevd's `--file`, else the first argument that is not an option. */
    fun pythonScript(args: List<String>): String? {
        val f = args.indexOf("--file")
        if (f >= 0 && f + 1 < args.size) return args[f + 1]
        return args.firstOrNull { !it.startsWith("-") }
    }
}
