package dev.doppel.jetbrains.plugin

import com.intellij.execution.ExecutionException
import com.intellij.execution.ExecutionListener
import com.intellij.execution.ExecutionManager
import com.intellij.execution.configurations.RunProfile
import com.intellij.execution.process.ProcessHandler
import com.intellij.execution.runners.ExecutionEnvironment
import com.intellij.xdebugger.XDebugProcess
import com.intellij.xdebugger.XDebugSessionListener
import com.intellij.xdebugger.XDebuggerManager
import com.intellij.xdebugger.XDebuggerManagerListener
import com.intellij.notification.NotificationGroupManager
import com.intellij.notification.NotificationType
import com.intellij.openapi.Disposable
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.components.PersistentStateComponent
import com.intellij.openapi.components.Service
import com.intellij.openapi.components.State
import com.intellij.openapi.components.Storage
import com.intellij.openapi.components.StoragePathMacros
import com.intellij.openapi.components.service
import com.intellij.openapi.diagnostic.Logger
import com.intellij.openapi.progress.ProcessCanceledException
import com.intellij.openapi.progress.ProgressIndicator
import com.intellij.openapi.progress.ProgressManager
import com.intellij.openapi.project.Project
import com.intellij.openapi.project.guessProjectDir
import com.intellij.openapi.wm.WindowManager
import dev.doppel.jetbrains.core.DoppelIdeClient
import dev.doppel.jetbrains.core.DoppelRpcException
import dev.doppel.jetbrains.core.HelperLocator
import dev.doppel.jetbrains.core.InitializeParams
import dev.doppel.jetbrains.core.LaunchPatcher
import dev.doppel.jetbrains.core.PatchedLaunch
import dev.doppel.jetbrains.core.RunSpec
import dev.doppel.jetbrains.core.SessionTracker
import dev.doppel.jetbrains.core.TargetChoice
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ExecutionException as JExecutionException

/**
 * One `doppel ide` per project (IDE window): started on first use, ended with the project.
 * Holds the per-project settings (on/off, the chosen target) and the session tracker. All logic
 * is in the core; this class is lifecycle and threading only.
 */
@Service(Service.Level.PROJECT)
@State(name = "DoppelSettings", storages = [Storage(StoragePathMacros.WORKSPACE_FILE)])
class DoppelService(private val project: Project) : PersistentStateComponent<DoppelService.Settings>, Disposable {
    class Settings {
        var enabled: Boolean = false
        /** [TargetChoice.encode]. */
        var target: String = ""
        /** The doppel binary; empty: $DOPPEL_BIN, then PATH. */
        var helperPath: String = ""
        /** Empty: found from the project directory (.doppel/ then .mirrord/). */
        var configFile: String = ""
    }

    private var settings = Settings()
    /** Sessions resolved for a run profile whose process has not started yet. */
    private val pending = java.util.concurrent.ConcurrentHashMap<RunProfile, String>()
    /** Sessions of running processes, by ExecutionEnvironment.executionId. */
    private val byExecution = java.util.concurrent.ConcurrentHashMap<Long, String>()

    init {
        val bus = project.messageBus.connect(this)
        bus.subscribe(ExecutionManager.EXECUTION_TOPIC, object : ExecutionListener {
            override fun processStarted(executorId: String, env: ExecutionEnvironment, handler: ProcessHandler) {
                pending.remove(env.runProfile)?.let { byExecution[env.executionId] = it }
            }

            override fun processTerminated(executorId: String, env: ExecutionEnvironment, handler: ProcessHandler, exitCode: Int) {
                byExecution.remove(env.executionId)?.let { endSessionLater(it) }
            }
        })
        // Breakpoints: the helper keeps the session alive and sends new connections of an
        // unfiltered steal to the cluster while the debuggee is paused (docs/ide-protocol.md).
        bus.subscribe(XDebuggerManager.TOPIC, object : XDebuggerManagerListener {
            override fun processStarted(debugProcess: XDebugProcess) {
                val session = debugProcess.session
                val id = session.executionEnvironment?.executionId?.let { byExecution[it] }
                    ?: session.runProfile?.let { pending[it] } ?: return
                session.addSessionListener(object : XDebugSessionListener {
                    override fun sessionPaused() = debuggeeStateLater(id, true)
                    override fun sessionResumed() = debuggeeStateLater(id, false)
                })
            }
        })
    }

    /** A run configuration was resolved to [sessionId]: the session ends when its process does. */
    fun bind(profile: RunProfile, sessionId: String) {
        pending[profile] = sessionId
    }
    private val log = Logger.getInstance(DoppelService::class.java)
    private var client: DoppelIdeClient? = null
    private val lock = Any()
    val tracker = SessionTracker()

