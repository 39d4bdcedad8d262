package dev.doppel.jetbrains.core

import com.google.gson.JsonElement
import com.google.gson.JsonObject

// The types of docs/ide-protocol.md, version 1 (the Go form is helper/ide/types.go).

const val PROTOCOL_VERSION = 1

object Methods {
    const val INITIALIZE = "initialize"
    const val SHUTDOWN = "shutdown"
    const val EXIT = "exit" // a notification
    const val LIST_TARGETS = "doppel/listTargets"
    const val GET_SCHEMA = "doppel/getSchema"
    const val CHECK_CONFIG = "doppel/checkConfig"
    const val RESOLVE_LAUNCH = "doppel/resolveLaunch"
    const val END_SESSION = "doppel/endSession"
    const val DEBUGGEE_STATE = "doppel/debuggeeState"
    const val LIST_SESSIONS = "doppel/listSessions"

    const val PROGRESS = "doppel/progress"
    const val SESSION_STATE = "doppel/sessionState"
    const val NOTICE = "doppel/notice"
    const val CONFIG_DIAGNOSTICS = "doppel/configDiagnostics"
}

object ErrorCodes {
    const val PARSE_ERROR = -32700
    const val INVALID_REQUEST = -32600
    const val METHOD_NOT_FOUND = -32601
    const val INVALID_PARAMS = -32602
    const val INTERNAL_JSONRPC = -32603
    const val SERVER_NOT_INITIALIZED = -32002
    const val CONFIG_INVALID = -32010
    const val CLUSTER = -32011
    const val UNKNOWN_SESSION = -32012
    const val UNSUPPORTED_LAUNCH = -32013
    const val INTERNAL = -32099
}

data class InitializeParams(
    val clientName: String? = null,
    val clientVersion: String? = null,
    val workspaceFolders: List<String> = emptyList(),
) : JsonValue {
    override fun toJson(): JsonElement = Json.obj(
        "clientName" to clientName,
        "clientVersion" to clientVersion,
        "workspaceFolders" to workspaceFolders.ifEmpty { null },
    )
}

data class InitializeResult(
    val serverName: String,
    val serverVersion: String,
    val protocolVersion: Int,
    val debugTypes: List<String>,
) {
    companion object {
        fun from(o: JsonObject) = InitializeResult(o.str("serverName"), o.str("serverVersion"), o.int("protocolVersion"), o.strings("debugTypes"))
    }
}

data class ListTargetsParams(
    val namespace: String? = null,
    val allNamespaces: Boolean = false,
    val context: String? = null,
    val kubeconfig: String? = null,
    /** Supplies kubeconfig, kube_context and target.namespace (helper/ide/types.go; not in the doc's example). */
    val configFile: String? = null,
) : JsonValue {
    override fun toJson(): JsonElement = Json.obj(
        "namespace" to namespace?.ifEmpty { null },
        "allNamespaces" to (if (allNamespaces) true else null),
        "context" to context?.ifEmpty { null },
        "kubeconfig" to kubeconfig?.ifEmpty { null },
        "configFile" to configFile?.ifEmpty { null },
    )
}

data class TargetInfo(
    val path: String,
    val kind: String,
    val name: String,
    val namespace: String,
    val containers: List<String> = emptyList(),
    val ready: Boolean = false,
    val readyPods: Int = 0,
    val pods: Int = 0,
) {
    companion object {
        fun from(o: JsonObject) = TargetInfo(
            o.str("path"), o.str("kind"), o.str("name"), o.str("namespace"),
            o.strings("containers"), o.bool("ready"), o.int("readyPods"), o.int("pods"),
        )
    }
}

data class ListTargetsResult(
    /** The namespace listed (the context's when none was asked). */
    val namespace: String,
    val namespaces: List<String>,
    val targets: List<TargetInfo>,
    val warnings: List<String> = emptyList(),
) {
    companion object {
        fun from(o: JsonObject) = ListTargetsResult(
            o.str("namespace"), o.strings("namespaces"), o.objects("targets").map(TargetInfo::from), o.strings("warnings"),
        )
    }
}

