package dev.doppel.jetbrains.core

import java.io.ByteArrayOutputStream
import java.io.EOFException
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.nio.charset.StandardCharsets

/**
 * The LSP base protocol: each message is `Content-Length: N\r\n` (other headers allowed and
 * ignored), an empty line, then N bytes of UTF-8 JSON.
 */
object Framing {
    /** Upper bound of one message; the helper's schema is well under it. */
    const val MAX_MESSAGE = 64 * 1024 * 1024

    /** Writes one framed message; callers serialize writes. */
    fun write(out: OutputStream, json: String) {
        val body = json.toByteArray(StandardCharsets.UTF_8)
        val header = "Content-Length: ${body.size}\r\n\r\n".toByteArray(StandardCharsets.US_ASCII)
        out.write(header)
        out.write(body)
        out.flush()
    }

    /**
     * Reads one message body; null at a clean end of stream (before any header byte).
     * Throws [FramingException] on a malformed header and [EOFException] on a truncated message.
     */
    fun read(input: InputStream): String? {
        var length = -1
        var first = true
        while (true) {
            val line = readHeaderLine(input, first) ?: return null
            first = false
            if (line.isEmpty()) break
            val colon = line.indexOf(':')
            if (colon <= 0) throw FramingException("malformed header line: \"$line\"")
            val name = line.substring(0, colon).trim()
            val value = line.substring(colon + 1).trim()
            if (name.equals("Content-Length", ignoreCase = true)) {
                length = value.toIntOrNull() ?: throw FramingException("invalid Content-Length: \"$value\"")
            }
        }
        if (length < 0) throw FramingException("message without Content-Length")
        if (length > MAX_MESSAGE) throw FramingException("message of $length bytes is too large")
        val body = input.readNBytes(length)
        if (body.size != length) throw EOFException("stream ended inside a message (${body.size} of $length bytes)")
        return String(body, StandardCharsets.UTF_8)
    }

    /** A header line without its CRLF (a bare LF is accepted); null on EOF before the first byte of a message. */
    private fun readHeaderLine(input: InputStream, startOfMessage: Boolean): String? {
        val buf = ByteArrayOutputStream(64)
        while (true) {
            val b = input.read()
            if (b < 0) {
                if (startOfMessage && buf.size() == 0) return null
                throw EOFException("stream ended inside a header")
            }
            if (b == '\n'.code) {
                val bytes = buf.toByteArray()
                val n = if (bytes.isNotEmpty() && bytes.last() == '\r'.code.toByte()) bytes.size - 1 else bytes.size
                return String(bytes, 0, n, StandardCharsets.US_ASCII)
            }
            buf.write(b)
            if (buf.size() > 8192) throw FramingException("header line too long")
        }
    }
}

class FramingException(message: String) : IOException(message)