    override fun getState(): Settings = settings
    override fun loadState(state: Settings) {
        settings = state
    }

    var enabled: Boolean
        get() = settings.enabled
        set(v) {
            settings.enabled = v
            refreshStatusBar()
        }

    var target: TargetChoice
        get() = TargetChoice.decode(settings.target)
        set(v) {
            settings.target = v.encode()
            refreshStatusBar()
        }

    val workspaceFolder: String? get() = project.basePath ?: project.guessProjectDir()?.path

    /** The running helper, started (and initialized) on first use. Not on the EDT: it spawns a process. */
    fun client(): DoppelIdeClient = synchronized(lock) {
        client?.takeIf { it.isAlive }?.let { return it }
        val bin = HelperLocator.find(settings.helperPath)
            ?: throw ExecutionException("doppel is not installed: put `doppel` on PATH, set DOPPEL_BIN, or choose the binary in Settings | Tools | doppel")
        val helperLog = Logger.getInstance("doppel.ide")
        val c = DoppelIdeClient.start(bin, stderr = { helperLog.info(it) }, log = { log.warn(it) })
        c.track(tracker)
        c.onSessionState { refreshStatusBar() }
        c.onProgress { refreshStatusBar() }
        c.onNotice { n -> if (n.severity != "info") notify(n.message, if (n.severity == "error") NotificationType.ERROR else NotificationType.WARNING) }
        c.initialize(InitializeParams("jetbrains", ApplicationManager.getApplication().toString(), listOfNotNull(workspaceFolder)))
        client = c
        c
    }

    /**
     * Resolves a run configuration's launch for the chosen target (a session starts, or the
     * previous one of this run configuration is reused). Blocks with a cancellable progress: the
     * run-configuration extensions call it while the IDE prepares the process.
     */
    fun patch(spec: RunSpec, reuseSessionId: String? = null): PatchedLaunch {
        val work = { indicator: ProgressIndicator? ->
            indicator?.text = "doppel: starting a session for ${target}"
            val c = client()
            val off = c.onProgress { p -> indicator?.text2 = p.step }
            try {
                val patched = LaunchPatcher(c).patch(spec, target, workspaceFolder, settings.configFile.ifEmpty { null }, reuseSessionId)
                patched.warnings.forEach { notify(it, NotificationType.WARNING) }
                tracker.onResolved(dev.doppel.jetbrains.core.ResolveLaunchResult(patched.sessionId, patched.launch, patched.target, patched.warnings), spec.name)
                patched
            } finally {
                off()
            }
        }
        try {
            val app = ApplicationManager.getApplication()
            return if (app.isDispatchThread) {
                ProgressManager.getInstance().runProcessWithProgressSynchronously<PatchedLaunch, Exception>(
                    { work(ProgressManager.getInstance().progressIndicator) }, "doppel", true, project,
                )
            } else {
                work(ProgressManager.getInstance().progressIndicator)
            }
        } catch (e: ProcessCanceledException) {
            throw e
        } catch (e: DoppelRpcException) {
            throw ExecutionException(e.message, e)
        }
    }

    /** Ends a session when its run ends (not on the EDT; best effort). */
    fun endSessionLater(sessionId: String) {
        ApplicationManager.getApplication().executeOnPooledThread {
            runCatching { client?.endSession(sessionId) }
            tracker.onEnded(sessionId, "the run ended")
            refreshStatusBar()
        }
    }

    fun debuggeeStateLater(sessionId: String, paused: Boolean) {
        ApplicationManager.getApplication().executeOnPooledThread {
            runCatching { client?.debuggeeState(sessionId, paused) }
            tracker.onPaused(sessionId, paused)
            refreshStatusBar()
        }
    }

    /** Lists targets off the EDT. */
    fun listTargetsAsync(params: dev.doppel.jetbrains.core.ListTargetsParams) =
        CompletableFuture.supplyAsync({ client().listTargets(params) }, { ApplicationManager.getApplication().executeOnPooledThread(it) })
            .exceptionally { e -> throw (if (e is JExecutionException) e.cause ?: e else e) }

    fun notify(message: String, type: NotificationType = NotificationType.INFORMATION) {
        NotificationGroupManager.getInstance().getNotificationGroup("doppel").createNotification(message, type).notify(project)
    }

    fun refreshStatusBar() {
        ApplicationManager.getApplication().invokeLater {
            if (!project.isDisposed) WindowManager.getInstance().getStatusBar(project)?.updateWidget(DoppelStatusBarWidget.ID)
        }
    }

    override fun dispose() {
        // shutdown + exit: every session of this window ends; the agent sees a clean close.
        val c = synchronized(lock) { client.also { client = null } } ?: return
        runCatching { c.close() }
    }

    companion object {
        fun of(project: Project): DoppelService = project.service()
    }
}
