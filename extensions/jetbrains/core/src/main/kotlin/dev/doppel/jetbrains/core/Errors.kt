package dev.doppel.jetbrains.core

import com.google.gson.JsonElement

/**
 * A JSON-RPC error response, typed by its code (docs/ide-protocol.md "Errors"). [message] is
 * the helper's sentence for the user; [data] the raw `data` member.
 */
sealed class DoppelRpcException(val code: Int, message: String, val data: JsonElement?) : RuntimeException(message) {
    /** The `category` of the data (user, config, cluster, internal), when there is one. */
    val category: String? get() = data.objOrEmpty().strOrNull("category")

    companion object {
        /** Maps an error response to its type. */
        fun of(code: Int, message: String, data: JsonElement?): DoppelRpcException = when (code) {
            ErrorCodes.PARSE_ERROR -> ParseErrorException(message, data)
            ErrorCodes.INVALID_REQUEST -> InvalidRequestException(message, data)
            ErrorCodes.METHOD_NOT_FOUND -> MethodNotFoundException(message, data)
            ErrorCodes.INVALID_PARAMS -> InvalidParamsException(message, data)
            ErrorCodes.SERVER_NOT_INITIALIZED -> ServerNotInitializedException(message, data)
            ErrorCodes.CONFIG_INVALID -> ConfigInvalidException(message, data)
            ErrorCodes.CLUSTER -> ClusterException(message, data)
            ErrorCodes.UNKNOWN_SESSION -> UnknownSessionException(message, data)
            ErrorCodes.UNSUPPORTED_LAUNCH -> UnsupportedLaunchException(message, data)
            ErrorCodes.INTERNAL, ErrorCodes.INTERNAL_JSONRPC -> InternalErrorException(code, message, data)
            else -> OtherRpcException(code, message, data)
        }
    }
}

class ParseErrorException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.PARSE_ERROR, message, data)
class InvalidRequestException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.INVALID_REQUEST, message, data)
class MethodNotFoundException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.METHOD_NOT_FOUND, message, data)
class InvalidParamsException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.INVALID_PARAMS, message, data)
class ServerNotInitializedException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.SERVER_NOT_INITIALIZED, message, data)

/** -32010: the configuration is invalid; [diagnostics] say where. */
class ConfigInvalidException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.CONFIG_INVALID, message, data) {
    val path: String? = data.objOrEmpty().strOrNull("path")
    val diagnostics: List<Diagnostic> = Diagnostic.listFrom(data.objOrEmpty())
}

/** -32011: the cluster refused or failed; [reason] is a kube.Error reason (not_found, forbidden, image_pull, …). */
class ClusterException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.CLUSTER, message, data) {
    val reason: String? = data.objOrEmpty().strOrNull("reason")
}

/** -32012: the session ended or never existed. */
class UnknownSessionException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.UNKNOWN_SESSION, message, data) {
    val sessionId: String? = data.objOrEmpty().strOrNull("sessionId")
}

/** -32013: this launch type can't be intercepted. */
class UnsupportedLaunchException(message: String, data: JsonElement?) : DoppelRpcException(ErrorCodes.UNSUPPORTED_LAUNCH, message, data) {
    val type: String? = data.objOrEmpty().strOrNull("type")
    val reason: String? = data.objOrEmpty().strOrNull("reason")
}

/** -32099 (or JSON-RPC's -32603): a bug; the message points at the helper's log. */
class InternalErrorException(code: Int, message: String, data: JsonElement?) : DoppelRpcException(code, message, data)

class OtherRpcException(code: Int, message: String, data: JsonElement?) : DoppelRpcException(code, message, data)

/** The helper's stream ended (the process exited, or closed stdout) with requests pending. */
class ConnectionClosedException(message: String, cause: Throwable? = null) : RuntimeException(message, cause)

/** No answer in time. */
class RpcTimeoutException(message: String) : RuntimeException(message)
