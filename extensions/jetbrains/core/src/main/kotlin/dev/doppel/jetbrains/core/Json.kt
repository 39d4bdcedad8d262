package dev.doppel.jetbrains.core

import com.google.gson.Gson
import com.google.gson.GsonBuilder
import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonNull
import com.google.gson.JsonObject
import com.google.gson.JsonPrimitive
import java.math.BigDecimal

/**
 * JSON plumbing. Protocol types are decoded by hand from [JsonObject]s, so that an absent
 * field (the helper omits absent optional fields) or a `null` (a Go nil slice) both give the
 * Kotlin default instead of a null in a non-null property.
 */
object Json {
    val gson: Gson = GsonBuilder().disableHtmlEscaping().serializeNulls().create()

    fun parse(text: String): JsonElement = com.google.gson.JsonParser.parseString(text)

    fun stringify(e: JsonElement): String = gson.toJson(e)

    /** A plain Kotlin value (Map, List, String, Number, Boolean, null) as JSON. */
    fun toJson(v: Any?): JsonElement = when (v) {
        null -> JsonNull.INSTANCE
        is JsonElement -> v
        is String -> JsonPrimitive(v)
        is Boolean -> JsonPrimitive(v)
        is Number -> JsonPrimitive(v)
        is Char -> JsonPrimitive(v.toString())
        is Map<*, *> -> JsonObject().also { o -> v.forEach { (k, x) -> o.add(k.toString(), toJson(x)) } }
        is Iterable<*> -> JsonArray().also { a -> v.forEach { a.add(toJson(it)) } }
        is Array<*> -> JsonArray().also { a -> v.forEach { a.add(toJson(it)) } }
        is JsonValue -> v.toJson()
        else -> throw IllegalArgumentException("no JSON form for ${v::class.java.name}")
    }

    /**
     * JSON as plain Kotlin values: objects are LinkedHashMaps (key order kept), arrays Lists,
     * integral numbers Long, other numbers Double.
     */
    fun toValue(e: JsonElement?): Any? = when {
        e == null || e.isJsonNull -> null
        e.isJsonObject -> LinkedHashMap<String, Any?>().also { m -> e.asJsonObject.entrySet().forEach { (k, x) -> m[k] = toValue(x) } }
        e.isJsonArray -> e.asJsonArray.map { toValue(it) }
        else -> {
            val p = e.asJsonPrimitive
            when {
                p.isBoolean -> p.asBoolean
                p.isString -> p.asString
                else -> {
                    val d = BigDecimal(p.asString)
                    if (d.stripTrailingZeros().scale() <= 0 && d.abs() <= BigDecimal(Long.MAX_VALUE)) d.toLong() else d.toDouble()
                }
            }
        }
    }

    @Suppress("UNCHECKED_CAST")
    fun toMap(e: JsonElement?): Map<String, Any?> = (toValue(e) as? Map<String, Any?>) ?: emptyMap()

    /** Builds an object, leaving out nulls, so that absent stays absent. */
    fun obj(vararg pairs: Pair<String, Any?>): JsonObject = JsonObject().also { o ->
        for ((k, v) in pairs) if (v != null) o.add(k, toJson(v))
    }
}

/** A protocol type with a JSON form. */
interface JsonValue {
    fun toJson(): JsonElement
}

internal fun JsonElement?.objOrEmpty(): JsonObject = if (this != null && this.isJsonObject) this.asJsonObject else JsonObject()

internal fun JsonObject.str(key: String, default: String = ""): String {
    val e = get(key) ?: return default
    return if (e.isJsonPrimitive) e.asString else default
}

internal fun JsonObject.strOrNull(key: String): String? {
    val e = get(key) ?: return null
    return if (e.isJsonPrimitive) e.asString else null
}

internal fun JsonObject.int(key: String, default: Int = 0): Int {
    val e = get(key) ?: return default
    return if (e.isJsonPrimitive && e.asJsonPrimitive.isNumber) e.asInt else default
}

internal fun JsonObject.long(key: String, default: Long = 0): Long {
    val e = get(key) ?: return default
    return if (e.isJsonPrimitive && e.asJsonPrimitive.isNumber) e.asLong else default
}

internal fun JsonObject.bool(key: String, default: Boolean = false): Boolean {
    val e = get(key) ?: return default
    return if (e.isJsonPrimitive && e.asJsonPrimitive.isBoolean) e.asBoolean else default
}

internal fun JsonObject.strings(key: String): List<String> {
    val e = get(key) ?: return emptyList()
    if (!e.isJsonArray) return emptyList()
    return e.asJsonArray.filter { it.isJsonPrimitive }.map { it.asString }
}

internal fun JsonObject.objects(key: String): List<JsonObject> {
    val e = get(key) ?: return emptyList()
    if (!e.isJsonArray) return emptyList()
    return e.asJsonArray.filter { it.isJsonObject }.map { it.asJsonObject }
}

internal fun JsonObject.objOrNull(key: String): JsonObject? {
    val e = get(key) ?: return null
    return if (e.isJsonObject) e.asJsonObject else null
}