data class Diagnostic(
    val severity: String,
    val message: String,
    val keyPath: String? = null,
    /** 1-based, 0 when unknown. */
    val line: Int = 0,
    /** 1-based, 0 when unknown. */
    val column: Int = 0,
    val code: String? = null,
) {
    val isError: Boolean get() = severity == "error"

    /** `4:5: message` as a compiler prints it (without the file). */
    override fun toString(): String = buildString {
        if (line > 0) append(line).append(':').append(column).append(": ")
        if (severity == "warning") append("warning: ")
        append(message)
    }

    companion object {
        fun from(o: JsonObject) = Diagnostic(
            o.str("severity", "error"), o.str("message"), o.strOrNull("keyPath"), o.int("line"), o.int("column"), o.strOrNull("code"),
        )

        fun listFrom(o: JsonObject, key: String = "diagnostics") = o.objects(key).map(::from)
    }
}

data class CheckConfigParams(val path: String, val text: String? = null) : JsonValue {
    override fun toJson(): JsonElement = Json.obj("path" to path, "text" to text)
}

data class ResolveLaunchParams(
    /** The IDE's launch configuration, variables substituted. */
    val launch: Map<String, Any?>,
    val workspaceFolder: String? = null,
    /** The picker's choice; `"targetless"` allowed; null means the config's. */
    val target: String? = null,
    val namespace: String? = null,
    val configFile: String? = null,
    /** Reuse this live session. */
    val sessionId: String? = null,
    /** The IDE runs the program itself behind the result's `wrapper` (Go: no Delve is started). */
    val wrap: Boolean = false,
) : JsonValue {
    override fun toJson(): JsonElement = Json.obj(
        "launch" to launch,
        "workspaceFolder" to workspaceFolder?.ifEmpty { null },
        "target" to target?.ifEmpty { null },
        "namespace" to namespace?.ifEmpty { null },
        "configFile" to configFile?.ifEmpty { null },
        "sessionId" to sessionId?.ifEmpty { null },
        "wrap" to (if (wrap) true else null),
    )
}

data class TargetRef(val path: String, val namespace: String? = null, val pod: String? = null, val container: String? = null) {
    override fun toString(): String = if (namespace.isNullOrEmpty()) path else "$namespace/$path"

    companion object {
        fun from(o: JsonObject?) = o?.let { TargetRef(it.str("path"), it.strOrNull("namespace"), it.strOrNull("pod"), it.strOrNull("container")) }
    }
}

data class ResolveLaunchResult(
    val sessionId: String,
    val launch: Map<String, Any?>,
    val target: TargetRef? = null,
    val warnings: List<String> = emptyList(),
    /** The command prefix (`doppel wrap --`) that runs a command inside the session; empty for Delve's launch. */
    val wrapper: List<String> = emptyList(),
) {
    companion object {
        fun from(o: JsonObject) = ResolveLaunchResult(
            o.str("sessionId"), Json.toMap(o.get("launch")), TargetRef.from(o.objOrNull("target")), o.strings("warnings"), o.strings("wrapper"),
        )
    }
}

data class SessionInfo(val sessionId: String, val target: TargetRef?, val state: String, val paused: Boolean, val started: String) {
    companion object {
        fun from(o: JsonObject) = SessionInfo(o.str("sessionId"), TargetRef.from(o.objOrNull("target")), o.str("state"), o.bool("paused"), o.str("started"))
    }
}

object SessionStates {
    const val STARTING = "starting"
    const val READY = "ready"
    const val RECONNECTING = "reconnecting"
    const val ENDED = "ended"
}

// Notifications, server to client.

data class ProgressParams(val sessionId: String, val step: String, val elapsedMs: Long) {
    companion object {
        fun from(o: JsonObject) = ProgressParams(o.str("sessionId"), o.str("step"), o.long("elapsedMs"))
    }
}

data class SessionStateParams(val sessionId: String, val state: String, val reason: String? = null, val category: String? = null) {
    companion object {
        fun from(o: JsonObject) = SessionStateParams(o.str("sessionId"), o.str("state"), o.strOrNull("reason"), o.strOrNull("category"))
    }
}

data class NoticeParams(val sessionId: String?, val severity: String, val message: String) {
    companion object {
        fun from(o: JsonObject) = NoticeParams(o.strOrNull("sessionId"), o.str("severity", "info"), o.str("message"))
    }
}

data class ConfigDiagnosticsParams(val path: String, val diagnostics: List<Diagnostic>) {
    companion object {
        fun from(o: JsonObject) = ConfigDiagnosticsParams(o.str("path"), Diagnostic.listFrom(o))
    }
}
