package dev.doppel.jetbrains.plugin

import com.intellij.openapi.project.Project
import com.intellij.openapi.wm.StatusBar
import com.intellij.openapi.wm.StatusBarWidget
import com.intellij.openapi.wm.StatusBarWidgetFactory
import com.intellij.util.Consumer
import java.awt.Component
import java.awt.event.MouseEvent

/**
 * `doppel: off` / `doppel: staging/deployment/backend` / `doppel: creating agent job…`; the
 * text is the core's [dev.doppel.jetbrains.core.SessionTracker.statusText]. Click: on → choose
 * the target; off → turn on (with the remembered target, choosing one if there is none).
 */
class DoppelStatusBarWidget(private val project: Project) : StatusBarWidget, StatusBarWidget.TextPresentation {
    private var statusBar: StatusBar? = null

    override fun ID(): String = ID
    override fun getPresentation(): StatusBarWidget.WidgetPresentation = this
    override fun install(statusBar: StatusBar) {
        this.statusBar = statusBar
    }

    override fun dispose() {
        statusBar = null
    }

    private val service get() = DoppelService.of(project)

    override fun getText(): String = service.tracker.statusText(service.enabled, service.target)

    override fun getAlignment(): Float = Component.CENTER_ALIGNMENT

    override fun getTooltipText(): String = buildString {
        val s = service
        append(if (s.enabled) "Run and debug under doppel: target ${s.target}" else "doppel is off: runs are local")
        s.tracker.live().forEach { v -> append("\n").append(v.runName ?: v.sessionId).append(": ").append(v.state) }
        append("\nClick to ").append(if (s.enabled) "choose the target" else "turn doppel on")
    }

    override fun getClickConsumer(): Consumer<MouseEvent> = Consumer {
        val s = service
        if (!s.enabled && s.target != dev.doppel.jetbrains.core.TargetChoice.FromConfig) s.enabled = true
        else ChooseTargetAction.choose(project)
    }

    companion object {
        const val ID = "dev.doppel.status"
    }
}

class DoppelStatusBarWidgetFactory : StatusBarWidgetFactory {
    override fun getId(): String = DoppelStatusBarWidget.ID
    override fun getDisplayName(): String = "doppel"
    override fun isAvailable(project: Project): Boolean = true
    override fun createWidget(project: Project): StatusBarWidget = DoppelStatusBarWidget(project)
    override fun disposeWidget(widget: StatusBarWidget) = widget.dispose()
    override fun canBeEnabledOn(statusBar: StatusBar): Boolean = true
}
