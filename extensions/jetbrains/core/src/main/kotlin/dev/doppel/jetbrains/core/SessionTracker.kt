package dev.doppel.jetbrains.core

import java.util.concurrent.CopyOnWriteArrayList

/**
 * The sessions of one IDE window as the notifications tell them: state, the last progress
 * step, notices, paused. Feeds the status-bar widget. Thread-safe; listeners run on the thread
 * that delivered the notification (the RPC reader).
 */
class SessionTracker(private val clock: () -> Long = System::currentTimeMillis) {
    data class View(
        val sessionId: String,
        val state: String = SessionStates.STARTING,
        val reason: String? = null,
        val category: String? = null,
        val step: String? = null,
        val elapsedMs: Long = 0,
        val paused: Boolean = false,
        val target: TargetRef? = null,
        val runName: String? = null,
        val notices: List<NoticeParams> = emptyList(),
        val updated: Long = 0,
    ) {
        val live: Boolean get() = state != SessionStates.ENDED
    }

    private val lock = Any()
    private val sessions = LinkedHashMap<String, View>()
    private val listeners = CopyOnWriteArrayList<(View) -> Unit>()

    fun addListener(l: (View) -> Unit): () -> Unit {
        listeners.add(l)
        return { listeners.remove(l) }
    }

    private fun update(id: String, f: (View) -> View): View {
        val v = synchronized(lock) {
            val next = f(sessions[id] ?: View(id)).copy(updated = clock())
            sessions[id] = next
            // Keep the last few ended sessions only.
            val ended = sessions.values.filter { !it.live }
            if (ended.size > MAX_ENDED) ended.take(ended.size - MAX_ENDED).forEach { sessions.remove(it.sessionId) }
            next
        }
        listeners.forEach { runCatching { it(v) } }
        return v
    }

    fun onProgress(p: ProgressParams) {
        if (p.sessionId.isEmpty()) return
        update(p.sessionId) { it.copy(step = p.step, elapsedMs = p.elapsedMs) }
    }

    fun onSessionState(p: SessionStateParams) {
        if (p.sessionId.isEmpty()) return
        update(p.sessionId) {
            it.copy(state = p.state, reason = p.reason ?: it.reason.takeIf { _ -> p.state != SessionStates.READY }, category = p.category,
                step = if (p.state == SessionStates.READY) null else it.step)
        }
    }

    fun onNotice(p: NoticeParams) {
        val id = p.sessionId ?: return
        if (id.isEmpty()) return
        update(id) { it.copy(notices = (it.notices + p).takeLast(MAX_NOTICES)) }
    }

    /** A resolveLaunch returned: the session runs [runName] against [target]. */
    fun onResolved(res: ResolveLaunchResult, runName: String?) {
        update(res.sessionId) { it.copy(target = res.target ?: it.target, runName = runName ?: it.runName) }
    }

    fun onPaused(sessionId: String, paused: Boolean) {
        update(sessionId) { it.copy(paused = paused) }
    }

    /** The IDE ended it (endSession answered). */
    fun onEnded(sessionId: String, reason: String) {
        update(sessionId) { it.copy(state = SessionStates.ENDED, reason = reason) }
    }

    operator fun get(sessionId: String): View? = synchronized(lock) { sessions[sessionId] }

    fun all(): List<View> = synchronized(lock) { sessions.values.toList() }

    fun live(): List<View> = all().filter { it.live }

    /**
     * The status bar's text: `doppel: off` when disabled, else the most interesting live
     * session (starting or reconnecting before ready), or the count.
     */
    fun statusText(enabled: Boolean, choice: TargetChoice): String {
        if (!enabled) return "doppel: off"
        val live = live()
        val busy = live.firstOrNull { it.state == SessionStates.STARTING || it.state == SessionStates.RECONNECTING }
        return when {
            busy != null && busy.state == SessionStates.RECONNECTING -> "doppel: reconnecting…"
            busy != null -> "doppel: " + (busy.step ?: "starting") + "…"
            live.size == 1 -> "doppel: " + (live[0].target?.toString() ?: choice.toString()) + if (live[0].paused) " (paused)" else ""
            live.size > 1 -> "doppel: ${live.size} sessions"
            else -> "doppel: " + choice.toString()
        }
    }

    companion object {
        const val MAX_ENDED = 5
        const val MAX_NOTICES = 20
    }
}
